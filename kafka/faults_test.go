package kafka

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/internal/faultproxy"
	"github.com/sluicehq/sluice/internal/testutil"
)

// proxied starts a fault proxy in front of broker and returns it with an
// option that sends every connection for broker through it. Kafka
// advertises its own address, so the bootstrap address alone would not do:
// the dialer redirects the advertised address too. dials counts the
// connections made through the proxy.
func proxied(t *testing.T, broker string) (p *faultproxy.Proxy, opt Option, dials *atomic.Int64) {
	t.Helper()
	p, err := faultproxy.New(broker)
	if err != nil {
		t.Fatalf("faultproxy: %v", err)
	}
	t.Cleanup(func() { _ = p.Close() })
	dials = new(atomic.Int64)
	opt = WithDialer(func(ctx context.Context, network, addr string) (net.Conn, error) {
		if addr != broker {
			t.Errorf("dial of %s, want only %s", addr, broker)
		}
		dials.Add(1)
		var d net.Dialer
		return d.DialContext(ctx, network, p.Addr())
	})
	return p, opt, dials
}

// probeHealth calls Lag and Ready once each, as the core's health and
// readiness handlers do (with their 800ms timeout), and fails the test if
// either takes a second or more.
func probeHealth(t *testing.T, src *Source) (lagErr, readyErr error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 800*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, lagErr = src.Lag(ctx)
	if d := time.Since(start); d >= time.Second {
		t.Fatalf("Lag took %s (err %v); a health probe must answer well under 1s", d, lagErr)
	}
	start = time.Now()
	readyErr = src.Ready(ctx)
	if d := time.Since(start); d >= time.Second {
		t.Fatalf("Ready took %s (err %v); a readiness probe must answer well under 1s", d, readyErr)
	}
	return lagErr, readyErr
}

// TestKafkaHealthWithBrokerDown cuts the source off the broker, by a proxy
// that goes down or turns into a black hole, and checks that Lag and Ready
// report errors, each within well under a second, and recover once the
// broker is reachable again.
func TestKafkaHealthWithBrokerDown(t *testing.T) {
	bs := brokers(t)
	cases := []struct {
		name       string
		fault      func(*faultproxy.Proxy) error
		heal       func(*faultproxy.Proxy) error
		recoveryIn time.Duration // a black-holed request waits out sarama's read timeout (30s)
	}{
		{"down", (*faultproxy.Proxy).Down, (*faultproxy.Proxy).Up, 30 * time.Second},
		{"blackhole", (*faultproxy.Proxy).Blackhole, (*faultproxy.Proxy).Heal, 90 * time.Second},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			topic := createTopic(t, bs, "health-"+tc.name, 2)
			produce(t, bs, topic, 2, 10)
			p, viaProxy, _ := proxied(t, bs[0])
			src, err := NewSource(context.Background(), bs, topic+"-g", []string{topic},
				WithLogger(testutil.Quiet()), viaProxy, WithConnectTimeout(5*time.Second))
			if err != nil {
				t.Fatal(err)
			}
			defer src.Close()
			fetchN(t, src, 10, 60*time.Second)
			testutil.Eventually(t, 30*time.Second, "Lag and Ready to succeed", func() bool {
				lagErr, readyErr := probeHealth(t, src)
				return lagErr == nil && readyErr == nil
			})

			if err := tc.fault(p); err != nil {
				t.Fatal(err)
			}
			var lagErr, readyErr error
			testutil.Eventually(t, 10*time.Second, "Lag and Ready to fail with the broker cut off", func() bool {
				lagErr, readyErr = probeHealth(t, src)
				return lagErr != nil && readyErr != nil
			})
			if !errors.Is(readyErr, ErrNotReady) {
				t.Fatalf("Ready = %v, want an error matching ErrNotReady", readyErr)
			}
			t.Logf("with the broker cut off: Lag: %v; Ready: %v", lagErr, readyErr)
			// It keeps failing, and keeps answering promptly, while the
			// fault lasts.
			for range 3 {
				if lagErr, readyErr = probeHealth(t, src); lagErr == nil || readyErr == nil {
					t.Fatalf("with the broker cut off: Lag err %v, Ready err %v; want both errors", lagErr, readyErr)
				}
			}

			if err := tc.heal(p); err != nil {
				t.Fatal(err)
			}
			testutil.Eventually(t, tc.recoveryIn, "Lag and Ready to recover", func() bool {
				lagErr, readyErr = probeHealth(t, src)
				return lagErr == nil && readyErr == nil
			})
		})
	}
}

