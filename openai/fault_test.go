package openai

import (
	"context"
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/internal/faultproxy"
	"github.com/sluicehq/sluice/internal/testutil"
	"github.com/sluicehq/sluice/llmtest"
	"github.com/sluicehq/sluice/sluicetest"
)

// Network faults between the enricher and the model, inside a whole
// pipeline: the enricher reaches the fake model through a fault proxy.
//
// What is asserted, for every fault:
//   - nothing is lost: every input ends up enriched or dead-lettered, and a
//     dead letter has a reason;
//   - the pipeline recovers: events published after the fault is healed are
//     all enriched;
//   - a hiccup shorter than the retry budget dead-letters nothing. A fault
//     is healed as soon as the pipeline has retried because of it, so it
//     lasts a few calls, while the budget is faultRetries retries with a
//     backoff of faultBackoff: far more than the hiccup.
//
// The tests wait on conditions (outputs written, retries counted), never on
// sleeps.

const (
	faultRetries = 8
	faultBatch   = 16 // events published in each phase
	faultWait    = 60 * time.Second
)

var faultBackoff = [2]time.Duration{10 * time.Millisecond, 200 * time.Millisecond}

// retries returns how many times the pipeline has retried in all.
func (r *faultRig) retries() uint64 { return r.pipe.Stats().Retried }

// faultRig is a running pipeline whose enricher talks to the fake model
// through a fault proxy.
type faultRig struct {
	t         *testing.T
	model     *llmtest.Server
	proxy     *faultproxy.Proxy
	src       *sluicetest.Source
	sink      *sluicetest.Sink
	pipe      *sluice.Pipeline
	published []sluice.Origin
	ctx       context.Context // bounds every wait
}

type rigConfig struct {
	retries int
	timeout time.Duration // of one model request
}

func newFaultRig(t *testing.T, rc rigConfig) *faultRig {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), faultWait)
	t.Cleanup(cancel)
	model := llmtest.NewServer(llmtest.WithLatency(llmtest.Fixed(time.Millisecond)))
	t.Cleanup(model.Close)
	u, err := url.Parse(model.URL)
	if err != nil {
		t.Fatal(err)
	}
	proxy, err := faultproxy.New(u.Host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = proxy.Close() })
	enr, err := New("llmtest", Sentiment(), []string{"text"},
		WithBaseURL("http://"+proxy.Addr()+"/v1"), WithTimeout(rc.timeout), WithLogger(testutil.Quiet()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = enr.Close() })

	r := &faultRig{t: t, model: model, proxy: proxy, src: sluicetest.NewSource("events", 4),
		sink: sluicetest.NewSink(), ctx: ctx}
	r.pipe, err = sluice.New(r.src, enr, r.sink,
		sluice.WithConcurrency(4),
		sluice.WithRetries(rc.retries),
		sluice.WithBackoff(faultBackoff[0], faultBackoff[1]),
		sluice.WithLogger(testutil.Quiet()))
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.pipe.Run(runCtx) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return r
}

// publish adds n events.
func (r *faultRig) publish(n int) {
	for range n {
		i := len(r.published)
		r.published = append(r.published, r.src.Publish(nil, fmt.Appendf(nil, `{"id":%d,"text":"event %d is great"}`, i, i)))
	}
}

// settle waits until every published event has an output or a dead letter.
func (r *faultRig) settle() {
	r.t.Helper()
	if err := r.sink.WaitFor(r.ctx, len(r.published)); err != nil {
		r.t.Fatalf("waiting for every event to finish: %v (stats %+v)", err, r.pipe.Stats())
	}
}

// waitRetries waits until the pipeline has retried n times in all.
func (r *faultRig) waitRetries(n uint64) {
	r.t.Helper()
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for r.retries() < n {
		select {
		case <-tick.C:
		case <-r.ctx.Done():
			r.t.Fatalf("waiting for the fault to make the pipeline retry: %d of %d retries: %v", r.retries(), n, r.ctx.Err())
		}
	}
}

func (r *faultRig) heal() {
	r.t.Helper()
	if err := r.proxy.Heal(); err != nil {
		r.t.Fatal(err)
	}
	if err := r.proxy.Up(); err != nil {
		r.t.Fatal(err)
	}
}

// check asserts that every input finished exactly once: enriched, or
// dead-lettered with a reason. It returns the dead letters.
func (r *faultRig) check() []sluice.DeadLetter {
	r.t.Helper()
	seen := map[sluice.Origin]int{}
	for _, m := range r.sink.Messages() {
		seen[m.Origin]++
	}
	letters := r.sink.DeadLetters()
	for _, l := range letters {
		seen[l.Msg.Origin]++
		if l.Reason == "" {
			r.t.Errorf("dead letter of %+v has no reason", l.Msg.Origin)
		}
	}
	for _, o := range r.published {
		if n := seen[o]; n != 1 {
			r.t.Errorf("event %+v finished %d times, want exactly once", o, n)
		}
		delete(seen, o)
	}
	for o, n := range seen {
		r.t.Errorf("%d outputs of %+v, which was never published", n, o)
	}
	return letters
}

