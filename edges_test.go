package sluice_test

import (
	"context"
	"errors"
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

// A sink that refuses a whole batch for good, because of one event in it,
// must not be retried forever: the events are written one at a time and
// only the one refused on its own is dead-lettered.
func TestWholeBatchPermanentSinkErrorDeadLettersOnlyTheCulprit(t *testing.T) {
	src := sluicetest.NewSource("in", 1)
	for _, v := range []string{"a", "b", "poison", "c", "d"} {
		src.Publish(nil, []byte(v))
	}
	src.End()
	sink := sluicetest.NewSink()
	var calls atomic.Int32
	sink.WriteHook = func(_ context.Context, msgs []*sluice.Message) error {
		if calls.Add(1) > 1000 {
			panic("the pipeline retries a permanent error forever")
		}
		for _, m := range msgs {
			if string(m.Value) == "POISON" {
				return sluice.Permanent(errors.New("record too large"))
			}
		}
		return nil
	}
	// A gated enricher makes the five events reach the writer together.
	g := newGated()
	p, err := sluice.New(src, g, sink, sluice.WithWriteBatch(8), sluice.WithWriters(1), sluice.WithConcurrency(5),
		sluice.WithBackoff(time.Millisecond, time.Millisecond), quiet())
	require.NoError(t, err)
	done := start(t, within(t), p)
	for range 5 {
		wait(t, g.started)
	}
	for _, v := range []string{"a", "b", "poison", "c", "d"} {
		g.release(v, nil)
	}
	require.NoError(t, wait(t, done))
	var values []string
	for _, m := range sink.Messages() {
		values = append(values, string(m.Value))
	}
	assert.ElementsMatch(t, []string{"A", "B", "C", "D"}, values)
	require.Len(t, sink.DeadLetters(), 1)
	assert.Equal(t, "poison", string(sink.DeadLetters()[0].Msg.Value))
	assert.Contains(t, sink.DeadLetters()[0].Reason, "record too large")
	assert.EqualValues(t, 5, src.Committed(0), "everything written is acked")
}

// A dead-letter writer that refuses letters for good stops the pipeline as
// fatal; the refused event is never acked.
func TestPermanentDeadLetterWriterErrorIsFatal(t *testing.T) {
	src := sluicetest.NewSource("in", 1)
	src.Publish(nil, []byte(`bad`))
	sink := sluicetest.NewSink()
	sink.DeadLetterHook = func(context.Context, []sluice.DeadLetter) error {
		return sluice.Permanent(errors.New("dead-letter topic does not exist"))
	}
	enr := sluice.EnricherFunc(func(context.Context, *sluice.Message) (*sluice.Message, error) {
		return nil, sluice.Permanent(errors.New("not JSON"))
	})
	p, err := sluice.New(src, enr, sink, sluice.WithBackoff(time.Millisecond, time.Millisecond), quiet())
	require.NoError(t, err)
	runErr := p.Run(within(t))
	require.ErrorIs(t, runErr, sluice.ErrFatal)
	assert.Contains(t, runErr.Error(), "dead-letter topic does not exist")
	assert.EqualValues(t, 0, src.Committed(0))
	assert.Empty(t, sink.DeadLetters())
}

// poisonBatch panics on any batch holding "poison", and on that event alone.
type poisonBatch struct{ batches atomic.Int32 }

func (b *poisonBatch) Enrich(_ context.Context, in *sluice.Message) (*sluice.Message, error) {
	if string(in.Value) == "poison" {
		panic("cannot handle poison")
	}
	return in.WithValue([]byte("ok:" + string(in.Value))), nil
}

func (b *poisonBatch) EnrichBatch(ctx context.Context, ins []*sluice.Message) []sluice.BatchResult {
	b.batches.Add(1)
	res := make([]sluice.BatchResult, len(ins))
	for i, in := range ins {
		out, err := b.Enrich(ctx, in)
		res[i] = sluice.BatchResult{Msg: out, Err: err}
	}
	return res
}

// One panicking event must not dead-letter the other events of its batch.
func TestPanicInABatchDeadLettersOnlyThePoisonEvent(t *testing.T) {
	src := sluicetest.NewSource("in", 1)
	src.Publish(nil, []byte(`a`))
	src.Publish(nil, []byte(`poison`))
	src.Publish(nil, []byte(`b`))
	src.End()
	sink := sluicetest.NewSink()
	enr := &poisonBatch{}
	p, err := sluice.New(src, enr, sink, sluice.WithEnrichBatch(3), sluice.WithConcurrency(1),
		sluice.WithFetchBatch(3), quiet())
	require.NoError(t, err)
	require.NoError(t, p.Run(within(t)))
	require.Len(t, sink.DeadLetters(), 1)
	assert.Equal(t, "poison", string(sink.DeadLetters()[0].Msg.Value))
	assert.Contains(t, sink.DeadLetters()[0].Reason, "panicked")
	var values []string
	for _, m := range sink.Messages() {
		values = append(values, string(m.Value))
	}
	assert.ElementsMatch(t, []string{"ok:a", "ok:b"}, values)
	assert.EqualValues(t, 3, src.Committed(0))
	assert.Equal(t, 1, sink.DeadLetters()[0].Attempts, "the one-by-one pass is not another attempt")
}