// TestWithDialerReachesSarama checks the option's plumbing: sarama dials
// through the function, bounded by the connect timeout.
func TestWithDialerReachesSarama(t *testing.T) {
	var gotDeadline atomic.Bool
	sc, err := ClientConfig(WithConnectTimeout(3*time.Second), WithDialer(func(ctx context.Context, network, addr string) (net.Conn, error) {
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) <= 3*time.Second {
			gotDeadline.Store(true)
		}
		return nil, errors.New("refused by test")
	}))
	if err != nil {
		t.Fatal(err)
	}
	if !sc.Net.Proxy.Enable || sc.Net.Proxy.Dialer == nil {
		t.Fatalf("Net.Proxy not set: %+v", sc.Net.Proxy)
	}
	if _, err := sc.Net.Proxy.Dialer.Dial("tcp", "127.0.0.1:9092"); err == nil || !gotDeadline.Load() {
		t.Fatalf("Dial err = %v, deadline seen %v; want the test's error and a deadline within the connect timeout", err, gotDeadline.Load())
	}
	if _, err := ClientConfig(WithDialer(nil)); !errors.Is(err, sluice.ErrInvalidConfig) {
		t.Fatalf("WithDialer(nil) err = %v, want ErrInvalidConfig", err)
	}
}

// TestKafkaPipelineSurvivesFaults runs a whole pipeline — Source and
// Producer through a fault proxy, a trivial enricher that dead-letters a few
// events — applies a fault mid-stream, heals it, and checks that the
// pipeline recovers and loses nothing: every input event is in the output
// or, for those the enricher refuses, in the dead letters.
func TestKafkaPipelineSurvivesFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	bs := brokers(t)
	type proxy = faultproxy.Proxy
	// seen waits until the fault has visibly hit the pipeline.
	type watch struct {
		sink  *countingSink
		src   *Source
		dials *atomic.Int64
	}
	moreWritten := func(n int) func(t *testing.T, w watch) {
		return func(t *testing.T, w watch) {
			from := w.sink.count()
			w.sink.waitCount(t, from+n, 2*time.Minute)
		}
	}
	redialed := func(n int64) func(t *testing.T, w watch) {
		return func(t *testing.T, w watch) {
			from := w.dials.Load()
			testutil.Eventually(t, time.Minute, "the clients to reconnect", func() bool { return w.dials.Load() >= from+n })
		}
	}
	notReady := func(t *testing.T, w watch) {
		testutil.Eventually(t, time.Minute, "the source to report not ready", func() bool {
			ctx, cancel := context.WithTimeout(context.Background(), 800*time.Millisecond)
			defer cancel()
			return w.src.Ready(ctx) != nil
		})
	}
	cases := []struct {
		name  string
		fault func(*proxy) error
		seen  func(*testing.T, watch)
		heal  func(*proxy) error
	}{
		{"latency", func(p *proxy) error { return p.Latency(200*time.Millisecond, 50*time.Millisecond) }, moreWritten(50), (*proxy).Heal},
		{"reset_peer", func(p *proxy) error { return p.ResetPeer(300 * time.Millisecond) }, redialed(3), (*proxy).Heal},
		{"timeout", func(p *proxy) error { return p.Timeout(2 * time.Second) }, redialed(2), (*proxy).Heal},
		{"blackhole", (*proxy).Blackhole, notReady, (*proxy).Heal},
		{"bandwidth", func(p *proxy) error { return p.Bandwidth(8) }, moreWritten(50), (*proxy).Heal},
		{"down_up", (*proxy).Down, notReady, (*proxy).Up},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			const wave = 300
			in := createTopic(t, bs, "fault-"+tc.name+"-in", 2)
			out := createTopic(t, bs, "fault-"+tc.name+"-out", 2)
			dlq := createTopic(t, bs, "fault-"+tc.name+"-dlq", 1)
			p, viaProxy, dials := proxied(t, bs[0])

			prod, err := NewSink(context.Background(), bs, out, viaProxy, WithDeadLetterTopic(dlq), WithLogger(testutil.Quiet()))
			if err != nil {
				t.Fatal(err)
			}
			defer prod.Close()
			src, err := NewSource(context.Background(), bs, in+"-g", []string{in}, viaProxy, WithLogger(testutil.Quiet()),
				WithSessionTimeout(10*time.Second, time.Second), WithRebalanceTimeout(30*time.Second), WithRevokeTimeout(5*time.Second))
			if err != nil {
				t.Fatal(err)
			}
			defer src.Close()
			sink := newCountingSink(prod)
			enr := sluice.EnricherFunc(func(ctx context.Context, m *sluice.Message) (*sluice.Message, error) {
				if m.Origin.Offset%100 == 7 {
					return nil, sluice.Permanent(errors.New("offset ends in 07"))
				}
				select { // a little work, so that events are in flight when the fault hits
				case <-time.After(5 * time.Millisecond):
				case <-ctx.Done():
					return nil, ctx.Err()
				}
				return m, nil
			})
			pl, err := sluice.New(src, enr, sink, sluice.WithLogger(testutil.Quiet()), sluice.WithConcurrency(4),
				sluice.WithDrainTimeout(10*time.Second), sluice.WithBackoff(10*time.Millisecond, 500*time.Millisecond))
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- pl.Run(ctx) }()

			produceRange(t, bs, in, 2, 0, wave)
			sink.waitCount(t, wave/2, 2*time.Minute)
			if err := tc.fault(p); err != nil {
				t.Fatal(err)
			}
			produceRange(t, bs, in, 2, wave, 2*wave) // straight to the broker, during the fault
			tc.seen(t, watch{sink: sink, src: src, dials: dials})
			if err := tc.heal(p); err != nil {
				t.Fatal(err)
			}
			produceRange(t, bs, in, 2, 2*wave, 3*wave)
			sink.waitCount(t, 3*wave, 3*time.Minute)
			cancel()
			if err := <-done; err != nil {
				t.Fatalf("Run: %v", err)
			}
			checkNothingLost(t, bs, in, out, dlq)
		})
	}
}

