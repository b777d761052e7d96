package sluice_test

import (
	"context"
	"math"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/sluicetest"
)

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
