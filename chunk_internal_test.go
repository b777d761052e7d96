package sluice

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// memSource hands out its messages in order, then ErrSourceClosed, and
// counts acks.
type memSource struct {
	mu    sync.Mutex
	msgs  []*Message
	acked atomic.Int64
	onAck func([]*Message) // when set, told about every ack
}

func (s *memSource) Fetch(_ context.Context, max int) ([]*Message, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.msgs) == 0 {
		return nil, ErrSourceClosed
	}
	n := min(max, len(s.msgs))
	out := s.msgs[:n:n]
	s.msgs = s.msgs[n:]
	return out, nil
}

func (s *memSource) Ack(_ context.Context, msgs []*Message) error {
	if s.onAck != nil {
		s.onAck(msgs)
	}
	s.acked.Add(int64(len(msgs)))
	return nil
}

func (s *memSource) Close() error { return nil }

// While work goes out in chunks, an event that blocks holds up neither the
// unclaimed events of its chunk nor the ones its worker finished before it:
// after a while they are offered to the other workers and written. Here
// every other event must be written while one stays blocked; without the
// exposure of a held chunk the run would hang.
func TestChunkedWorkDoesNotWaitBehindABlockedEvent(t *testing.T) {
	const n = 2000
	for _, blocked := range []int64{0, 64, 100, 127, n - 1} {
		t.Run(fmt.Sprint(blocked), func(t *testing.T) {
			src := &memSource{}
			for i := range n {
				src.msgs = append(src.msgs, &Message{Value: []byte("{}"), Origin: Origin{Topic: "in", Offset: int64(i)}})
			}
			release := make(chan struct{})
			enr := EnricherFunc(func(ctx context.Context, m *Message) (*Message, error) {
				if m.Origin.Offset == blocked {
					select {
					case <-release:
					case <-ctx.Done():
						return nil, ctx.Err()
					}
				}
				return m, nil
			})
			var mu sync.Mutex
			written := map[int64]int{}
			sink := SinkFunc(func(_ context.Context, msgs []*Message) error {
				mu.Lock()
				defer mu.Unlock()
				for _, m := range msgs {
					written[m.Origin.Offset]++
				}
				if len(written) == n-1 && written[blocked] == 0 {
					close(release)
				}
				return nil
			})
			p, err := New(src, enr, sink, WithDeadLetter(DeadLetterFunc(func(context.Context, []DeadLetter) error { return nil })), WithConcurrency(4), WithFetchBatch(1024), WithMaxInFlight(4096), WithDrainTimeout(time.Second),
				WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
			if err != nil {
				t.Fatal(err)
			}
			p.cfg.alwaysChunk = true
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			if err := p.Run(ctx); err != nil {
				t.Fatalf("run: %v (written %d of %d)", err, len(written), n)
			}
			if len(written) != n || src.acked.Load() != n {
				t.Fatalf("written %d distinct, acked %d; want %d", len(written), src.acked.Load(), n)
			}
			for off, c := range written {
				if c != 1 {
					t.Fatalf("offset %d written %d times", off, c)
				}
			}
		})
	}
}

// A stop while events are handed out in chunks keeps the contract: every
// acked event was written exactly once before its ack, and the events not
// written stay unacked for redelivery, whichever of a chunk's events its
// worker had reached.
func TestChunkedWorkStopsWithoutLosingOrAckingUnwritten(t *testing.T) {
	const n = 5000
	for _, graceful := range []bool{true, false} {
		t.Run(fmt.Sprintf("graceful=%v", graceful), func(t *testing.T) {
			src := &memSource{}
			for i := range n {
				src.msgs = append(src.msgs, &Message{Value: []byte("{}"), Origin: Origin{Topic: "in", Offset: int64(i)}})
			}
			var mu sync.Mutex
			written := map[int64]int{}
			acked := map[int64]int{}
			ackedBeforeWritten := 0
			src.onAck = func(msgs []*Message) {
				mu.Lock()
				defer mu.Unlock()
				for _, m := range msgs {
					if written[m.Origin.Offset] == 0 {
						ackedBeforeWritten++
					}
					acked[m.Origin.Offset]++
				}
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var count atomic.Int64
			enr := EnricherFunc(func(ctx context.Context, m *Message) (*Message, error) {
				if count.Add(1) == n/2 {
					cancel() // a stop in the middle of the run
				}
				return m, nil
			})
			sink := SinkFunc(func(_ context.Context, msgs []*Message) error {
				mu.Lock()
				defer mu.Unlock()
				for _, m := range msgs {
					written[m.Origin.Offset]++
				}
				return nil
			})
			drain := time.Minute
			if !graceful {
				drain = time.Nanosecond
			}
			p, err := New(src, enr, sink, WithDeadLetter(DeadLetterFunc(func(context.Context, []DeadLetter) error { return nil })),
				WithConcurrency(4), WithFetchBatch(1024), WithMaxInFlight(4096), WithDrainTimeout(drain),
				WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
			if err != nil {
				t.Fatal(err)
			}
			p.cfg.alwaysChunk = true
			runCtx, stop := context.WithTimeout(ctx, 20*time.Second)
			defer stop()
			_ = p.Run(runCtx)
			mu.Lock()
			defer mu.Unlock()
			if ackedBeforeWritten > 0 {
				t.Fatalf("%d events acked before they were written", ackedBeforeWritten)
			}
			for off, c := range acked {
				if c != 1 || written[off] != 1 {
					t.Fatalf("offset %d acked %d times, written %d times", off, c, written[off])
				}
			}
			if len(acked) == 0 || len(acked) == n {
				t.Logf("acked %d of %d: the stop came before or after every event", len(acked), n)
			}
		})
	}
}

// Offering an exposed chunk never blocks and never takes the room the
// runner's own sends need: with a window's worth of chunks queued it does
// nothing, and the chunk can be offered again later.
func TestOfferLeavesTheRunnerItsRoom(t *testing.T) {
	p := &Pipeline{cfg: config{concurrency: 2, windowMin: 4, windowMax: 4}}
	r := newRunner(p)
	if cap(r.work) < 2*p.cfg.windowMax+2*p.cfg.concurrency {
		t.Fatalf("work channel holds %d, want room for a window of sends, a window of offers and one per worker and timer", cap(r.work))
	}
	for range p.cfg.windowMax {
		r.work <- single(&item{})
	}
	c := &chunk{items: []*item{{}, {}}}
	c.offer(r)
	if len(r.work) != p.cfg.windowMax || c.offered.Load() {
		t.Fatalf("offered into a channel holding a window: %d queued, offered %v", len(r.work), c.offered.Load())
	}
	<-r.work
	c.offer(r)
	c.offer(r) // already offered: once is enough
	if len(r.work) != p.cfg.windowMax || !c.offered.Load() {
		t.Fatalf("after room was made: %d queued, offered %v; want %d and true", len(r.work), c.offered.Load(), p.cfg.windowMax)
	}
	got, _ := r.takeWork()
	for got != c {
		got, _ = r.takeWork()
	}
	if c.offered.Load() {
		t.Fatal("a chunk taken from the channel still counts as offered")
	}
}

// A worker counts the successes of a chunk in its tally and adds them to
// the shared count before it records a failure, so the breaker sees the
// success between two misconfigured events of one chunk: alternating
// successes and misconfigurations never trip it.
func TestChunkedSuccessesReachTheBreakerBeforeAFailure(t *testing.T) {
	const n = 2000
	src := &memSource{}
	for i := range n {
		src.msgs = append(src.msgs, &Message{Value: []byte("{}"), Origin: Origin{Topic: "in", Offset: int64(i)}})
	}
	enr := EnricherFunc(func(_ context.Context, m *Message) (*Message, error) {
		if m.Origin.Offset%2 == 1 {
			return nil, Misconfigured("HTTP 404 A", fmt.Errorf("unknown path"))
		}
		return m, nil
	})
	var mu sync.Mutex
	written, dead := 0, 0
	sink := SinkFunc(func(_ context.Context, msgs []*Message) error {
		mu.Lock()
		defer mu.Unlock()
		written += len(msgs)
		return nil
	})
	dlq := DeadLetterFunc(func(_ context.Context, letters []DeadLetter) error {
		mu.Lock()
		defer mu.Unlock()
		dead += len(letters)
		return nil
	})
	p, err := New(src, enr, sink, WithDeadLetter(dlq), WithConcurrency(1), WithFetchBatch(1024), WithMaxInFlight(4096),
		WithBreaker(3), WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		t.Fatal(err)
	}
	p.cfg.alwaysChunk = true
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := p.Run(ctx); err != nil {
		t.Fatalf("run: %v (written %d, dead-lettered %d)", err, written, dead)
	}
	if written != n/2 || dead != n/2 {
		t.Fatalf("written %d and dead-lettered %d; want %d each", written, dead, n/2)
	}
}
