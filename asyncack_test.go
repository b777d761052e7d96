package sluice_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/sluicetest"
)

// holdingSink is a sink that is also an AsyncAcker: it keeps every ack's
// done until the test settles it, as a transactional sink keeps acks above
// an unfinished event until a transaction commits them.
type holdingSink struct {
	*sluicetest.Sink
	mu        sync.Mutex
	held      []heldBatch
	abandoned []string
	acks      chan int // total messages handed to AckAsync, after each call
	total     int
	// settleOnAbandon fails every held batch when Abandon is called.
	settleOnAbandon bool
}

type heldBatch struct {
	msgs []*sluice.Message
	done func(error)
}

func newHoldingSink() *holdingSink {
	return &holdingSink{Sink: sluicetest.NewSink(), acks: make(chan int, 1024)}
}

func (h *holdingSink) Ack(context.Context, []*sluice.Message) error {
	return errors.New("the pipeline must call AckAsync")
}

func (h *holdingSink) AckAsync(_ context.Context, msgs []*sluice.Message, done func(error)) {
	h.mu.Lock()
	h.held = append(h.held, heldBatch{msgs, done})
	h.total += len(msgs)
	n := h.total
	h.mu.Unlock()
	h.acks <- n
}

func (h *holdingSink) Abandon(msgs []*sluice.Message) {
	h.mu.Lock()
	for _, m := range msgs {
		h.abandoned = append(h.abandoned, string(m.Value))
	}
	var held []heldBatch
	if h.settleOnAbandon {
		held, h.held = h.held, nil
	}
	h.mu.Unlock()
	for _, b := range held {
		var we sluice.WriteErrors
		for i := range b.msgs {
			we = append(we, sluice.WriteError{Index: i, Err: errors.New("behind an abandoned event")})
		}
		b.done(we)
	}
}

// settle calls done of every held batch with err(batch).
func (h *holdingSink) settle(err func([]*sluice.Message) error) {
	h.mu.Lock()
	held := h.held
	h.held = nil
	h.mu.Unlock()
	for _, b := range held {
		b.done(err(b.msgs))
	}
}

func (h *holdingSink) waitAcks(t *testing.T, n int) {
	t.Helper()
	for {
		h.mu.Lock()
		got := h.total
		h.mu.Unlock()
		if got >= n {
			return
		}
		wait(t, h.acks)
	}
}

// An AsyncAcker sink is the pipeline's acker, and events whose acks it
// holds keep their in-flight slots: with a window of 4, a fifth event is
// not fetched until a held ack is settled. A settlement that lists an
// event in WriteErrors leaves that event uncounted (it is delivered again).
func TestAsyncAckerHoldsWindowSlots(t *testing.T) {
	src := sluicetest.NewSource("in", 1)
	for _, v := range []string{"a", "b", "c", "d", "e", "f", "g", "h"} {
		src.Publish(nil, []byte(v))
	}
	sink := newHoldingSink()
	p, err := sluice.New(src, sluice.EnricherFunc(func(_ context.Context, m *sluice.Message) (*sluice.Message, error) { return m, nil }),
		sink, quiet(), sluice.WithConcurrency(1), sluice.WithMaxInFlight(4), sluice.WithWriteBatch(1))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(within(t))
	done := start(t, ctx, p)
	sink.waitAcks(t, 4)
	if st := p.Stats(); st.Received != 4 || st.InFlight != 4 || st.Enriched != 0 {
		t.Fatalf("with 4 acks held: received %d, in flight %d, enriched %d; want 4, 4, 0", st.Received, st.InFlight, st.Enriched)
	}
	if src.Committed(0) != 0 {
		t.Fatalf("the source committed %d; the sink is the acker", src.Committed(0))
	}
	// Settle the first four, failing the first one's.
	first := true
	sink.settle(func(msgs []*sluice.Message) error {
		if first {
			first = false
			return sluice.WriteErrors{{Index: 0, Err: errors.New("fenced")}}
		}
		return nil
	})
	sink.waitAcks(t, 8)
	sink.settle(func([]*sluice.Message) error { return nil })
	cancel()
	if err := wait(t, done); err != nil {
		t.Fatal(err)
	}
	if st := p.Stats(); st.Enriched != 7 {
		t.Fatalf("enriched %d, want 7 (one settlement failed)", st.Enriched)
	}
}

// When the pipeline stops with an event unfinished, it tells the acker,
// which gives up on the acks held behind it, and Run returns.
func TestAsyncAckerAbandonOnStop(t *testing.T) {
	src := sluicetest.NewSource("in", 1)
	for _, v := range []string{"slow", "b", "c"} {
		src.Publish(nil, []byte(v))
	}
	g := newGated()
	sink := newHoldingSink()
	sink.settleOnAbandon = true
	p, err := sluice.New(src, g, sink, quiet(), sluice.WithConcurrency(3), sluice.WithMaxInFlight(3), sluice.WithDrainTimeout(time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(within(t))
	done := start(t, ctx, p)
	for range 3 {
		wait(t, g.started)
	}
	g.release("b", nil)
	g.release("c", nil)
	sink.waitAcks(t, 2)
	cancel() // "slow" is still running: the drain waits, then gives up on it
	if err := wait(t, done); err != nil {
		t.Fatal(err)
	}
	sink.mu.Lock()
	defer sink.mu.Unlock()
	if len(sink.abandoned) != 1 || sink.abandoned[0] != "slow" {
		t.Fatalf("abandoned %v, want [slow]", sink.abandoned)
	}
	if st := p.Stats(); st.Enriched != 0 {
		t.Fatalf("enriched %d, want 0: the held acks were given up on", st.Enriched)
	}
}