// checkNothingLost reads the input, output and dead-letter topics and
// checks that every input event is in the output, or in the dead letters
// if the enricher refuses it (offset ending in 07), by the origin headers.
func checkNothingLost(t *testing.T, bs []string, in, out, dlq string) {
	t.Helper()
	origins := func(msgs []*sarama.ConsumerMessage) map[string]int {
		m := map[string]int{}
		for _, r := range msgs {
			tp, _ := header(r, sluice.HeaderSourceTopic)
			p, _ := header(r, sluice.HeaderSourcePartition)
			o, _ := header(r, sluice.HeaderSourceOffset)
			m[tp+"/"+p+"@"+o]++
		}
		return m
	}
	inputs := readAll(t, bs, in)
	outs, dls := origins(readAll(t, bs, out)), origins(readAll(t, bs, dlq))
	var missing, misplaced []string
	dups := 0
	for _, r := range inputs {
		key := fmt.Sprintf("%s/%d@%d", r.Topic, r.Partition, r.Offset)
		want, other := outs, dls
		if r.Offset%100 == 7 {
			want, other = dls, outs
		}
		switch {
		case want[key] > 0:
			dups += want[key] - 1
		case other[key] > 0:
			misplaced = append(misplaced, key)
		default:
			missing = append(missing, key)
		}
	}
	if len(missing) > 0 || len(misplaced) > 0 {
		t.Fatalf("%d inputs: %d missing (first %v), %d in the wrong topic (first %v)",
			len(inputs), len(missing), head(missing, 5), len(misplaced), head(misplaced, 5))
	}
	t.Logf("%d inputs, all accounted for: %d outputs, %d dead letters, %d duplicates", len(inputs), len(outs), len(dls), dups)
}

func head(s []string, n int) []string { return s[:min(n, len(s))] }
