package sluice

import (
	"container/heap"
	"context"
	"sync"
)

// window counts free in-flight slots. One goroutine (the fetcher) acquires;
// any goroutine releases.
type window struct {
	mu   sync.Mutex
	free int
	wake chan struct{}
}

func newWindow(n int) *window { return &window{free: n, wake: make(chan struct{}, 1)} }

// acquire takes between 1 and want slots, blocking until at least one is
// free or ctx is done.
func (w *window) acquire(ctx context.Context, want int) (int, error) {
	for {
		w.mu.Lock()
		if w.free > 0 {
			n := min(want, w.free)
			w.free -= n
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
	w.free += n
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// retryHeap orders items waiting for a retry by due time.
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
