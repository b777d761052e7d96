package sluice_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/sluicetest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func quiet() sluice.Option {
	return sluice.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))
}

// start runs p in the background and returns a channel with Run's result.
func start(t *testing.T, ctx context.Context, p *sluice.Pipeline) <-chan error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	return done
}

func wait[T any](t *testing.T, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(20 * time.Second):
		t.Fatal("timed out waiting")
		panic("unreachable")
	}
}

func within(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// gated is an enricher whose calls block until the test releases them by
// event value; it reports each start on started.
type gated struct {
	started chan string
	mu      sync.Mutex
	gates   map[string]chan error
}

func newGated() *gated {
	return &gated{started: make(chan string, 1024), gates: map[string]chan error{}}
}

func (g *gated) gate(v string) chan error {
	g.mu.Lock()
	defer g.mu.Unlock()
	ch, ok := g.gates[v]
	if !ok {
		ch = make(chan error, 1)
		g.gates[v] = ch
	}
	return ch
}

func (g *gated) release(v string, err error) { g.gate(v) <- err }

func (g *gated) Enrich(ctx context.Context, in *sluice.Message) (*sluice.Message, error) {
	v := string(in.Value)
	g.started <- v
	select {
	case err := <-g.gate(v):
		if err != nil {
			return nil, err
		}
		return in.WithValue([]byte(strings.ToUpper(v))), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// ackSpy counts acked messages and signals every Ack call.
type ackSpy struct {
	inner sluice.Acker
	n     atomic.Int64
	calls chan int
}

func newAckSpy(inner sluice.Acker) *ackSpy {
	return &ackSpy{inner: inner, calls: make(chan int, 1024)}
}

func (a *ackSpy) Ack(ctx context.Context, msgs []*sluice.Message) error {
	if err := a.inner.Ack(ctx, msgs); err != nil {
		return err
	}
	a.calls <- int(a.n.Add(int64(len(msgs))))
	return nil
}

func (a *ackSpy) waitAcked(t *testing.T, n int) {
	t.Helper()
	for int(a.n.Load()) < n {
		wait(t, a.calls)
	}
}

func TestAckedPrefixUnderOutOfOrderCompletion(t *testing.T) {
	src := sluicetest.NewSource("in", 1)
	for i := range 5 {
		src.Publish(nil, fmt.Appendf(nil, "e%d", i))
	}
	g := newGated()
	acks := newAckSpy(src)
	sink := sluicetest.NewSink()
	p, err := sluice.New(src, g, sink, sluice.WithConcurrency(5), sluice.WithAcker(acks), quiet())
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := start(t, ctx, p)
	for range 5 {
		wait(t, g.started)
	}

	// Later offsets finish first: nothing may be committed past offset 0.
	g.release("e4", nil)
	g.release("e3", nil)
	g.release("e1", nil)
	acks.waitAcked(t, 3)
	assert.EqualValues(t, 0, src.Committed(0), "committed past unfinished offset 0")

	g.release("e0", nil)
	acks.waitAcked(t, 4)
	assert.EqualValues(t, 2, src.Committed(0), "offsets 0 and 1 are done, 2 is not")

	g.release("e2", nil)
	acks.waitAcked(t, 5)
	assert.EqualValues(t, 5, src.Committed(0))

	cancel()
	require.NoError(t, wait(t, done))
	assert.Len(t, sink.Messages(), 5)
}

func TestCrashRedeliversFromFirstUnfinishedOffset(t *testing.T) {
	src := sluicetest.NewSource("in", 1)
	for i := range 4 {
		src.Publish(nil, fmt.Appendf(nil, "e%d", i))
	}
	g := newGated()
	acks := newAckSpy(src)
	sink := sluicetest.NewSink()
	p, err := sluice.New(src, g, sink, sluice.WithConcurrency(4), sluice.WithAcker(acks),
		sluice.WithDrainTimeout(time.Millisecond), quiet())
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := start(t, ctx, p)
	for range 4 {
		wait(t, g.started)
	}
	g.release("e0", nil)
	g.release("e2", nil)
	acks.waitAcked(t, 2)
	cancel() // e1 and e3 never finish: the drain times out
	require.NoError(t, wait(t, done))
	require.EqualValues(t, 1, src.Committed(0))

	// A new consumer starts from the first unfinished offset.
	src.Restart()
	src.End()
	sink2 := sluicetest.NewSink()
	upper := sluice.EnricherFunc(func(_ context.Context, in *sluice.Message) (*sluice.Message, error) {
		return in.WithValue([]byte(strings.ToUpper(string(in.Value)))), nil
	})
	p2, err := sluice.New(src, upper, sink2, quiet())
	require.NoError(t, err)
	require.NoError(t, p2.Run(within(t)))
	var got []string
	for _, m := range sink2.Messages() {
		got = append(got, m.Origin.String())
	}
	assert.ElementsMatch(t, []string{"in/0@1", "in/0@2", "in/0@3"}, got)
	assert.EqualValues(t, 4, src.Committed(0))
}

func TestTransientFailuresRetryThenDeadLetter(t *testing.T) {
	src := sluicetest.NewSource("in", 1)
	src.Publish([]byte("k"), []byte(`{"bad":true}`), sluice.Header{Key: "trace", Value: []byte("abc")})
	src.Publish(nil, []byte(`ok`))
	src.End()
	var calls atomic.Int32
	enr := sluice.EnricherFunc(func(_ context.Context, in *sluice.Message) (*sluice.Message, error) {
		if string(in.Value) == "ok" {
			return in.WithValue([]byte("OK")), nil
		}
		calls.Add(1)
		return nil, errors.New("model returned 500")
	})
	sink := sluicetest.NewSink()
	p, err := sluice.New(src, enr, sink, sluice.WithRetries(3), sluice.WithBackoff(0, 0), quiet())
	require.NoError(t, err)
	require.NoError(t, p.Run(within(t)))

	assert.EqualValues(t, 4, calls.Load(), "one try plus three retries")
	letters := sink.DeadLetters()
	require.Len(t, letters, 1)
	d := letters[0]
	assert.Equal(t, `{"bad":true}`, string(d.Msg.Value), "the original bytes")
	assert.Equal(t, 4, d.Attempts)
	assert.Contains(t, d.Reason, "gave up after 4 attempts")
	assert.Contains(t, d.Reason, "model returned 500")
	assert.Equal(t, "in/0@0", d.Msg.Origin.String())
	assert.False(t, d.FirstAttempt.IsZero())

	hs := map[string]string{}
	for _, h := range d.Headers() {
		hs[h.Key] = string(h.Value)
	}
	assert.Equal(t, "abc", hs["trace"], "original headers are kept")
	assert.Equal(t, d.Reason, hs[sluice.HeaderFailureReason])
	assert.Equal(t, "4", hs[sluice.HeaderFailureAttempts])
	assert.Equal(t, "in", hs[sluice.HeaderSourceTopic])
	assert.Equal(t, "0", hs[sluice.HeaderSourcePartition])
	assert.Equal(t, "0", hs[sluice.HeaderSourceOffset])

	st := p.Stats()
	assert.EqualValues(t, 3, st.Retried)
	assert.EqualValues(t, 1, st.DeadLettered)
	assert.EqualValues(t, 1, st.Enriched)
	assert.EqualValues(t, 2, src.Committed(0), "dead-lettered events are acked")
}

func TestPermanentErrorSkipsRetries(t *testing.T) {
	src := sluicetest.NewSource("in", 1)
	src.Publish(nil, []byte(`not json`))
	src.End()
	var calls atomic.Int32
	enr := sluice.EnricherFunc(func(_ context.Context, in *sluice.Message) (*sluice.Message, error) {
		calls.Add(1)
		return nil, sluice.Permanent(errors.New("event is not valid JSON"))
	})
	sink := sluicetest.NewSink()
	p, err := sluice.New(src, enr, sink, quiet())
	require.NoError(t, err)
	require.NoError(t, p.Run(within(t)))
	assert.EqualValues(t, 1, calls.Load())
	require.Len(t, sink.DeadLetters(), 1)
	assert.Equal(t, "event is not valid JSON", sink.DeadLetters()[0].Reason)
	assert.Equal(t, 1, sink.DeadLetters()[0].Attempts)
}

func TestBackoffUsesClock(t *testing.T) {
	clk := sluicetest.NewClock(epoch)
	src := sluicetest.NewSource("in", 1)
	src.Publish(nil, []byte(`x`))
	src.End()
	var calls atomic.Int32
	enr := sluice.EnricherFunc(func(_ context.Context, in *sluice.Message) (*sluice.Message, error) {
		if calls.Add(1) < 3 {
			return nil, errors.New("503")
		}
		return in, nil
	})
	sink := sluicetest.NewSink()
	p, err := sluice.New(src, enr, sink, sluice.WithClock(clk), sluice.WithBackoff(100*time.Millisecond, time.Second), quiet())
	require.NoError(t, err)
	done := start(t, within(t), p)

	// First retry waits (0, 100ms], the second (0, 200ms].
	for i, ceiling := range []time.Duration{100 * time.Millisecond, 200 * time.Millisecond} {
		require.True(t, clk.BlockUntil(1, nil))
		at, _ := clk.NextDeadline()
		d := at.Sub(clk.Now())
		assert.True(t, d > 0 && d <= ceiling, "retry %d backoff %s outside (0, %s]", i+1, d, ceiling)
		assert.EqualValues(t, i+1, calls.Load(), "no retry before the backoff elapsed")
		clk.Advance(d)
	}
	require.NoError(t, wait(t, done))
	assert.EqualValues(t, 3, calls.Load())
	assert.Len(t, sink.Messages(), 1)
}

// rateLimitOnce returns a 429 for the first call with a given value.
type rateLimitOnce struct {
	retryAfter time.Duration
	mu         sync.Mutex
	seen       map[string]int
}

func (r *rateLimitOnce) Enrich(_ context.Context, in *sluice.Message) (*sluice.Message, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seen[string(in.Value)]++
	if r.seen[string(in.Value)] == 1 {
		return nil, &sluice.RateLimitError{RetryAfter: r.retryAfter}
	}
	return in, nil
}

func TestRateLimitPausesThenResumes(t *testing.T) {
	clk := sluicetest.NewClock(epoch)
	src := sluicetest.NewSource("in", 1)
	src.Publish(nil, []byte(`a`))
	var calls atomic.Int32
	enr := sluice.EnricherFunc(func(_ context.Context, in *sluice.Message) (*sluice.Message, error) {
		if calls.Add(1) == 1 {
			return nil, &sluice.RateLimitError{RetryAfter: 2 * time.Second}
		}
		return in, nil
	})
	sink := sluicetest.NewSink()
	p, err := sluice.New(src, enr, sink, sluice.WithClock(clk), sluice.WithPauseJitter(0),
		sluice.WithRetries(0), quiet())
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := start(t, ctx, p)

	// The 429 arms the resume timer exactly Retry-After ahead.
	require.True(t, clk.BlockUntil(1, nil))
	at, _ := clk.NextDeadline()
	assert.Equal(t, 2*time.Second, at.Sub(clk.Now()))
	assert.True(t, src.Paused(), "source paused")
	assert.Equal(t, sluice.StatePaused, p.State())
	assert.EqualValues(t, 1, p.Stats().RateLimitPauses)

	// Nothing is dispatched during the pause.
	src.Publish(nil, []byte(`b`))
	clk.Advance(2*time.Second - time.Millisecond)
	assert.Equal(t, 1, clk.Timers(), "still paused 1ms before Retry-After")
	assert.Empty(t, sink.Messages())
	assert.EqualValues(t, 1, calls.Load(), "no model call during the pause")

	clk.Advance(time.Millisecond)
	require.NoError(t, sink.WaitFor(within(t), 2))
	assert.False(t, src.Paused(), "source resumed")
	assert.Equal(t, 0, src.FetchesWhilePaused())
	cancel()
	require.NoError(t, wait(t, done))

	st := p.Stats()
	assert.EqualValues(t, 2, st.Enriched)
	assert.EqualValues(t, 0, st.DeadLettered, "a 429 never costs an event its retries, even with zero retries")
	assert.EqualValues(t, 0, st.Retried)
	assert.EqualValues(t, 1, st.RateLimited)
}

func TestRateLimitPauseAddsJitter(t *testing.T) {
	clk := sluicetest.NewClock(epoch)
	src := sluicetest.NewSource("in", 1)
	src.Publish(nil, []byte(`a`))
	enr := &rateLimitOnce{retryAfter: 2 * time.Second, seen: map[string]int{}}
	sink := sluicetest.NewSink()
	p, err := sluice.New(src, enr, sink, sluice.WithClock(clk), sluice.WithPauseJitter(500*time.Millisecond), quiet())
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := start(t, ctx, p)
	require.True(t, clk.BlockUntil(1, nil))
	at, _ := clk.NextDeadline()
	d := at.Sub(clk.Now())
	assert.True(t, d >= 2*time.Second && d < 2500*time.Millisecond, "pause %s outside [2s, 2.5s)", d)
	clk.Advance(d)
	// The worker held by the pause waits a random part of the jitter window
	// before it calls the model again.
	require.True(t, clk.BlockUntil(1, nil))
	at, _ = clk.NextDeadline()
	s := at.Sub(clk.Now())
	assert.True(t, s >= 0 && s < 500*time.Millisecond, "resume stagger %s outside [0, 500ms)", s)
	assert.Empty(t, sink.Messages(), "no call before the stagger")
	clk.Advance(s)
	require.NoError(t, sink.WaitFor(within(t), 1))
	cancel()
	require.NoError(t, wait(t, done))
}

func TestPersistentRateLimitStopsThePipeline(t *testing.T) {
	clk := sluicetest.NewClock(epoch)
	src := sluicetest.NewSource("in", 1)
	src.Publish(nil, []byte(`a`))
	var calls atomic.Int32
	enr := sluice.EnricherFunc(func(context.Context, *sluice.Message) (*sluice.Message, error) {
		calls.Add(1)
		return nil, &sluice.RateLimitError{RetryAfter: 10 * time.Second}
	})
	sink := sluicetest.NewSink()
	p, err := sluice.New(src, enr, sink, sluice.WithClock(clk), sluice.WithPauseJitter(0),
		sluice.WithMaxRateLimitDuration(60*time.Second), quiet())
	require.NoError(t, err)
	done := start(t, context.Background(), p)

	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for clk.BlockUntil(1, stop) {
			clk.Advance(10 * time.Second)
		}
	}()
	runErr := wait(t, done)
	require.ErrorIs(t, runErr, sluice.ErrRateLimited)
	assert.Contains(t, runErr.Error(), "consumption stopped")
	assert.EqualValues(t, 6, calls.Load(), "429s at 0s, 10s, ..., 50s; the pause after the last ends at the 60s limit, where the pipeline stops without calling again")
	assert.Equal(t, sluice.StateStopped, p.State())
	assert.Contains(t, p.Stats().Err, "rate limited")
	assert.Empty(t, sink.DeadLetters(), "rate-limited events are never dead-lettered")
	assert.EqualValues(t, 0, src.Committed(0), "the event stays unacked for redelivery")
}

func TestSuccessResetsRateLimitClock(t *testing.T) {
	clk := sluicetest.NewClock(epoch)
	src := sluicetest.NewSource("in", 1)
	for i := range 10 {
		src.Publish(nil, fmt.Appendf(nil, "e%d", i))
	}
	src.End()
	// One event at a time: every event is refused once, then succeeds 50s
	// later; each success ends a limited stretch, so none reaches 60s and
	// the pipeline must not stop.
	enr := &rateLimitOnce{retryAfter: 50 * time.Second, seen: map[string]int{}}
	sink := sluicetest.NewSink()
	p, err := sluice.New(src, enr, sink, sluice.WithClock(clk), sluice.WithPauseJitter(0),
		sluice.WithConcurrency(1), sluice.WithMaxInFlight(1), quiet())
	require.NoError(t, err)
	done := start(t, context.Background(), p)
	stop := make(chan struct{})
	go func() {
		for clk.BlockUntil(1, stop) {
			clk.Advance(50 * time.Second)
		}
	}()
	require.NoError(t, wait(t, done))
	close(stop)
	assert.EqualValues(t, 10, p.Stats().Enriched)
}

func TestFatalErrorStopsWithoutDeadLettering(t *testing.T) {
	src := sluicetest.NewSource("in", 1)
	src.Publish(nil, []byte(`a`))
	enr := sluice.EnricherFunc(func(context.Context, *sluice.Message) (*sluice.Message, error) {
		return nil, sluice.Fatal(errors.New("model API rejected the credentials (401)"))
	})
	sink := sluicetest.NewSink()
	p, err := sluice.New(src, enr, sink, quiet())
	require.NoError(t, err)
	err = p.Run(within(t))
	require.ErrorIs(t, err, sluice.ErrFatal)
	assert.Contains(t, err.Error(), "credentials")
	assert.Empty(t, sink.DeadLetters())
	assert.EqualValues(t, 0, src.Committed(0))
}

func TestKeyOrdering(t *testing.T) {
	src := sluicetest.NewSource("in", 1)
	for i := range 3 {
		src.Publish([]byte("A"), fmt.Appendf(nil, "A%d", i))
		src.Publish([]byte("B"), fmt.Appendf(nil, "B%d", i))
	}
	src.Publish(nil, []byte("free"))
	src.End()
	g := newGated()
	sink := sluicetest.NewSink()
	p, err := sluice.New(src, g, sink, sluice.WithConcurrency(8), sluice.WithKeyOrdering(), quiet())
	require.NoError(t, err)
	done := start(t, within(t), p)

	// The heads of both keys and the keyless event start in parallel.
	first := []string{wait(t, g.started), wait(t, g.started), wait(t, g.started)}
	assert.ElementsMatch(t, []string{"A0", "B0", "free"}, first)
	g.release("free", nil)
	// Each key's next event starts only when the previous one is written.
	for i := range 2 {
		g.release(fmt.Sprintf("A%d", i), nil)
		assert.Equal(t, fmt.Sprintf("A%d", i+1), wait(t, g.started))
		g.release(fmt.Sprintf("B%d", i), nil)
		assert.Equal(t, fmt.Sprintf("B%d", i+1), wait(t, g.started))
	}
	g.release("A2", nil)
	g.release("B2", nil)
	require.NoError(t, wait(t, done))

	perKey := map[string][]string{}
	for _, m := range sink.Messages() {
		perKey[string(m.Key)] = append(perKey[string(m.Key)], string(m.Value))
	}
	assert.Equal(t, []string{"A0", "A1", "A2"}, perKey["A"])
	assert.Equal(t, []string{"B0", "B1", "B2"}, perKey["B"])
}

// windowSpy checks, at every Fetch, that fetched-but-unacked events plus
// the requested batch never exceed the window.
type windowSpy struct {
	*sluicetest.Source
	window    int
	fetched   atomic.Int64
	acked     atomic.Int64
	violation atomic.Value
	fetches   chan int64
}

func (w *windowSpy) Fetch(ctx context.Context, max int) ([]*sluice.Message, error) {
	if open := w.fetched.Load() - w.acked.Load(); open+int64(max) > int64(w.window) {
		w.violation.Store(fmt.Sprintf("Fetch(max=%d) with %d events open; window %d", max, open, w.window))
	}
	msgs, err := w.Source.Fetch(ctx, max)
	w.fetches <- w.fetched.Add(int64(len(msgs)))
	return msgs, err
}

func (w *windowSpy) Ack(ctx context.Context, msgs []*sluice.Message) error {
	w.acked.Add(int64(len(msgs)))
	return w.Source.Ack(ctx, msgs)
}

func TestInFlightWindowIsBoundedWhenEnricherStalls(t *testing.T) {
	inner := sluicetest.NewSource("in", 4)
	for i := range 200 {
		inner.Publish(nil, fmt.Appendf(nil, "e%d", i))
	}
	inner.End()
	src := &windowSpy{Source: inner, window: 8, fetches: make(chan int64, 1024)}
	stall := make(chan struct{})
	var running atomic.Int32
	started := make(chan struct{}, 256)
	enr := sluice.EnricherFunc(func(ctx context.Context, in *sluice.Message) (*sluice.Message, error) {
		running.Add(1)
		defer running.Add(-1)
		started <- struct{}{}
		<-stall
		return in, nil
	})
	sink := sluicetest.NewSink()
	p, err := sluice.New(src, enr, sink, sluice.WithConcurrency(2), sluice.WithMaxInFlight(8),
		sluice.WithFetchBatch(3), quiet())
	require.NoError(t, err)
	done := start(t, within(t), p)

	// The enricher is stalled with 2 calls; fetching stops at the window.
	wait(t, started)
	wait(t, started)
	for wait(t, src.fetches) < 8 {
	}
	assert.EqualValues(t, 8, src.fetched.Load()-src.acked.Load(), "the window is full")
	assert.LessOrEqual(t, p.Stats().InFlight, int64(8))
	assert.EqualValues(t, 2, running.Load(), "concurrency is capped")
	close(stall)
	require.NoError(t, wait(t, done))
	assert.Nil(t, src.violation.Load(), "window exceeded")
	assert.Len(t, sink.Messages(), 200)
}

func TestShutdownDrainsInFlightWork(t *testing.T) {
	src := sluicetest.NewSource("in", 1)
	for i := range 10 {
		src.Publish(nil, fmt.Appendf(nil, "e%d", i))
	}
	g := newGated()
	sink := sluicetest.NewSink()
	// A window of 2 keeps the other events unfetched, so nothing else can
	// start between the cancellation and the scheduler noticing it.
	p, err := sluice.New(src, g, sink, sluice.WithConcurrency(2), sluice.WithMaxInFlight(2), quiet())
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := start(t, ctx, p)
	a, b := wait(t, g.started), wait(t, g.started)
	cancel()
	// In-flight calls finish after the cancellation and are still written.
	g.release(a, nil)
	g.release(b, nil)
	require.NoError(t, wait(t, done))
	assert.Len(t, sink.Messages(), 2)
	assert.EqualValues(t, 2, src.Committed(0))
	assert.Equal(t, sluice.StateStopped, p.State())
}

func TestShutdownDrainTimeoutLeavesWorkUnacked(t *testing.T) {
	clk := sluicetest.NewClock(epoch)
	src := sluicetest.NewSource("in", 1)
	src.Publish(nil, []byte(`stuck`))
	g := newGated()
	sink := sluicetest.NewSink()
	p, err := sluice.New(src, g, sink, sluice.WithClock(clk), sluice.WithDrainTimeout(5*time.Second), quiet())
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := start(t, ctx, p)
	wait(t, g.started)
	cancel()
	require.True(t, clk.BlockUntil(1, nil)) // the drain timer
	clk.Advance(5 * time.Second)
	require.NoError(t, wait(t, done))
	assert.Empty(t, sink.Messages())
	assert.Empty(t, sink.DeadLetters(), "work cut off by shutdown is not a failure")
	assert.EqualValues(t, 0, src.Committed(0))
}

func TestEnricherPanicBecomesDeadLetter(t *testing.T) {
	src := sluicetest.NewSource("in", 1)
	src.Publish(nil, []byte(`boom`))
	src.Publish(nil, []byte(`fine`))
	src.End()
	enr := sluice.EnricherFunc(func(_ context.Context, in *sluice.Message) (*sluice.Message, error) {
		if string(in.Value) == "boom" {
			panic("nil pointer in user code")
		}
		return in, nil
	})
	sink := sluicetest.NewSink()
	p, err := sluice.New(src, enr, sink, quiet())
	require.NoError(t, err)
	require.NoError(t, p.Run(within(t)))
	require.Len(t, sink.DeadLetters(), 1)
	d := sink.DeadLetters()[0]
	assert.Equal(t, "boom", string(d.Msg.Value))
	assert.Contains(t, d.Reason, "enricher panicked")
	var pe *sluice.PanicError
	assert.ErrorAs(t, d.Err, &pe)
	assert.Len(t, sink.Messages(), 1)
}

func TestNilOutputIsAFailure(t *testing.T) {
	src := sluicetest.NewSource("in", 1)
	src.Publish(nil, []byte(`x`))
	src.End()
	enr := sluice.EnricherFunc(func(context.Context, *sluice.Message) (*sluice.Message, error) { return nil, nil })
	sink := sluicetest.NewSink()
	p, err := sluice.New(src, enr, sink, quiet())
	require.NoError(t, err)
	require.NoError(t, p.Run(within(t)))
	require.Len(t, sink.DeadLetters(), 1)
	assert.Contains(t, sink.DeadLetters()[0].Reason, "neither a message nor an error")
}

func TestSinkErrorsAreRetriedAndPermanentOnesDeadLettered(t *testing.T) {
	src := sluicetest.NewSource("in", 1)
	src.Publish(nil, []byte(`small`))
	src.Publish(nil, []byte(`huge`))
	src.End()
	sink := sluicetest.NewSink()
	var failures atomic.Int32
	sink.WriteHook = func(_ context.Context, msgs []*sluice.Message) error {
		if failures.Add(1) <= 2 {
			return errors.New("broker unavailable")
		}
		for i, m := range msgs {
			if string(m.Value) == "huge" {
				return sluice.WriteErrors{{Index: i, Err: sluice.Permanent(errors.New("message too large"))}}
			}
		}
		return nil
	}
	// The hook fails whole batches first; the pipeline must retry them.
	enr := sluice.EnricherFunc(func(_ context.Context, in *sluice.Message) (*sluice.Message, error) { return in, nil })
	p, err := sluice.New(src, enr, sink, sluice.WithBackoff(time.Millisecond, time.Millisecond),
		sluice.WithWriteBatch(1), sluice.WithWriters(1), quiet())
	require.NoError(t, err)
	require.NoError(t, p.Run(within(t)))

	var values []string
	for _, m := range sink.Messages() {
		values = append(values, string(m.Value))
	}
	assert.NotContains(t, values, "huge")
	assert.Contains(t, values, "small")
	require.Len(t, sink.DeadLetters(), 1)
	assert.Contains(t, sink.DeadLetters()[0].Reason, "sink rejected the enriched event: message too large")
	assert.EqualValues(t, 2, src.Committed(0))
}

// deliveries sets Message.Deliveries, as a broker that counts them would.
type deliveries struct {
	*sluicetest.Source
	n int
}

func (d deliveries) Fetch(ctx context.Context, max int) ([]*sluice.Message, error) {
	msgs, err := d.Source.Fetch(ctx, max)
	for _, m := range msgs {
		m.Deliveries = d.n
	}
	return msgs, err
}

func TestTooManyDeliveriesGoStraightToDeadLetters(t *testing.T) {
	inner := sluicetest.NewSource("in", 1)
	inner.Publish(nil, []byte(`poison`))
	inner.End()
	var calls atomic.Int32
	enr := sluice.EnricherFunc(func(_ context.Context, in *sluice.Message) (*sluice.Message, error) {
		calls.Add(1)
		return in, nil
	})
	sink := sluicetest.NewSink()
	p, err := sluice.New(deliveries{inner, 5}, enr, sink, sluice.WithRetries(3), quiet())
	require.NoError(t, err)
	require.NoError(t, p.Run(within(t)))
	assert.EqualValues(t, 0, calls.Load())
	require.Len(t, sink.DeadLetters(), 1)
	assert.Contains(t, sink.DeadLetters()[0].Reason, "delivered 5 times, more than the limit of 4")
}

func TestClientSideRateLimit(t *testing.T) {
	clk := sluicetest.NewClock(epoch)
	src := sluicetest.NewSource("in", 1)
	for i := range 3 {
		src.Publish(nil, fmt.Appendf(nil, "e%d", i))
	}
	src.End()
	var calls atomic.Int32
	enr := sluice.EnricherFunc(func(_ context.Context, in *sluice.Message) (*sluice.Message, error) {
		calls.Add(1)
		return in, nil
	})
	sink := sluicetest.NewSink()
	p, err := sluice.New(src, enr, sink, sluice.WithClock(clk), sluice.WithRateLimit(10, 1),
		sluice.WithConcurrency(1), quiet())
	require.NoError(t, err)
	done := start(t, within(t), p)
	for want := int32(1); want < 3; want++ {
		require.True(t, clk.BlockUntil(1, nil))
		at, _ := clk.NextDeadline()
		assert.Equal(t, 100*time.Millisecond, at.Sub(clk.Now()), "10/s means one call per 100ms")
		assert.Equal(t, want, calls.Load())
		clk.Advance(100 * time.Millisecond)
	}
	require.NoError(t, wait(t, done))
	assert.EqualValues(t, 3, calls.Load())
}

// batcher is a BatchEnricher that fails one event of every batch once.
type batcher struct {
	calls  atomic.Int32
	mu     sync.Mutex
	failed map[string]bool
}

func (b *batcher) Enrich(_ context.Context, in *sluice.Message) (*sluice.Message, error) {
	return in.WithValue(append([]byte("single:"), in.Value...)), nil
}

func (b *batcher) EnrichBatch(_ context.Context, in []*sluice.Message) []sluice.BatchResult {
	b.calls.Add(1)
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]sluice.BatchResult, len(in))
	for i, m := range in {
		if string(m.Value) == "e3" && !b.failed["e3"] {
			b.failed["e3"] = true
			out[i].Err = errors.New("missing from batch answer")
			continue
		}
		out[i].Msg = m.WithValue(append([]byte("batch:"), m.Value...))
	}
	return out
}

