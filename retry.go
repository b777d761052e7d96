package sluice

import (
	"container/heap"
	"time"

	"github.com/sluicehq/sluice/internal/backoff"
)

// scheduleRetry sends a transiently failed event back to the workers after
// a backoff with full jitter, or retires it when the retry would come after
// the drain deadline.
func (r *runner) scheduleRetry(it *item) {
	p := r.p
	p.stats.retried.Add(1)
	d := r.backoff(it.attempts)
	if it.traced {
		for _, t := range r.tracers {
			t.EventRetry(it.in.Context(), it.in, it.attempts, it.err, d)
		}
	}
	p.log.Debug("sluice: enrichment failed; will retry", "origin", it.in.Origin.String(), "attempt", it.attempts, "backoff", d, "err", it.err)
	if d <= 0 {
		r.dispatch(it)
		return
	}
	it.retryAt = p.clock.Now().Add(d)
	if r.stopping() && it.retryAt.After(r.drainAt) {
		r.retire(it)
		return
	}
	r.retries.push(it)
	r.armRetry()
}

// backoff is the delay before retry number attempt: a random duration up
// to base × 2^(attempt-1), capped at the maximum (full jitter).
func (r *runner) backoff(attempt int) time.Duration {
	d := backoff.Exp(r.p.cfg.backoffBase, r.p.cfg.backoffMax, attempt)
	if d <= 0 {
		return 0
	}
	return time.Duration(r.rnd.Int64N(int64(d)) + 1)
}

// armRetry sets the retry timer for the earliest waiting event.
func (r *runner) armRetry() {
	next := r.retries.peek()
	if next == nil {
		return
	}
	if r.retryTimer != nil {
		if r.retryTimeAt.Equal(next.retryAt) {
			return
		}
		r.retryTimer.Stop()
	}
	r.retryTimeAt = next.retryAt
	r.retryTimer = r.p.clock.NewTimer(next.retryAt.Sub(r.p.clock.Now()))
}

// onRetryTimer dispatches every event whose backoff is over.
func (r *runner) onRetryTimer() {
	r.retryTimer = nil
	now := r.p.clock.Now()
	for {
		it := r.retries.peek()
		if it == nil || it.retryAt.After(now) {
			break
		}
		r.retries.pop()
		r.dispatch(it)
	}
	r.armRetry()
}

// retryHeap orders events waiting for a retry by due time.
type retryHeap []*item

func (h retryHeap) Len() int           { return len(h) }
func (h retryHeap) Less(i, j int) bool { return h[i].retryAt.Before(h[j].retryAt) }
func (h retryHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *retryHeap) Push(x any)        { *h = append(*h, x.(*item)) }
func (h *retryHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return it
}

func (h *retryHeap) push(it *item) { heap.Push(h, it) }
func (h *retryHeap) pop() *item    { return heap.Pop(h).(*item) }
func (h retryHeap) peek() *item {
	if len(h) == 0 {
		return nil
	}
	return h[0]
}