// hiccup runs events through the pipeline healthy, then with the fault on
// until the pipeline has retried because of it, then healed, and asserts
// that all of them, and events published after the healing, are enriched.
func hiccup(t *testing.T, rc rigConfig, inject func(*faultproxy.Proxy) error) {
	r := newFaultRig(t, rc)
	r.publish(faultBatch)
	r.settle()
	before := r.retries()

	if err := inject(r.proxy); err != nil {
		t.Fatal(err)
	}
	r.publish(faultBatch)
	r.waitRetries(before + 1)
	r.heal()
	r.settle()

	r.publish(faultBatch) // after the healing
	r.settle()
	if letters := r.check(); len(letters) > 0 {
		t.Errorf("%d events dead-lettered for a hiccup shorter than the retry budget; first: %q after %d attempts",
			len(letters), letters[0].Reason, letters[0].Attempts)
	}
	if got := len(r.sink.Messages()); got != len(r.published) {
		t.Errorf("%d of %d events enriched", got, len(r.published))
	}
	t.Logf("%d events, %d retries, stats %+v", len(r.published), r.retries(), r.pipe.Stats())
}

var quick = rigConfig{retries: faultRetries, timeout: 5 * time.Second}

func TestFaultResetPeer(t *testing.T) {
	hiccup(t, quick, func(p *faultproxy.Proxy) error { return p.ResetPeer(0) })
}

func TestFaultResetPeerMidResponse(t *testing.T) {
	// Connections are cut a moment after they open, often in the middle of
	// a request or its answer.
	hiccup(t, quick, func(p *faultproxy.Proxy) error { return p.ResetPeer(time.Millisecond) })
}

func TestFaultBlackhole(t *testing.T) {
	// Requests vanish; only the model timeout ends them.
	hiccup(t, rigConfig{retries: faultRetries, timeout: time.Second},
		func(p *faultproxy.Proxy) error { return p.Blackhole() })
}

func TestFaultTimeoutClosesConnections(t *testing.T) {
	// Data stops, then the proxy closes the connections.
	hiccup(t, quick, func(p *faultproxy.Proxy) error { return p.Timeout(50 * time.Millisecond) })
}

func TestFaultProxyDownUp(t *testing.T) {
	hiccup(t, quick, func(p *faultproxy.Proxy) error { return p.Down() })
}

// Slow networks are not failures: with latency or a bandwidth limit well
// inside the model timeout, every event is enriched on its first attempt.
func TestFaultSlowNetwork(t *testing.T) {
	for _, tc := range []struct {
		name   string
		inject func(*faultproxy.Proxy) error
	}{
		{"latency", func(p *faultproxy.Proxy) error { return p.Latency(50*time.Millisecond, 10*time.Millisecond) }},
		{"bandwidth", func(p *faultproxy.Proxy) error { return p.Bandwidth(16) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newFaultRig(t, rigConfig{retries: faultRetries, timeout: 30 * time.Second})
			if err := tc.inject(r.proxy); err != nil {
				t.Fatal(err)
			}
			r.publish(faultBatch)
			r.settle()
			r.heal()
			r.publish(faultBatch)
			r.settle()
			if letters := r.check(); len(letters) > 0 {
				t.Errorf("%d events dead-lettered on a slow network; first: %q", len(letters), letters[0].Reason)
			}
			if n := r.retries(); n != 0 {
				t.Errorf("%d retries on a network that is slow but well within the timeout", n)
			}
		})
	}
}

// An outage longer than the retry budget dead-letters the events it hits,
// each with a reason, and loses none; once the model is reachable again,
// new events are enriched.
func TestFaultOutageBeyondRetryBudget(t *testing.T) {
	const retries = 1
	r := newFaultRig(t, rigConfig{retries: retries, timeout: 5 * time.Second})
	if err := r.proxy.Down(); err != nil {
		t.Fatal(err)
	}
	r.publish(faultBatch)
	r.settle() // every one of them is dead-lettered: the model cannot be reached
	letters := r.check()
	if len(letters) != faultBatch {
		t.Fatalf("%d of %d events dead-lettered while the model was unreachable", len(letters), faultBatch)
	}
	for _, l := range letters {
		if l.Attempts != retries+1 {
			t.Errorf("dead letter after %d attempts, want %d: %s", l.Attempts, retries+1, l.Reason)
		}
	}
	t.Logf("reason: %s", letters[0].Reason)

	r.heal()
	r.publish(faultBatch)
	r.settle()
	r.check()
	if got := len(r.sink.Messages()); got != faultBatch {
		t.Errorf("%d of %d events enriched after the outage", got, faultBatch)
	}
}