func TestBatchEnricherTracksFailuresPerEvent(t *testing.T) {
	src := sluicetest.NewSource("in", 1)
	for i := range 40 {
		src.Publish(nil, fmt.Appendf(nil, "e%d", i))
	}
	src.End()
	b := &batcher{failed: map[string]bool{}}
	sink := sluicetest.NewSink()
	p, err := sluice.New(src, b, sink, sluice.WithEnrichBatch(8), sluice.WithConcurrency(1),
		sluice.WithBackoff(0, 0), quiet())
	require.NoError(t, err)
	require.NoError(t, p.Run(within(t)))
	assert.Len(t, sink.Messages(), 40)
	assert.Empty(t, sink.DeadLetters())
	assert.EqualValues(t, 1, p.Stats().Retried)
	assert.Less(t, b.calls.Load(), int32(40), "events were batched")
}

func TestNewValidatesOptions(t *testing.T) {
	src := sluicetest.NewSource("in", 1)
	sink := sluicetest.NewSink()
	enr := sluice.EnricherFunc(func(_ context.Context, in *sluice.Message) (*sluice.Message, error) { return in, nil })
	_, err := sluice.New(src, enr, sink, sluice.WithConcurrency(0), sluice.WithRetries(-1),
		sluice.WithBackoff(time.Second, time.Millisecond), sluice.WithEnrichBatch(4))
	require.ErrorIs(t, err, sluice.ErrInvalidConfig)
	for _, want := range []string{"WithConcurrency(0)", "WithRetries(-1)", "WithBackoff(1s, 1ms)", "BatchEnricher"} {
		assert.Contains(t, err.Error(), want)
	}
	noDLQ := sluice.SinkFunc(func(context.Context, []*sluice.Message) error { return nil })
	_, err = sluice.New(src, enr, noDLQ)
	require.ErrorIs(t, err, sluice.ErrInvalidConfig)
	assert.Contains(t, err.Error(), "WithDeadLetter")
	_, err = sluice.New(nil, nil, nil)
	require.ErrorIs(t, err, sluice.ErrInvalidConfig)
}

