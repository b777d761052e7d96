package verify

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/IBM/sarama"

	"github.com/sluicehq/sluice"
)

// Topics names what a verification reads.
type Topics struct {
	Input, Output, DeadLetter string
	// ReadCommitted reads as a consumer with isolation.level=read_committed
	// does (Kafka only): records of aborted or open transactions are not
	// seen. Use it to check an exactly-once pipeline.
	ReadCommitted bool
}

// kafkaIdle is how long a partition may stay silent before its reading stops
// short of the high watermark (which control records can leave unreachable).
const kafkaIdle = 5 * time.Second

// Kafka reads the three topics from their oldest retained offsets up to their
// high watermarks and matches them. A topic that does not exist counts as
// empty. Dead letters and outputs of other input topics are ignored, so that
// several pipelines can share one dead-letter topic.
func Kafka(ctx context.Context, brokers []string, t Topics) (Report, error) {
	cfg := sarama.NewConfig()
	cfg.ClientID = "sluice-verify"
	cfg.Version = sarama.V3_6_0_0
	cfg.Metadata.AllowAutoTopicCreation = false
	cfg.Consumer.Return.Errors = true
	cfg.Net.DialTimeout = 10 * time.Second
	if t.ReadCommitted {
		cfg.Consumer.IsolationLevel = sarama.ReadCommitted
	}
	client, err := sarama.NewClient(brokers, cfg)
	if err != nil {
		return Report{}, fmt.Errorf("verify: connect to %v: %w", brokers, err)
	}
	defer client.Close()
	consumer, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		return Report{}, fmt.Errorf("verify: consumer: %w", err)
	}
	defer consumer.Close()

	c := NewCounter()
	err = readTopic(ctx, client, consumer, t.Input, func(m *sarama.ConsumerMessage) {
		if _, ok := ReplayOrigin(func(name string) (string, bool) { return kafkaHeader(m, name) }); ok {
			c.Replayed()
			return
		}
		c.Input(sluice.Origin{Topic: m.Topic, Partition: m.Partition, Offset: m.Offset})
	})
	if err != nil {
		return Report{}, err
	}
	for _, out := range []struct {
		topic string
		add   func(sluice.Origin)
	}{{t.Output, c.Enriched}, {t.DeadLetter, c.DeadLetter}} {
		err := readTopic(ctx, client, consumer, out.topic, func(m *sarama.ConsumerMessage) {
			o, ok := OutputOrigin(func(name string) (string, bool) { return kafkaHeader(m, name) })
			switch {
			case !ok:
				c.NoOrigin()
			case o.Topic == t.Input:
				out.add(o)
			}
		})
		if err != nil {
			return Report{}, err
		}
	}
	return c.Report(), nil
}

// kafkaHeader returns the value of the last header called name: a record
// that went through several pipelines carries the origin of each, in order.
func kafkaHeader(m *sarama.ConsumerMessage, name string) (string, bool) {
	for i := len(m.Headers) - 1; i >= 0; i-- {
		if h := m.Headers[i]; h != nil && string(h.Key) == name {
			return string(h.Value), true
		}
	}
	return "", false
}

func readTopic(ctx context.Context, client sarama.Client, consumer sarama.Consumer, topic string, fn func(*sarama.ConsumerMessage)) error {
	parts, err := client.Partitions(topic)
	if errors.Is(err, sarama.ErrUnknownTopicOrPartition) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("verify: partitions of %q: %w", topic, err)
	}
	// Partitions are read at once, so that the idle waits at the ends of
	// partitions that end in transaction markers overlap.
	var (
		mu   sync.Mutex
		wg   sync.WaitGroup
		errs = make([]error, len(parts))
	)
	locked := func(m *sarama.ConsumerMessage) {
		mu.Lock()
		defer mu.Unlock()
		fn(m)
	}
	for i, p := range parts {
		wg.Go(func() {
			oldest, err := client.GetOffset(topic, p, sarama.OffsetOldest)
			if err != nil {
				errs[i] = fmt.Errorf("verify: oldest offset of %s/%d: %w", topic, p, err)
				return
			}
			newest, err := client.GetOffset(topic, p, sarama.OffsetNewest)
			if err != nil {
				errs[i] = fmt.Errorf("verify: newest offset of %s/%d: %w", topic, p, err)
				return
			}
			if newest > oldest {
				errs[i] = readPartition(ctx, consumer, topic, p, oldest, newest, locked)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

func readPartition(ctx context.Context, consumer sarama.Consumer, topic string, p int32, from, to int64, fn func(*sarama.ConsumerMessage)) error {
	pc, err := consumer.ConsumePartition(topic, p, from)
	if err != nil {
		return fmt.Errorf("verify: consume %s/%d: %w", topic, p, err)
	}
	defer pc.AsyncClose()
	idle := time.NewTimer(kafkaIdle)
	defer idle.Stop()
	for {
		select {
		case m, ok := <-pc.Messages():
			if !ok {
				return fmt.Errorf("verify: %s/%d closed early", topic, p)
			}
			fn(m)
			if m.Offset+1 >= to {
				return nil
			}
			idle.Reset(kafkaIdle)
		case e := <-pc.Errors():
			return fmt.Errorf("verify: read %s/%d: %w", topic, p, e)
		case <-idle.C:
			// The rest of the partition up to the watermark is control
			// records (transaction markers), which are never delivered.
			return nil
		case <-ctx.Done():
			return fmt.Errorf("verify: read %s/%d: %w", topic, p, ctx.Err())
		}
	}
}
