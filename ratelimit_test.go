package sluice_test

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/sluicetest"
)

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

// A server that asks for a pause far beyond the rate-limit deadline must not
// park the pipeline past that deadline: it stops there, with ErrRateLimited,
// an unhealthy /healthz and nothing acked or dead-lettered.
func TestLongRetryAfterStopsAtTheRateLimitDeadline(t *testing.T) {
	for name, ra := range map[string]time.Duration{
		"10000s":          10000 * time.Second,
		"year 9999":       time.Duration(math.MaxInt64), // what an HTTP date far ahead parses to
		"just over limit": 10*time.Second + time.Millisecond,
	} {
		t.Run(name, func(t *testing.T) {
			clk := sluicetest.NewClock(epoch)
			src := sluicetest.NewSource("in", 1)
			src.Publish(nil, []byte(`a`))
			var calls atomic.Int32
			enr := sluice.EnricherFunc(func(context.Context, *sluice.Message) (*sluice.Message, error) {
				calls.Add(1)
				return nil, &sluice.RateLimitError{RetryAfter: ra}
			})
			sink := sluicetest.NewSink()
			p, err := sluice.New(src, enr, sink, sluice.WithClock(clk),
				sluice.WithMaxRateLimitDuration(10*time.Second), quiet())
			require.NoError(t, err)
			done := start(t, context.Background(), p)

			require.True(t, clk.BlockUntil(1, nil))
			at, _ := clk.NextDeadline()
			assert.Equal(t, epoch.Add(10*time.Second), at, "the pause ends at the rate-limit deadline, never later")
			assert.Equal(t, sluice.StatePaused, p.State())
			assert.False(t, p.Stats().PausedUntil.After(epoch.Add(10*time.Second)))

			clk.Advance(at.Sub(clk.Now()))
			runErr := wait(t, done)
			require.ErrorIs(t, runErr, sluice.ErrRateLimited)
			assert.EqualValues(t, 1, calls.Load(), "no call after the deadline")
			assert.Empty(t, sink.DeadLetters(), "a rate limit never dead-letters")
			assert.Empty(t, sink.Messages())
			assert.EqualValues(t, 0, src.Committed(0), "nothing acked")

			rec := httptest.NewRecorder()
			p.HealthHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/healthz", nil))
			assert.Equal(t, http.StatusServiceUnavailable, rec.Code)
			assert.Contains(t, rec.Body.String(), "rate limit")
		})
	}
}

// The default proportional jitter of a huge Retry-After must not overflow
// into a negative pause (which would resume at once and then park workers).
func TestHugeRetryAfterNeverGivesANegativePause(t *testing.T) {
	clk := sluicetest.NewClock(epoch)
	src := sluicetest.NewSource("in", 1)
	src.Publish(nil, []byte(`a`))
	var calls atomic.Int32
	enr := sluice.EnricherFunc(func(_ context.Context, in *sluice.Message) (*sluice.Message, error) {
		if calls.Add(1) == 1 {
			return nil, &sluice.RateLimitError{RetryAfter: time.Duration(math.MaxInt64 - 1)}
		}
		return in, nil
	})
	sink := sluicetest.NewSink()
	p, err := sluice.New(src, enr, sink, sluice.WithClock(clk), quiet())
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := start(t, ctx, p)
	require.True(t, clk.BlockUntil(1, nil))
	at, _ := clk.NextDeadline()
	assert.Equal(t, epoch.Add(60*time.Second), at)
	assert.Equal(t, sluice.StatePaused, p.State())
	cancel()
	// The stop waits for the drain deadline (the pause ends after it).
	require.True(t, clk.BlockUntil(2, nil))
	clk.Advance(30 * time.Second)
	require.NoError(t, wait(t, done))
	assert.EqualValues(t, 1, calls.Load())
}

// A pause cut short at the rate-limit deadline must not leave the workers
// staggered over a fifth of the server's Retry-After when the pipeline
// goes on there (a call succeeded meanwhile): with Retry-After 10000s that
// was up to 33 minutes without a call while health said running. The
// stagger is at most as long as the pause was.
func TestResumeAfterACutPauseIsNotStaggeredOverTheRetryAfter(t *testing.T) {
	clk := sluicetest.NewClock(epoch)
	src := sluicetest.NewSource("in", 1)
	src.Publish(nil, []byte(`slow`))
	src.Publish(nil, []byte(`limited`))
	started, release := make(chan struct{}), make(chan struct{})
	var limited atomic.Int32
	enr := sluice.EnricherFunc(func(_ context.Context, in *sluice.Message) (*sluice.Message, error) {
		if string(in.Value) == "slow" {
			close(started)
			<-release // in flight across the 429, and answered after it
			return in, nil
		}
		if limited.Add(1) == 1 {
			<-started
			return nil, &sluice.RateLimitError{RetryAfter: 10000 * time.Second}
		}
		return in, nil
	})
	sink := sluicetest.NewSink()
	p, err := sluice.New(src, enr, sink, sluice.WithClock(clk), sluice.WithConcurrency(2),
		sluice.WithMaxRateLimitDuration(10*time.Second), quiet())
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := start(t, ctx, p)

	require.True(t, clk.BlockUntil(1, nil))
	at, _ := clk.NextDeadline()
	require.Equal(t, epoch.Add(10*time.Second), at, "the pause is cut at the rate-limit deadline")
	close(release) // a success after the refusal: the deadline does not stop the pipeline
	require.NoError(t, sink.WaitFor(ctx, 1))
	clk.Advance(at.Sub(clk.Now()))

	// The refused event is asked again within the pause's own length of
	// the resume, whatever stagger the workers chose.
	got := make(chan struct{})
	go func() {
		_ = sink.WaitFor(ctx, 2)
		close(got)
	}()
	for clk.BlockUntil(1, got) {
		next, _ := clk.NextDeadline()
		require.False(t, next.After(at.Add(10*time.Second)), "a worker waits until %v after a resume at %v", next, at)
		clk.Advance(next.Sub(clk.Now()))
	}
	assert.Len(t, sink.Messages(), 2)
	assert.EqualValues(t, 2, limited.Load())
	cancel()
	require.NoError(t, wait(t, done))
}