func TestRunTwice(t *testing.T) {
	src := sluicetest.NewSource("in", 1)
	src.End()
	enr := sluice.EnricherFunc(func(_ context.Context, in *sluice.Message) (*sluice.Message, error) { return in, nil })
	p, err := sluice.New(src, enr, sluicetest.NewSink(), quiet())
	require.NoError(t, err)
	require.NoError(t, p.Run(within(t)))
	require.Error(t, p.Run(within(t)))
}

func TestFetchErrorEndsRun(t *testing.T) {
	boom := errors.New("group coordinator gone")
	src := failingSource{sluicetest.NewSource("in", 1), boom}
	enr := sluice.EnricherFunc(func(_ context.Context, in *sluice.Message) (*sluice.Message, error) { return in, nil })
	p, err := sluice.New(src, enr, sluicetest.NewSink(), quiet())
	require.NoError(t, err)
	err = p.Run(within(t))
	require.ErrorIs(t, err, boom)
	assert.Contains(t, err.Error(), "sluice: fetch:")
}

type failingSource struct {
	*sluicetest.Source
	err error
}

func (f failingSource) Fetch(context.Context, int) ([]*sluice.Message, error) { return nil, f.err }

// undecodable marks every other event as one the source could not decode.
type undecodable struct{ *sluicetest.Source }

