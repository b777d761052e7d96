package sluice_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/sluicetest"
)

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
