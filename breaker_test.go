package sluice_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/sluicetest"
)

// byValue is an enricher whose outcome each event's value picks: "ok…"
// succeeds, "bad…" fails as the event's own fault, "cfgX…" fails as a
// misconfiguration of class X.
var byValue = sluice.EnricherFunc(func(_ context.Context, in *sluice.Message) (*sluice.Message, error) {
	v := string(in.Value)
	switch {
	case strings.HasPrefix(v, "ok"):
		return in, nil
	case strings.HasPrefix(v, "bad"):
		return nil, sluice.Permanent(errors.New("the event is not JSON"))
	case strings.HasPrefix(v, "cfg"):
		class := "HTTP 404 " + v[3:4]
		return nil, sluice.Misconfigured(class, fmt.Errorf("openai: %s: unknown path", class))
	}
	return nil, errors.New("transient")
})

func publish(src *sluicetest.Source, values ...string) {
	for _, v := range values {
		src.Publish(nil, []byte(v))
	}
	src.End()
}

func repeat(v string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = v
	}
	return out
}

// A wrong setup fails every event the same way: the breaker stops the
// pipeline after the threshold, with fewer dead letters than the
// threshold, the rest of the input unacked, and an error naming the cause.
func TestBreakerStopsMassDeadLettering(t *testing.T) {
	for _, conc := range []int{1, 8} {
		t.Run(fmt.Sprintf("concurrency %d", conc), func(t *testing.T) {
			src := sluicetest.NewSource("in", 1)
			publish(src, repeat("cfgA", 2000)...)
			sink := sluicetest.NewSink()
			p, err := sluice.New(src, byValue, sink, sluice.WithConcurrency(conc), quiet())
			require.NoError(t, err)
			err = p.Run(context.Background())
			require.ErrorIs(t, err, sluice.ErrMisconfigured)
			assert.NotErrorIs(t, err, sluice.ErrFatal)
			assert.Contains(t, err.Error(), "20 events in a row failed with the same configuration error (HTTP 404 A)")
			assert.Contains(t, err.Error(), "unknown path")
			var mis *sluice.MisconfiguredError
			require.ErrorAs(t, err, &mis)
			assert.Equal(t, "HTTP 404 A", mis.Class)

			assert.Len(t, sink.DeadLetters(), sluice.DefaultBreaker-1)
			assert.LessOrEqual(t, src.Committed(0), int64(sluice.DefaultBreaker-1), "the breaker's event and the rest stay unacked")
			st := p.Stats()
			assert.EqualValues(t, sluice.DefaultBreaker-1, st.DeadLettered)
			assert.Equal(t, sluice.StateStopped, p.State())
		})
	}
}

// A success, or a misconfiguration of another class, starts the count
// again; event-specific and transient failures neither count nor reset it.
func TestBreakerCountsOnlyConsecutiveFailuresOfOneClass(t *testing.T) {
	cases := map[string]struct {
		values      []string
		trips       bool
		deadLetters int
	}{
		"a success in between": {
			values:      append(append(repeat("cfgA", 4), "ok"), repeat("cfgA", 4)...),
			deadLetters: 8,
		},
		"classes alternate": {
			values:      []string{"cfgA", "cfgB", "cfgA", "cfgB", "cfgA", "cfgB", "cfgA", "cfgB", "cfgA", "cfgB"},
			deadLetters: 10,
		},
		"event-specific failures in between do not hide the streak": {
			values:      []string{"cfgA", "bad", "cfgA", "bad", "cfgA", "bad", "cfgA", "bad", "cfgA", "ok"},
			trips:       true,
			deadLetters: 4 + 4,
		},
		"a transient failure in between does not reset it": {
			values:      []string{"cfgA", "cfgA", "cfgA", "cfgA", "flaky", "cfgA", "ok"},
			trips:       true,
			deadLetters: 4 + 1,
		},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			src := sluicetest.NewSource("in", 1)
			publish(src, c.values...)
			sink := sluicetest.NewSink()
			// One worker and no backoff: events finish in offset order.
			p, err := sluice.New(src, byValue, sink, sluice.WithConcurrency(1), sluice.WithBreaker(5),
				sluice.WithRetries(0), sluice.WithBackoff(0, 0), quiet())
			require.NoError(t, err)
			err = p.Run(context.Background())
			if c.trips {
				require.ErrorIs(t, err, sluice.ErrMisconfigured)
				assert.Contains(t, err.Error(), "5 events in a row")
			} else {
				require.NoError(t, err)
			}
			assert.Len(t, sink.DeadLetters(), c.deadLetters)
		})
	}
}

// WithBreaker(0) turns the breaker off: misconfigurations are dead-lettered
// like any permanent failure, each with its reason.
func TestBreakerOff(t *testing.T) {
	src := sluicetest.NewSource("in", 1)
	publish(src, repeat("cfgA", 50)...)
	sink := sluicetest.NewSink()
	p, err := sluice.New(src, byValue, sink, sluice.WithBreaker(0), quiet())
	require.NoError(t, err)
	require.NoError(t, p.Run(context.Background()))
	dl := sink.DeadLetters()
	require.Len(t, dl, 50)
	assert.Contains(t, dl[0].Reason, "HTTP 404 A")
	assert.EqualValues(t, 50, src.Committed(0))
}

func TestBreakerOption(t *testing.T) {
	_, err := sluice.New(sluicetest.NewSource("in", 1), byValue, sluicetest.NewSink(), sluice.WithBreaker(-1))
	require.ErrorIs(t, err, sluice.ErrInvalidConfig)
	assert.Contains(t, err.Error(), "WithBreaker(-1)")
}

func TestMisconfiguredMarks(t *testing.T) {
	assert.NoError(t, sluice.Misconfigured("x", nil))
	base := errors.New("HTTP 404")
	err := fmt.Errorf("wrapped: %w", sluice.Misconfigured("HTTP 404", base))
	assert.ErrorIs(t, err, sluice.ErrMisconfigured)
	assert.ErrorIs(t, err, sluice.ErrPermanent, "below the threshold the event is dead-lettered at once")
	assert.ErrorIs(t, err, base)
	assert.NotErrorIs(t, err, sluice.ErrFatal)
	assert.Equal(t, "wrapped: HTTP 404", err.Error())
}
