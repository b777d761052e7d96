package sluice

import (
	"context"
	"sync"

	"golang.org/x/time/rate"
)

// Backpressure has three parts: the window bounds the events in flight (so
// memory stays bounded however slow the model is), the optional client-side
// limiter spaces out model calls, and the gate (gate.go) stops everything
// during a rate-limit pause.

// window counts in-flight slots against a limit that the runner may change
// while the pipeline runs (see windowCtl). One goroutine (the fetcher)
// acquires; any goroutine releases.
type window struct {
	mu    sync.Mutex
	used  int
	limit int
	wake  chan struct{}
}

func newWindow(n int) *window { return &window{limit: n, wake: make(chan struct{}, 1)} }

// acquire takes between 1 and want slots, blocking until at least one is
// free or ctx is done.
func (w *window) acquire(ctx context.Context, want int) (int, error) {
	for {
		w.mu.Lock()
		if free := w.limit - w.used; free > 0 {
			n := min(want, free)
			w.used += n
			w.mu.Unlock()
			return n, nil
		}
		w.mu.Unlock()
		select {
		case <-w.wake:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
}

func (w *window) release(n int) {
	if n <= 0 {
		return
	}
	w.mu.Lock()
	w.used -= n
	w.mu.Unlock()
	w.signal()
}

// setLimit changes the limit. A smaller limit takes effect as events
// leave: nothing already fetched is dropped.
func (w *window) setLimit(n int) {
	w.mu.Lock()
	w.limit = n
	w.mu.Unlock()
	w.signal()
}

// size returns the current limit.
func (w *window) size() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.limit
}

func (w *window) signal() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// limiter is the optional client-side rate limit, driven by the pipeline's
// clock so that tests can step it.
type limiter struct {
	mu    sync.Mutex
	lim   *rate.Limiter
	clock Clock
}

func newLimiter(rps float64, burst int, clk Clock) *limiter {
	if rps <= 0 {
		return nil
	}
	return &limiter{lim: rate.NewLimiter(rate.Limit(rps), burst), clock: clk}
}

// wait blocks until one call is allowed or ctx is done.
func (l *limiter) wait(ctx context.Context) error {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	now := l.clock.Now()
	r := l.lim.ReserveN(now, 1)
	d := r.DelayFrom(now)
	l.mu.Unlock()
	if d <= 0 {
		return nil
	}
	t := l.clock.NewTimer(d)
	select {
	case <-t.C():
		return nil
	case <-ctx.Done():
		t.Stop()
		l.mu.Lock()
		r.CancelAt(l.clock.Now())
		l.mu.Unlock()
		return ctx.Err()
	}
}
