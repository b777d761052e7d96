package kafka

// Exactly-once against at-least-once, in one run, on a real broker:
//
//	KAFKA_BROKERS=127.0.0.1:9092 go test -run '^$' -bench KafkaExactlyOnce -benchtime 100000x ./kafka
//
// Both variants use the pipeline's defaults. At least once, an event counts
// when the broker acknowledged its output (a read_uncommitted consumer can
// see it then); exactly once, when the transaction that holds its output
// and its offset committed (a read_committed consumer sees it then).

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/internal/testutil"
)

// committedCounter counts the events whose acks a TxnSink committed, and
// their latencies.
type committedCounter struct {
	*TxnSink
	n     int64
	count atomic.Int64
	all   chan struct{}
	lat   *latencies
}

func (c *committedCounter) AckAsync(ctx context.Context, msgs []*sluice.Message, done func(error)) {
	c.TxnSink.AckAsync(ctx, msgs, func(err error) {
		now := time.Now()
		failed := map[int]bool{}
		var we sluice.WriteErrors
		if errors.As(err, &we) {
			for _, e := range we {
				failed[e.Index] = true
			}
		}
		ok := 0
		for i, m := range msgs {
			if err != nil && (len(we) == 0 || failed[i]) {
				continue
			}
			ok++
			if c.lat != nil {
				c.lat.add(m.Timestamp, now)
			}
		}
		if c.count.Add(int64(ok)) >= c.n {
			select {
			case <-c.all:
			default:
				close(c.all)
			}
		}
		done(err)
	})
}

// exactlyOnceWith is pipelineWith's exactly-once twin: a read_committed
// source and a TxnSink, returning once n events are committed.
func exactlyOnceWith(model *benchModel, opts ...sluice.Option) passThrough {
	return func(b *testing.B, bs []string, in, out string, n int, lat *latencies, joined func()) time.Time {
		ctx := context.Background()
		src, err := NewSource(ctx, bs, in+"-g", []string{in}, WithLogger(testutil.Quiet()), WithReadCommitted())
		if err != nil {
			b.Fatal(err)
		}
		defer src.Close()
		snk, err := NewTxnSink(ctx, bs, out, src, fmt.Sprintf("%s-tx-%d", in, time.Now().UnixNano()), WithLogger(testutil.Quiet()))
		if err != nil {
			b.Fatal(err)
		}
		defer snk.Close()
		c := &committedCounter{TxnSink: snk, n: int64(n), all: make(chan struct{}), lat: lat}
		enr := sluice.EnricherFunc(func(_ context.Context, m *sluice.Message) (*sluice.Message, error) {
			model.call()
			return m, nil
		})
		p, err := sluice.New(src, enr, c, append([]sluice.Option{sluice.WithLogger(testutil.Quiet())}, opts...)...)
		if err != nil {
			b.Fatal(err)
		}
		runCtx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- p.Run(runCtx) }()
		select {
		case <-src.joined:
			joined()
		case err := <-done:
			b.Fatalf("pipeline stopped: %v", err)
		}
		select {
		case <-c.all:
		case err := <-done:
			b.Fatalf("pipeline stopped: %v", err)
		}
		b.StopTimer()
		end := time.Now()
		cancel()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(snk.Stats().Commits), "transactions")
		return end
	}
}

// BenchmarkKafkaExactlyOnceThroughput drains a backlog of b.N events at
// least once and exactly once, without a model (pass-through) and with a
// 5ms model (model-bound, 8 calls at once), and reports events/s.
func BenchmarkKafkaExactlyOnceThroughput(b *testing.B) {
	bs := brokers(b)
	model := newBenchModel(5 * time.Millisecond)
	cases := []struct {
		name string
		run  passThrough
	}{
		{"pass-through/at-least-once", pipelineWith(nil, nil)},
		{"pass-through/exactly-once", exactlyOnceWith(nil)},
		{"5ms-model/at-least-once", pipelineWith(model, nil)},
		{"5ms-model/exactly-once", exactlyOnceWith(model)},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			in := createTopic(b, bs, "bench-eos-in", benchPartitions)
			out := createTopic(b, bs, "bench-eos-out", benchPartitions)
			feed(b, bs, in, b.N, 0)
			b.ResetTimer()
			b.StopTimer()
			var start time.Time
			end := c.run(b, bs, in, out, b.N, nil, func() { start = time.Now(); b.StartTimer() })
			b.ReportMetric(float64(b.N)/end.Sub(start).Seconds(), "events/s")
		})
	}
}

// BenchmarkKafkaExactlyOnceLatency feeds b.N events at
// SLUICE_LATENCY_RATE events/s (default 1,000) through a pass-through at
// least once and exactly once, and reports the latency from the input
// record's timestamp to the moment a downstream consumer can read the
// output (acknowledged, or committed).
func BenchmarkKafkaExactlyOnceLatency(b *testing.B) {
	bs := brokers(b)
	rate := 1000
	if v, err := strconv.Atoi(os.Getenv("SLUICE_LATENCY_RATE")); err == nil && v > 0 {
		rate = v
	}
	cases := []struct {
		name string
		run  passThrough
	}{
		{"at-least-once", pipelineWith(nil, nil)},
		{"exactly-once", exactlyOnceWith(nil)},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			in := createTopic(b, bs, "bench-eoslat-in", benchPartitions)
			out := createTopic(b, bs, "bench-eoslat-out", benchPartitions)
			var lat latencies
			fed := make(chan struct{})
			b.ResetTimer()
			c.run(b, bs, in, out, b.N, &lat, func() {
				lat.mu.Lock()
				lat.from = time.Now().Add(time.Second) // the first second warms up connections
				lat.mu.Unlock()
				go func() { defer close(fed); feed(b, bs, in, b.N, rate) }()
			})
			<-fed
			lat.report(b)
		})
	}
}