func (u undecodable) Fetch(ctx context.Context, max int) ([]*sluice.Message, error) {
	msgs, err := u.Source.Fetch(ctx, max)
	for _, m := range msgs {
		if string(m.Value) == "" {
			m.Err = errors.New(`entry has no "payload" field`)
		}
	}
	return msgs, err
}

func TestSourceDecodeErrorsAreDeadLetteredWithoutEnrichment(t *testing.T) {
	inner := sluicetest.NewSource("in", 1)
	inner.Publish(nil, nil, sluice.Header{Key: "other", Value: []byte("field")})
	inner.Publish(nil, []byte(`ok`))
	inner.End()
	var calls atomic.Int32
	enr := sluice.EnricherFunc(func(_ context.Context, in *sluice.Message) (*sluice.Message, error) {
		calls.Add(1)
		return in, nil
	})
	sink := sluicetest.NewSink()
	p, err := sluice.New(undecodable{inner}, enr, sink, quiet())
	require.NoError(t, err)
	require.NoError(t, p.Run(within(t)))
	assert.EqualValues(t, 1, calls.Load())
	require.Len(t, sink.DeadLetters(), 1)
	d := sink.DeadLetters()[0]
	assert.Equal(t, `source could not decode the event: entry has no "payload" field`, d.Reason)
	assert.Equal(t, 0, d.Attempts)
	assert.EqualValues(t, 2, inner.Committed(0))
}

