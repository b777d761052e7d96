package sluice_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/sluicetest"
)

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

// flushSpy is a sink whose Flush reports how long it was given.
type flushSpy struct {
	*sluicetest.Sink
	given chan time.Duration
}

func (f *flushSpy) Flush(ctx context.Context) error {
	dl, ok := ctx.Deadline()
	if !ok {
		f.given <- -1
		return nil
	}
	f.given <- time.Until(dl)
	return nil
}

// The flush after the drain gets WithFlushTimeout, or else the drain
// timeout, so that a stop's total can be budgeted.
func TestFlushTimeout(t *testing.T) {
	for name, c := range map[string]struct {
		opts []sluice.Option
		want time.Duration
	}{
		"default": {[]sluice.Option{sluice.WithDrainTimeout(40 * time.Second)}, 40 * time.Second},
		"its own": {[]sluice.Option{sluice.WithDrainTimeout(40 * time.Second), sluice.WithFlushTimeout(3 * time.Second)}, 3 * time.Second},
	} {
		t.Run(name, func(t *testing.T) {
			src := sluicetest.NewSource("in", 1)
			src.End()
			sink := &flushSpy{Sink: sluicetest.NewSink(), given: make(chan time.Duration, 1)}
			p, err := sluice.New(src, sluice.EnricherFunc(func(_ context.Context, m *sluice.Message) (*sluice.Message, error) { return m, nil }),
				sink, append(c.opts, quiet())...)
			require.NoError(t, err)
			require.NoError(t, p.Run(context.Background()))
			got := wait(t, sink.given)
			assert.LessOrEqual(t, got, c.want)
			assert.Greater(t, got, c.want-10*time.Second, "the deadline is the flush timeout from the flush's start")
		})
	}
	_, err := sluice.New(sluicetest.NewSource("in", 1), byValue, sluicetest.NewSink(), sluice.WithFlushTimeout(0))
	require.ErrorIs(t, err, sluice.ErrInvalidConfig)
}
