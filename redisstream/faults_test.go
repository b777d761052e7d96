package redisstream_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/internal/faultproxy"
	"github.com/sluicehq/sluice/internal/testutil"
	"github.com/sluicehq/sluice/redisstream"
)

// countingSink counts the messages and dead letters the pipeline wrote.
type countingSink struct {
	*redisstream.Sink
	n atomic.Int64
}

func (s *countingSink) Write(ctx context.Context, msgs []*sluice.Message) error {
	if err := s.Sink.Write(ctx, msgs); err != nil {
		return err
	}
	s.n.Add(int64(len(msgs)))
	return nil
}

func (s *countingSink) WriteDeadLetters(ctx context.Context, letters []sluice.DeadLetter) error {
	if err := s.Sink.WriteDeadLetters(ctx, letters); err != nil {
		return err
	}
	s.n.Add(int64(len(letters)))
	return nil
}

// TestPipelineSurvivesFaults runs a pipeline whose source and sink reach
// Redis through a fault-injecting proxy. For each fault it writes a wave of
// entries, injects the fault mid-stream, writes a second wave during it,
// heals, writes a third, and checks that every entry ended up in the output
// or the dead letters (where the classes say) and that nothing is pending.
func TestPipelineSurvivesFaults(t *testing.T) {
	direct := newClient(t)
	notReady := func(t *testing.T, src *redisstream.Source, _ *countingSink, _ int64) {
		testutil.WaitFor(t, time.Minute, "the source to report not ready", func() (bool, string) {
			ctx, cancel := context.WithTimeout(context.Background(), 800*time.Millisecond)
			defer cancel()
			err := src.Ready(ctx)
			return err != nil, fmt.Sprint(err)
		})
	}
	moreWritten := func(n int64) func(*testing.T, *redisstream.Source, *countingSink, int64) {
		return func(t *testing.T, _ *redisstream.Source, sink *countingSink, from int64) {
			testutil.WaitFor(t, time.Minute, "writes during the fault", func() (bool, string) {
				return sink.n.Load() >= from+n, fmt.Sprint(sink.n.Load())
			})
		}
	}
	cases := []struct {
		name  string
		fault func(*faultproxy.Proxy) error
		seen  func(*testing.T, *redisstream.Source, *countingSink, int64)
		heal  func(*faultproxy.Proxy) error
	}{
		{"latency", func(p *faultproxy.Proxy) error { return p.Latency(100*time.Millisecond, 20*time.Millisecond) }, moreWritten(20), (*faultproxy.Proxy).Heal},
		{"reset_peer", func(p *faultproxy.Proxy) error { return p.ResetPeer(50 * time.Millisecond) }, notReady, (*faultproxy.Proxy).Heal},
		{"timeout", func(p *faultproxy.Proxy) error { return p.Timeout(500 * time.Millisecond) }, notReady, (*faultproxy.Proxy).Heal},
		{"blackhole", (*faultproxy.Proxy).Blackhole, notReady, (*faultproxy.Proxy).Heal},
		{"bandwidth", func(p *faultproxy.Proxy) error { return p.Bandwidth(4) }, moreWritten(20), (*faultproxy.Proxy).Heal},
		{"down_up", (*faultproxy.Proxy).Down, notReady, (*faultproxy.Proxy).Up},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			const wave = 200
			p, err := faultproxy.New(redisAddr(t))
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			via := redis.NewClient(&redis.Options{Addr: p.Addr(), ReadTimeout: time.Second, WriteTimeout: time.Second, DialTimeout: time.Second})
			defer via.Close()
			in, out, dlq := uniq(t, direct, "in"), uniq(t, direct, "out"), uniq(t, direct, "dlq")
			src := newSource(t, in, "g", redisstream.WithClient(via), redisstream.WithConsumer("c1"),
				redisstream.WithMinIdle(10*time.Minute), redisstream.WithClaimInterval(time.Second)) // only a prompt recovery of lost replies can finish in time
			rs, err := redisstream.NewSink(context.Background(), out, redisstream.WithClient(via), redisstream.WithDeadLetterStream(dlq))
			if err != nil {
				t.Fatal(err)
			}
			sink := &countingSink{Sink: rs}
			r := startPipeline(t, src, classEnricher(), sink, sluice.WithRetries(1), sluice.WithConcurrency(4),
				sluice.WithBackoff(10*time.Millisecond, 200*time.Millisecond), sluice.WithDrainTimeout(10*time.Second))
			testutil.WaitFor(t, 30*time.Second, "readiness", func() (bool, string) {
				err := src.Ready(ctxT(t, 5*time.Second))
				return err == nil, fmt.Sprint(err)
			})

			classes := map[string]string{}
			publish := func() {
				ids, cl := publishClasses(t, direct, in, wave)
				for _, id := range ids {
					classes[id] = cl[id]
				}
			}
			publish()
			testutil.WaitFor(t, time.Minute, "the first wave to be under way", func() (bool, string) {
				return sink.n.Load() >= wave/2, fmt.Sprint(sink.n.Load())
			})
			if err := tc.fault(p); err != nil {
				t.Fatal(err)
			}
			from := sink.n.Load()
			publish() // straight to Redis, during the fault
			tc.seen(t, src, sink, from)
			if err := tc.heal(p); err != nil {
				t.Fatal(err)
			}
			publish()
			var o outcome
			testutil.WaitFor(t, 2*time.Minute, "every entry to finish", func() (bool, string) {
				o = collect(t, direct, in, out, dlq)
				return o.done() >= len(classes), fmt.Sprintf("%d of %d done, %d pending", o.done(), len(classes), pending(t, direct, in, "g"))
			})
			testutil.WaitFor(t, time.Minute, "nothing pending", func() (bool, string) {
				n := pending(t, direct, in, "g")
				return n == 0, fmt.Sprintf("%d pending", n)
			})
			r.stop(t)
			var missing, misplaced []string
			dups := 0
			for id, cl := range classes {
				want, other := o.outputs[id], o.deadLetter[id]
				if cl != classGood {
					want, other = other, want
				}
				switch {
				case len(other) > 0:
					misplaced = append(misplaced, id)
				case len(want) == 0:
					missing = append(missing, id)
				default:
					dups += len(want) - 1
				}
			}
			if len(missing) > 0 || len(misplaced) > 0 {
				t.Fatalf("%d entries: %d missing (%v), %d in the wrong stream (%v)", len(classes), len(missing), missing, len(misplaced), misplaced)
			}
			t.Logf("%d entries, all accounted for, %d duplicates", len(classes), dups)
		})
	}
}
