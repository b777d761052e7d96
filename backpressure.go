package sluice

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// RateLimitError is what an enricher returns when the model's API refused a
// call because of a rate limit (HTTP 429). The pipeline pauses consumption
// for RetryAfter plus jitter, then retries the event; the event's retry
// budget is not spent.
type RateLimitError struct {
	// RetryAfter is how long the server asked us to wait, or 0 if it did not
	// say (the pipeline then uses [WithDefaultRetryAfter]).
	RetryAfter time.Duration
	// Err is the underlying error, if any.
	Err error
}

// Error implements error.
func (e *RateLimitError) Error() string {
	s := "rate limited"
	if e.RetryAfter > 0 {
		s += fmt.Sprintf(" (retry after %s)", e.RetryAfter)
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap returns the underlying error.
func (e *RateLimitError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrRateLimited) true.
func (e *RateLimitError) Is(target error) bool { return target == ErrRateLimited }

// pauseFor returns how long one 429 pauses consumption: the server's
// Retry-After (or defaultRA when it gave none) plus a random jitter below
// jitter, or below max(RA/5, 10ms) when jitter is negative.
// Both parts are clamped to maxRetryAfter, so the sum cannot overflow
// whatever the server sent.
func pauseFor(e *RateLimitError, defaultRA, jitter time.Duration, rnd *rand.Rand) time.Duration {
	ra := e.RetryAfter
	if ra <= 0 {
		ra = defaultRA
	}
	ra = min(ra, maxRetryAfter)
	if j := min(jitterWindow(ra, jitter), maxRetryAfter); j > 0 {
		ra += time.Duration(rnd.Int64N(int64(j)))
	}
	return ra
}

// maxRetryAfter bounds how long one rate-limit pause can be, whatever the
// server asked for. In practice the rate-limit deadline
// ([WithMaxRateLimitDuration]) cuts pauses much shorter.
const maxRetryAfter = 24 * time.Hour

// gate is open or closed; waiters block while it is closed.
type gate struct {
	mu     sync.Mutex
	closed bool
	open   chan struct{} // closed when the gate opens
}

func (g *gate) close() {
	g.mu.Lock()
	if !g.closed {
		g.closed = true
		g.open = make(chan struct{})
	}
	g.mu.Unlock()
}

func (g *gate) release() {
	g.mu.Lock()
	if g.closed {
		g.closed = false
		close(g.open)
	}
	g.mu.Unlock()
}

// wait blocks while the gate is closed. It returns false if done closes
// first.
func (g *gate) wait(done <-chan struct{}) bool {
	g.mu.Lock()
	if !g.closed {
		g.mu.Unlock()
		return true
	}
	ch := g.open
	g.mu.Unlock()
	select {
	case <-ch:
		return true
	case <-done:
		return false
	}
}

// jitterWindow is the spread of random delays for a pause of ra: the
// configured jitter, or max(ra/5, 10ms) by default.
func jitterWindow(ra, jitter time.Duration) time.Duration {
	if jitter >= 0 {
		return jitter
	}
	return max(ra/5, 10*time.Millisecond)
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
