package kafka

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/internal/testutil"
	"github.com/sluicehq/sluice/sluicetest/conformance"
)

// TestConformance runs the adapter conformance suite against the broker.
// The ServerRestart subtest restarts the broker with scripts/kafka.sh, so
// it runs only when SLUICE_SERVER_RESTART=1: scripts/test.sh sets it in a
// pass of its own, when nothing else uses the broker.
func TestConformance(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	bs := brokers(t)
	h := conformanceHarness("kafka", bs, bs, nil)
	if os.Getenv("SLUICE_SERVER_RESTART") == "1" {
		h.RestartServer = func(t *testing.T) {
			out, err := exec.Command("../scripts/kafka.sh", "restart").CombinedOutput()
			if err != nil {
				t.Fatalf("scripts/kafka.sh restart: %v\n%s", err, out)
			}
		}
	}
	conformance.Run(t, h)
}

// conformanceHarness connects the suite to the broker: the adapter's
// sources and sinks dial clientBrokers with opts, and the suite's own
// publishing, reading and topic making go through adminBrokers, a plain
// listener of the same cluster.
func conformanceHarness(name string, adminBrokers, clientBrokers []string, opts []Option) conformance.Harness {
	bs := adminBrokers
	return conformance.Harness{
		Name: name,
		NewTopic: func(t *testing.T, partitions int) string {
			return createTopic(t, bs, "conf", int32(partitions))
		},
		Publish: func(t *testing.T, topic string, msgs []*sluice.Message) {
			publish(t, bs, topic, msgs)
		},
		NewSource: func(t *testing.T, topic, group, _ string) sluice.Source {
			// Members are dynamic: Close leaves the group at once, so the
			// suite needs no RedeliveryDelay. Static membership has its
			// own test.
			srcOpts := []SourceOption{WithLogger(testutil.Quiet()), WithRevokeTimeout(2 * time.Second)}
			for _, o := range opts {
				srcOpts = append(srcOpts, o)
			}
			src, err := NewSource(context.Background(), clientBrokers, group, []string{topic}, srcOpts...)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = src.Close() })
			return src
		},
		NewSink: func(t *testing.T, out, dlq string) sluice.Sink {
			sinkOpts := []SinkOption{WithDeadLetterTopic(dlq), WithLogger(testutil.Quiet())}
			for _, o := range opts {
				sinkOpts = append(sinkOpts, o)
			}
			p, err := NewSink(context.Background(), clientBrokers, out, sinkOpts...)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = p.Close() })
			return p
		},
		ReadAll: func(t *testing.T, topic string) []*sluice.Message {
			var out []*sluice.Message
			for _, m := range readAll(t, bs, topic) {
				sm := &sluice.Message{Key: m.Key, Value: m.Value, Timestamp: m.Timestamp,
					Origin: sluice.Origin{Topic: m.Topic, Partition: m.Partition, Offset: m.Offset}}
				for _, h := range m.Headers {
					sm.Headers = append(sm.Headers, sluice.Header{Key: string(h.Key), Value: h.Value})
				}
				out = append(out, sm)
			}
			return out
		},
		PollInterval: 200 * time.Millisecond,
		// The sink's client opens broker connections lazily, and go-metrics
		// starts one meter goroutine per process that never ends.
		IgnoreGoroutines: []string{"go-metrics.(*meterArbiter)", "sarama.(*asyncProducer)", "sarama.(*brokerProducer)", "sarama.(*partitionProducer)", "sarama.(*topicProducer)"},
	}
}

// publish writes msgs to topic with the default (hash) partitioner and
// waits for the broker.
func publish(t testing.TB, bs []string, topic string, msgs []*sluice.Message) {
	t.Helper()
	p, err := sarama.NewSyncProducer(bs, testConfig())
	if err != nil {
		t.Fatalf("producer: %v", err)
	}
	defer p.Close()
	recs := make([]*sarama.ProducerMessage, len(msgs))
	for i, m := range msgs {
		recs[i] = &sarama.ProducerMessage{Topic: topic, Key: bytesOrNil(m.Key), Value: sarama.ByteEncoder(m.Value)}
		for _, h := range m.Headers {
			recs[i].Headers = append(recs[i].Headers, sarama.RecordHeader{Key: []byte(h.Key), Value: h.Value})
		}
	}
	if err := p.SendMessages(recs); err != nil {
		var perrs sarama.ProducerErrors
		if errors.As(err, &perrs) && len(perrs) > 0 {
			t.Fatalf("publish: %v (first: %v)", err, perrs[0].Err)
		}
		t.Fatalf("publish: %v", err)
	}
}
