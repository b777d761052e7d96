package sluice_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/sluicetest"
)

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

// A sink that refuses outputs both permanently and fatally (its user may not
// write the topic) stops the pipeline; nothing is dead-lettered for it and
// nothing is acked.
func TestPermanentFatalSinkErrorStops(t *testing.T) {
	src := sluicetest.NewSource("in", 1)
	for range 3 {
		src.Publish(nil, []byte(`ok`))
	}
	sink := sluicetest.NewSink()
	sink.WriteHook = func(context.Context, []*sluice.Message) error {
		return sluice.Permanent(sluice.Fatal(errors.New("not authorized to write the output topic")))
	}
	enr := sluice.EnricherFunc(func(_ context.Context, m *sluice.Message) (*sluice.Message, error) { return m, nil })
	p, err := sluice.New(src, enr, sink, sluice.WithBackoff(time.Millisecond, time.Millisecond), quiet())
	require.NoError(t, err)
	runErr := p.Run(within(t))
	require.ErrorIs(t, runErr, sluice.ErrFatal)
	assert.Contains(t, runErr.Error(), "sink refused event")
	assert.Contains(t, runErr.Error(), "not authorized to write the output topic")
	assert.EqualValues(t, 0, src.Committed(0), "nothing acked")
	assert.Empty(t, sink.DeadLetters(), "nothing dead-lettered")
	assert.Empty(t, sink.Messages())
}
