package main

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/IBM/sarama"

	"github.com/sluicehq/sluice/examples/internal/verify"
)

// inputPartitions is the input topic's partition count.
const inputPartitions = 4

type kafkaBackend struct {
	brokers []string
	group   string
	names   verify.Topics
	cfg     *sarama.Config
	client  sarama.Client
	prod    sarama.SyncProducer
}

func newKafkaBackend(brokers []string, group string, names verify.Topics) (*kafkaBackend, error) {
	cfg := sarama.NewConfig()
	cfg.ClientID = "sluice-chaos"
	cfg.Version = sarama.V3_6_0_0
	cfg.Net.DialTimeout = 5 * time.Second
	cfg.Net.ReadTimeout = 10 * time.Second
	cfg.Net.WriteTimeout = 10 * time.Second
	// Idempotent, so that the producer's own retries never duplicate an
	// input.
	cfg.Producer.Return.Successes = true
	cfg.Producer.RequiredAcks = sarama.WaitForAll
	cfg.Producer.Idempotent = true
	cfg.Net.MaxOpenRequests = 1
	cfg.Producer.Retry.Max = 10
	cfg.Producer.Retry.Backoff = 250 * time.Millisecond
	cfg.Metadata.Retry.Max = 10
	cfg.Metadata.Retry.Backoff = 500 * time.Millisecond
	client, err := sarama.NewClient(brokers, cfg)
	if err != nil {
		return nil, fmt.Errorf("kafka at %v: %w", brokers, err)
	}
	return &kafkaBackend{brokers: brokers, group: group, names: names, cfg: cfg, client: client}, nil
}

func (k *kafkaBackend) prepare(context.Context) error {
	admin, err := sarama.NewClusterAdminFromClient(k.client)
	if err != nil {
		return err
	}
	// Not admin.Close: it would close the shared client.
	if err := admin.CreateTopic(k.names.Input, &sarama.TopicDetail{NumPartitions: inputPartitions, ReplicationFactor: 1}, false); err != nil {
		return fmt.Errorf("create %s: %w", k.names.Input, err)
	}
	// A producer of its own, so that a failure (the broker restarting)
	// never breaks the client the checks use.
	k.prod, err = sarama.NewSyncProducer(k.brokers, k.cfg)
	return err
}

func (k *kafkaBackend) produce(_ context.Context, values [][]byte) ([][]byte, error) {
	msgs := make([]*sarama.ProducerMessage, len(values))
	for i, v := range values {
		msgs[i] = &sarama.ProducerMessage{Topic: k.names.Input, Value: sarama.ByteEncoder(v)}
	}
	err := k.prod.SendMessages(msgs)
	if err == nil {
		return nil, nil
	}
	var perr sarama.ProducerErrors
	if !errors.As(err, &perr) {
		return values, err
	}
	// Some may have been stored: only the failed ones are sent again.
	rest := make([][]byte, len(perr))
	for i, e := range perr {
		rest[i] = e.Msg.Value.(sarama.ByteEncoder)
	}
	return rest, fmt.Errorf("%d of %d not stored: %w", len(perr), len(msgs), perr[0].Err)
}

func (k *kafkaBackend) serviceEnv(proxy string) []string {
	return []string{"SLUICE_SOURCE=kafka", "SLUICE_BROKERS=" + proxy}
}

func (k *kafkaBackend) lag(context.Context) (int64, string, error) {
	parts := make([]int32, inputPartitions)
	for i := range parts {
		parts[i] = int32(i)
	}
	admin, err := sarama.NewClusterAdminFromClient(k.client)
	if err != nil {
		return 0, "", err
	}
	committed, err := admin.ListConsumerGroupOffsets(k.group, map[string][]int32{k.names.Input: parts})
	if err != nil {
		return 0, "", err
	}
	if committed.Err != sarama.ErrNoError {
		return 0, "", committed.Err
	}
	var lag int64
	var detail []string
	for _, p := range parts {
		hwm, err := k.client.GetOffset(k.names.Input, p, sarama.OffsetNewest)
		if err != nil {
			return 0, "", err
		}
		c := int64(-1)
		if b := committed.GetBlock(k.names.Input, p); b != nil {
			if b.Err != sarama.ErrNoError {
				return 0, "", b.Err
			}
			c = b.Offset
		}
		l := hwm - max(c, 0)
		lag += l
		detail = append(detail, fmt.Sprintf("p%d %d/%d", p, c, hwm))
	}
	return lag, "committed/end " + strings.Join(detail, ", "), nil
}

func (k *kafkaBackend) verify(ctx context.Context) (verify.Report, error) {
	return verify.Kafka(ctx, k.brokers, k.names)
}

// missing reads the three topics like verify does, and lists the inputs
// without an output or a dead letter: partition, offset and payload.
func (k *kafkaBackend) missing(ctx context.Context, limit int) ([]string, error) {
	consumer, err := sarama.NewConsumerFromClient(k.client)
	if err != nil {
		return nil, err
	}
	defer consumer.Close()
	inputs := map[string]string{}
	done := map[string]bool{}
	err = k.read(ctx, consumer, k.names.Input, func(m *sarama.ConsumerMessage) {
		inputs[strconv.Itoa(int(m.Partition))+"@"+strconv.FormatInt(m.Offset, 10)] = string(m.Value)
	})
	if err != nil {
		return nil, err
	}
	for _, t := range []string{k.names.Output, k.names.DeadLetter} {
		err := k.read(ctx, consumer, t, func(m *sarama.ConsumerMessage) {
			o, ok := verify.OriginFromHeaders(func(name string) (string, bool) {
				for i := len(m.Headers) - 1; i >= 0; i-- {
					if h := m.Headers[i]; h != nil && string(h.Key) == name {
						return string(h.Value), true
					}
				}
				return "", false
			})
			if ok {
				done[strconv.Itoa(int(o.Partition))+"@"+strconv.FormatInt(o.Offset, 10)] = true
			}
		})
		if err != nil {
			return nil, err
		}
	}
	var out []string
	for key, v := range inputs {
		if !done[key] {
			out = append(out, fmt.Sprintf("%s/%s %s", k.names.Input, key, v))
		}
	}
	sort.Strings(out)
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

func (k *kafkaBackend) read(ctx context.Context, consumer sarama.Consumer, topic string, fn func(*sarama.ConsumerMessage)) error {
	parts, err := k.client.Partitions(topic)
	if errors.Is(err, sarama.ErrUnknownTopicOrPartition) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, p := range parts {
		oldest, err := k.client.GetOffset(topic, p, sarama.OffsetOldest)
		if err != nil {
			return err
		}
		newest, err := k.client.GetOffset(topic, p, sarama.OffsetNewest)
		if err != nil {
			return err
		}
		if newest <= oldest {
			continue
		}
		pc, err := consumer.ConsumePartition(topic, p, oldest)
		if err != nil {
			return err
		}
		err = func() error {
			defer pc.AsyncClose()
			for {
				select {
				case m := <-pc.Messages():
					fn(m)
					if m.Offset+1 >= newest {
						return nil
					}
				case e := <-pc.Errors():
					return e
				case <-time.After(5 * time.Second): // only control records left
					return nil
				case <-ctx.Done():
					return ctx.Err()
				}
			}
		}()
		if err != nil {
			return err
		}
	}
	return nil
}

func (k *kafkaBackend) close() {
	if k.prod != nil {
		_ = k.prod.Close()
	}
	_ = k.client.Close()
}
