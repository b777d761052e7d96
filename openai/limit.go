package openai

import (
	"context"
	"math"
	"sync"
)

// limiter caps the calls in flight. With adaptive set it keeps an AIMD
// limit below max: an overload halves it, a success adds 1/limit. A nil
// limiter admits everything.
type limiter struct {
	mu       sync.Mutex
	max      int
	adaptive bool
	limit    float64
	inFlight int
	epoch    uint64        // bumped by every cut
	wake     chan struct{} // closed and replaced when a slot may be free
}

// token records the epoch a call started in, so that one burst of
// overloads from calls sent under the same limit cuts it only once.
type token struct{ epoch uint64 }

func newLimiter(max int, adaptive bool) *limiter {
	if max <= 0 {
		return nil
	}
	return &limiter{max: max, adaptive: adaptive, limit: float64(max), wake: make(chan struct{})}
}

func (l *limiter) acquire(ctx context.Context) (token, error) {
	if l == nil {
		return token{}, nil
	}
	for {
		l.mu.Lock()
		if l.inFlight < int(math.Floor(l.limit)) {
			l.inFlight++
			t := token{epoch: l.epoch}
			l.mu.Unlock()
			return t, nil
		}
		ch := l.wake
		l.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return token{}, context.Cause(ctx)
		}
	}
}

func (l *limiter) release(t token, o outcome) {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.inFlight--
	if l.adaptive {
		switch o {
		case outcomeSuccess:
			l.limit = math.Min(float64(l.max), l.limit+1/l.limit)
		case outcomeOverload:
			if t.epoch == l.epoch {
				l.limit = math.Max(1, l.limit/2)
				l.epoch++
			}
		}
	}
	close(l.wake)
	l.wake = make(chan struct{})
}

// current returns the limit, or 0 when there is none.
func (l *limiter) current() int {
	if l == nil {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return int(math.Floor(l.limit))
}
