package sluice_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/sluicetest"
)

// discard is a sink and dead-letter writer that keeps nothing.
type discard struct{}

func (discard) Write(context.Context, []*sluice.Message) error              { return nil }
func (discard) WriteDeadLetters(context.Context, []sluice.DeadLetter) error { return nil }

// benchRun runs b.N events from src through enr and reports events/s; its
// ns/op and allocs/op are per event.
func benchRun(b *testing.B, src sluice.Source, enr sluice.Enricher, opts ...sluice.Option) {
	b.Helper()
	p, err := sluice.New(src, enr, discard{}, append(opts, quiet())...)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	if err := p.Run(context.Background()); err != nil {
		b.Fatal(err)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	if got := p.Stats().Enriched; got != uint64(b.N) {
		b.Fatalf("enriched %d of %d", got, b.N)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
}

// sliceSource is the leanest in-memory source: it hands out messages built
// before the timer starts and acks by counting, so that a benchmark over it
// measures the runner alone.
type sliceSource struct {
	msgs  []*sluice.Message
	next  int
	acked atomic.Int64
}

func newSliceSource(n int) *sliceSource {
	s := &sliceSource{msgs: make([]*sluice.Message, n)}
	value := []byte(`{"id":1,"text":"a small event"}`)
	for i := range s.msgs {
		s.msgs[i] = &sluice.Message{Value: value, Origin: sluice.Origin{Topic: "in", Offset: int64(i)}}
	}
	return s
}

func (s *sliceSource) Fetch(_ context.Context, max int) ([]*sluice.Message, error) {
	if s.next == len(s.msgs) {
		return nil, sluice.ErrSourceClosed
	}
	end := min(s.next+max, len(s.msgs))
	out := s.msgs[s.next:end]
	s.next = end
	return out, nil
}

func (s *sliceSource) Ack(_ context.Context, msgs []*sluice.Message) error {
	s.acked.Add(int64(len(msgs)))
	return nil
}

func (s *sliceSource) Close() error { return nil }

// BenchmarkOverhead measures the runner's cost per event with a no-op
// enricher: ns/op and allocs/op are per event. "runner" uses a source that
// costs next to nothing; "sluicetest" the partitioned sluicetest.Source,
// which copies each message and tracks offsets.
func BenchmarkOverhead(b *testing.B) {
	noop := sluice.EnricherFunc(func(_ context.Context, in *sluice.Message) (*sluice.Message, error) { return in, nil })
	for _, n := range []int{1, 8} {
		b.Run(fmt.Sprintf("runner/concurrency=%d", n), func(b *testing.B) {
			benchRun(b, newSliceSource(b.N), noop, sluice.WithConcurrency(n))
		})
		b.Run(fmt.Sprintf("sluicetest/concurrency=%d", n), func(b *testing.B) {
			src := sluicetest.NewSource("in", 8)
			value := []byte(`{"id":1,"text":"a small event"}`)
			for range b.N {
				src.Publish(nil, value)
			}
			src.End()
			benchRun(b, src, noop, sluice.WithConcurrency(n))
		})
	}
}

// BenchmarkScaling runs a 1ms enricher at growing concurrency N and reports
// the efficiency against the Little's-law bound N/latency: eff uses the mean
// time actually spent inside the enricher during the run (a sleep of 1ms
// overshoots by the OS timer slack, which is not the runner's doing), and
// eff_nominal uses the nominal 1ms.
func BenchmarkScaling(b *testing.B) {
	const latency = time.Millisecond
	for _, n := range []int{1, 4, 16, 64} {
		b.Run(fmt.Sprintf("concurrency=%d", n), func(b *testing.B) {
			var inside atomic.Int64
			slow := sluice.EnricherFunc(func(_ context.Context, in *sluice.Message) (*sluice.Message, error) {
				t0 := time.Now()
				time.Sleep(latency)
				inside.Add(int64(time.Since(t0)))
				return in, nil
			})
			src := sluicetest.NewSource("in", 8)
			for range b.N {
				src.Publish(nil, []byte(`{}`))
			}
			src.End()
			p, err := sluice.New(src, slow, discard{}, sluice.WithConcurrency(n), quiet())
			if err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			start := time.Now()
			if err := p.Run(context.Background()); err != nil {
				b.Fatal(err)
			}
			elapsed := time.Since(start)
			rate := float64(b.N) / elapsed.Seconds()
			mean := time.Duration(inside.Load() / int64(b.N))
			b.ReportMetric(rate, "events/s")
			b.ReportMetric(float64(mean.Microseconds()), "enrich_us")
			b.ReportMetric(rate/(float64(n)/mean.Seconds()), "eff")
			b.ReportMetric(rate/(float64(n)/latency.Seconds()), "eff_nominal")
		})
	}
}
