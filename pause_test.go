package sluice_test

import (
	"context"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/sluicetest"
)

// An enricher's PauseError pauses consumption until the time it names, for
// as long as that is, without the rate-limit deadline, without spending
// the event's retries and without acking or dead-lettering anything; health
// says why.
func TestPlannedPauseOutlastsTheRateLimitDeadline(t *testing.T) {
	clk := sluicetest.NewClock(epoch)
	src := sluicetest.NewSource("in", 1)
	src.Publish(nil, []byte(`a`))
	var calls atomic.Int32
	until := epoch.Add(45 * time.Minute)
	enr := sluice.EnricherFunc(func(_ context.Context, in *sluice.Message) (*sluice.Message, error) {
		if calls.Add(1) == 1 {
			return nil, &sluice.PauseError{Until: until, Reason: "the token budget of 1000 per hour is spent"}
		}
		return in, nil
	})
	sink := sluicetest.NewSink()
	p, err := sluice.New(src, enr, sink, sluice.WithClock(clk), sluice.WithPauseJitter(0), sluice.WithRetries(0),
		sluice.WithMaxRateLimitDuration(time.Minute), quiet())
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := start(t, ctx, p)

	require.True(t, clk.BlockUntil(1, nil))
	at, _ := clk.NextDeadline()
	assert.Equal(t, until, at, "the resume timer is set for the enricher's time")
	assert.True(t, src.Paused())
	h := p.Health(context.Background())
	assert.Equal(t, sluice.HealthPaused, h.Status)
	assert.Equal(t, "the token budget of 1000 per hour is spent; consumption paused", h.Reason)
	rec := httptest.NewRecorder()
	p.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/healthz", nil))
	assert.Equal(t, 200, rec.Code, "a planned pause is healthy")

	// Past the 60 s rate-limit deadline the pipeline is still paused, not
	// stopped.
	clk.Advance(30 * time.Minute)
	assert.Equal(t, sluice.StatePaused, p.State())
	assert.Empty(t, sink.Messages())
	assert.Empty(t, sink.DeadLetters())
	assert.EqualValues(t, 0, src.Committed(0), "nothing acked during the pause")

	clk.Advance(15 * time.Minute)
	require.NoError(t, sink.WaitFor(within(t), 1))
	assert.False(t, src.Paused())
	cancel()
	require.NoError(t, wait(t, done))
	st := p.Stats()
	assert.EqualValues(t, 1, st.Enriched)
	assert.Zero(t, st.DeadLettered, "a planned pause costs no retry, even with zero retries")
	assert.Zero(t, st.RateLimited, "and is not a rate limit")
	assert.EqualValues(t, 1, st.RateLimitPauses)
}

// A pause asked for in the past or far in the future is bounded: 10ms (so
// that an enricher that keeps asking cannot spin the workers), or 24 hours.
func TestPlannedPauseIsBounded(t *testing.T) {
	for name, c := range map[string]struct {
		until time.Time
		want  time.Duration
	}{
		"past":      {epoch.Add(-time.Hour), 10 * time.Millisecond},
		"year 9999": {time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC), 24 * time.Hour},
	} {
		t.Run(name, func(t *testing.T) {
			clk := sluicetest.NewClock(epoch)
			src := sluicetest.NewSource("in", 1)
			src.Publish(nil, []byte(`a`))
			var calls atomic.Int32
			enr := sluice.EnricherFunc(func(_ context.Context, in *sluice.Message) (*sluice.Message, error) {
				if calls.Add(1) == 1 {
					return nil, &sluice.PauseError{Until: c.until, Reason: "budget"}
				}
				return in, nil
			})
			sink := sluicetest.NewSink()
			p, err := sluice.New(src, enr, sink, sluice.WithClock(clk), sluice.WithPauseJitter(0), quiet())
			require.NoError(t, err)
			ctx, cancel := context.WithCancel(context.Background())
			done := start(t, ctx, p)
			require.True(t, clk.BlockUntil(1, nil))
			at, _ := clk.NextDeadline()
			assert.Equal(t, c.want, at.Sub(clk.Now()))
			clk.Advance(c.want)
			require.NoError(t, sink.WaitFor(within(t), 1))
			cancel()
			require.NoError(t, wait(t, done))
		})
	}
}
