package sluice_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/sluicetest"
)

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
	st := p.Stats()
	assert.EqualValues(t, 8, st.PeakInFlight, "the peak is the full window")
	assert.Zero(t, st.InFlight)
}

// With the adaptive default the window stays at its minimum, 4 × concurrency
// and at least 64, while the model does not answer.
func TestDefaultWindowStaysAtMinimumWhileEnricherStalls(t *testing.T) {
	inner := sluicetest.NewSource("in", 4)
	for i := range 500 {
		inner.Publish(nil, fmt.Appendf(nil, "e%d", i))
	}
	inner.End()
	src := &windowSpy{Source: inner, window: 64, fetches: make(chan int64, 1024)}
	stall := make(chan struct{})
	started := make(chan struct{}, 512)
	enr := sluice.EnricherFunc(func(ctx context.Context, in *sluice.Message) (*sluice.Message, error) {
		started <- struct{}{}
		<-stall
		return in, nil
	})
	sink := sluicetest.NewSink()
	p, err := sluice.New(src, enr, sink, sluice.WithConcurrency(2), quiet())
	require.NoError(t, err)
	done := start(t, within(t), p)

	wait(t, started)
	wait(t, started)
	for wait(t, src.fetches) < 64 {
	}
	assert.EqualValues(t, 64, src.fetched.Load()-src.acked.Load(), "the window is full at its minimum")
	assert.Nil(t, src.violation.Load(), "window exceeded while stalled")
	close(stall)
	require.NoError(t, wait(t, done))
	assert.Len(t, sink.Messages(), 500)
}