func TestGracefulStopWaitsOutARateLimitPauseWithinTheDrain(t *testing.T) {
	for _, tc := range []struct {
		name       string
		retryAfter time.Duration
		written    int
	}{
		{"pause ends before the drain deadline", 2 * time.Second, 1},
		{"pause outlasts the drain deadline", time.Minute, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := sluicetest.NewClock(epoch)
			src := sluicetest.NewSource("in", 1)
			src.Publish(nil, []byte(`a`))
			var calls atomic.Int32
			enr := sluice.EnricherFunc(func(_ context.Context, in *sluice.Message) (*sluice.Message, error) {
				if calls.Add(1) == 1 {
					return nil, &sluice.RateLimitError{RetryAfter: tc.retryAfter}
				}
				return in, nil
			})
			sink := sluicetest.NewSink()
			p, err := sluice.New(src, enr, sink, sluice.WithClock(clk), sluice.WithPauseJitter(0),
				sluice.WithDrainTimeout(5*time.Second), quiet())
			require.NoError(t, err)
			ctx, cancel := context.WithCancel(context.Background())
			done := start(t, ctx, p)
			require.True(t, clk.BlockUntil(1, nil)) // the pause
			cancel()
			require.True(t, clk.BlockUntil(2, nil)) // the pause and the drain deadline
			clk.Advance(min(tc.retryAfter, 5*time.Second))
			require.NoError(t, wait(t, done))
			assert.Len(t, sink.Messages(), tc.written)
			assert.Empty(t, sink.DeadLetters())
			assert.EqualValues(t, tc.written, src.Committed(0))
		})
	}
}

func TestGracefulStopFinishesARetryDueBeforeTheDrainDeadline(t *testing.T) {
	clk := sluicetest.NewClock(epoch)
	src := sluicetest.NewSource("in", 1)
	src.Publish(nil, []byte(`a`))
	var calls atomic.Int32
	enr := sluice.EnricherFunc(func(_ context.Context, in *sluice.Message) (*sluice.Message, error) {
		if calls.Add(1) == 1 {
			return nil, errors.New("502 bad gateway")
		}
		return in, nil
	})
	sink := sluicetest.NewSink()
	p, err := sluice.New(src, enr, sink, sluice.WithClock(clk), sluice.WithBackoff(time.Second, time.Second),
		sluice.WithDrainTimeout(5*time.Second), quiet())
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := start(t, ctx, p)
	require.True(t, clk.BlockUntil(1, nil)) // the retry backoff
	cancel()
	require.True(t, clk.BlockUntil(2, nil)) // and the drain deadline
	clk.Advance(time.Second)
	require.NoError(t, wait(t, done))
	assert.Len(t, sink.Messages(), 1)
	assert.EqualValues(t, 1, src.Committed(0))
}
