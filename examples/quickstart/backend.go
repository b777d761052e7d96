package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/IBM/sarama"
	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/examples/internal/verify"
	"github.com/sluicehq/sluice/kafka"
	"github.com/sluicehq/sluice/redisstream"
)

// sink is what an adapter's sink offers: enriched events and dead letters.
type sink interface {
	sluice.Sink
	sluice.DeadLetterWriter
}

// backend is one broker with the quickstart's topics (or streams) filled,
// and the adapter's source and sink connected to it.
type backend struct {
	desc   string // where it runs, for the user
	topics verify.Topics
	src    sluice.Source
	sink   sink
	verify func(context.Context) (verify.Report, error)
	closes []func()
}

func (b *backend) close() {
	for i := len(b.closes) - 1; i >= 0; i-- {
		b.closes[i]()
	}
}

// names returns the topic or stream names: plain ones on an embedded broker,
// ones unique to this run on a real server, so that reruns do not mix.
func names(shared bool) verify.Topics {
	if !shared {
		return verify.Topics{Input: "events", Output: "events.enriched", DeadLetter: "dead_letter"}
	}
	p := fmt.Sprintf("quickstart-%d.", time.Now().UnixNano())
	return verify.Topics{Input: p + "events", Output: p + "events.enriched", DeadLetter: p + "dead_letter"}
}

// kafkaBackend starts an embedded Kafka-protocol broker unless brokers names
// a real cluster, writes the events and connects the sluice Kafka adapter.
func kafkaBackend(ctx context.Context, brokers []string, events []event, log *slog.Logger) (_ *backend, err error) {
	b := &backend{topics: names(len(brokers) > 0)}
	defer func() {
		if err != nil {
			b.close()
		}
	}()
	t := b.topics
	const partitions = 4
	if len(brokers) == 0 {
		cluster, err := kfake.NewCluster(kfake.SeedTopics(partitions, t.Input, t.Output, t.DeadLetter))
		if err != nil {
			return nil, fmt.Errorf("start embedded broker: %w", err)
		}
		b.closes = append(b.closes, cluster.Close)
		brokers = cluster.ListenAddrs()
		b.desc = fmt.Sprintf("embedded Kafka-protocol broker (kfake) on %s", brokers[0])
	} else {
		if err := createTopics(brokers, partitions, t.Input, t.Output, t.DeadLetter); err != nil {
			return nil, err
		}
		b.desc = fmt.Sprintf("Kafka at %v", brokers)
	}
	if err := publishKafka(brokers, t.Input, events); err != nil {
		return nil, err
	}
	src, err := kafka.NewSource(ctx, brokers, "sluice-quickstart", []string{t.Input},
		kafka.WithClientID("sluice-quickstart"), kafka.WithConnectTimeout(10*time.Second), kafka.WithLogger(log))
	if err != nil {
		return nil, fmt.Errorf("kafka source: %w", err)
	}
	b.closes = append(b.closes, func() { _ = src.Close() })
	sink, err := kafka.NewSink(ctx, brokers, t.Output,
		kafka.WithDeadLetterTopic(t.DeadLetter), kafka.WithClientID("sluice-quickstart"),
		kafka.WithConnectTimeout(10*time.Second), kafka.WithLogger(log))
	if err != nil {
		return nil, fmt.Errorf("kafka sink: %w", err)
	}
	b.closes = append(b.closes, func() { _ = sink.Close() })
	b.src, b.sink = src, sink
	b.verify = func(ctx context.Context) (verify.Report, error) { return verify.Kafka(ctx, brokers, t) }
	return b, nil
}

func saramaConfig() *sarama.Config {
	cfg := sarama.NewConfig()
	cfg.ClientID = "sluice-quickstart"
	cfg.Version = sarama.V3_6_0_0
	cfg.Net.DialTimeout = 10 * time.Second
	return cfg
}

func createTopics(brokers []string, partitions int32, topics ...string) error {
	admin, err := sarama.NewClusterAdmin(brokers, saramaConfig())
	if err != nil {
		return fmt.Errorf("connect to %v: %w", brokers, err)
	}
	defer admin.Close()
	for _, topic := range topics {
		// Replication factor -1 takes the cluster's default.
		err := admin.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: partitions, ReplicationFactor: -1}, false)
		if err != nil && !errors.Is(err, sarama.ErrTopicAlreadyExists) {
			return fmt.Errorf("create topic %q: %w", topic, err)
		}
	}
	return nil
}

func publishKafka(brokers []string, topic string, events []event) error {
	cfg := saramaConfig()
	cfg.Producer.Return.Successes = true
	cfg.Producer.RequiredAcks = sarama.WaitForAll
	p, err := sarama.NewSyncProducer(brokers, cfg)
	if err != nil {
		return fmt.Errorf("sample producer: %w", err)
	}
	defer p.Close()
	msgs := make([]*sarama.ProducerMessage, len(events))
	for i, e := range events {
		msgs[i] = &sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder(e.Key), Value: sarama.ByteEncoder(e.Value)}
	}
	if err := p.SendMessages(msgs); err != nil {
		return fmt.Errorf("write sample events: %w", err)
	}
	return nil
}

// redisBackend starts an embedded Redis (miniredis) unless addr names a real
// server, writes the events and connects the sluice Redis Streams adapter.
func redisBackend(ctx context.Context, addr string, events []event, log *slog.Logger) (_ *backend, err error) {
	b := &backend{topics: names(addr != "")}
	defer func() {
		if err != nil {
			b.close()
		}
	}()
	t := b.topics
	if addr == "" {
		srv, err := miniredis.Run()
		if err != nil {
			return nil, fmt.Errorf("start embedded Redis: %w", err)
		}
		b.closes = append(b.closes, srv.Close)
		addr = srv.Addr()
		b.desc = fmt.Sprintf("embedded Redis (miniredis) on %s", addr)
	} else {
		b.desc = "Redis at " + addr
	}
	client := redis.NewClient(&redis.Options{Addr: addr})
	b.closes = append(b.closes, func() { _ = client.Close() })
	if err := client.Ping(ctx).Err(); err != nil {
		return nil, fmt.Errorf("connect to Redis at %s: %w", addr, err)
	}
	pipe := client.Pipeline()
	for _, e := range events {
		pipe.XAdd(ctx, &redis.XAddArgs{Stream: t.Input, Values: []any{"payload", e.Value, "user", e.Key}})
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("write sample events: %w", err)
	}
	// One client for source and sink: a dead letter's entry is then
	// acknowledged in the round trip right after its XADD was confirmed.
	// The client stays ours to close.
	src, err := redisstream.NewSource(ctx, t.Input, "sluice-quickstart",
		redisstream.WithClient(client), redisstream.WithConsumer("quickstart-1"),
		redisstream.WithLogger(log))
	if err != nil {
		return nil, fmt.Errorf("redis source: %w", err)
	}
	b.closes = append(b.closes, func() { _ = src.Close() })
	snk, err := redisstream.NewSink(ctx, t.Output, redisstream.WithClient(client),
		redisstream.WithDeadLetterStream(t.DeadLetter), redisstream.WithLogger(log))
	if err != nil {
		return nil, fmt.Errorf("redis sink: %w", err)
	}
	b.src, b.sink = src, snk
	b.verify = func(ctx context.Context) (verify.Report, error) { return verify.Redis(ctx, client, t) }
	return b, nil
}
