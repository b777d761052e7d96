// Package latch provides the pause gate of the sources: closed by Pause,
// opened by Resume, waited on by the goroutines that read.
package latch

import (
	"sync"
	"sync/atomic"
)

// Latch is open or closed; it starts open. Checking it is one atomic load,
// cheap enough for a per-message hot path. It is safe for concurrent use.
type Latch struct {
	mu sync.Mutex                    // orders Close and Open with their hooks
	ch atomic.Pointer[chan struct{}] // nil while open; closed by Open
}

// Close closes the latch. If it was open, onClose (which may be nil) runs
// before Close returns, under a lock that Open also takes, so that the
// hooks of Close and Open never interleave. It reports whether the latch
// was open.
func (l *Latch) Close(onClose func()) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ch.Load() != nil {
		return false
	}
	ch := make(chan struct{})
	l.ch.Store(&ch)
	if onClose != nil {
		onClose()
	}
	return true
}

// Open opens the latch and wakes every waiter. If it was closed, onOpen
// (which may be nil) runs first, under the lock of [Latch.Close]. It
// reports whether the latch was closed.
func (l *Latch) Open(onOpen func()) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	ch := l.ch.Load()
	if ch == nil {
		return false
	}
	if onOpen != nil {
		onOpen()
	}
	l.ch.Store(nil)
	close(*ch)
	return true
}

// WhileClosed runs fn if the latch is closed, under the lock of
// [Latch.Close] and [Latch.Open], so that the latch cannot open while fn
// runs: for example to pause a resource that appeared during a pause,
// without racing a concurrent Open. It reports whether fn ran.
func (l *Latch) WhileClosed(fn func()) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ch.Load() == nil {
		return false
	}
	fn()
	return true
}

// Closed reports whether the latch is closed.
func (l *Latch) Closed() bool { return l.ch.Load() != nil }

// Wait returns nil while the latch is open, and while it is closed a
// channel that Open closes.
func (l *Latch) Wait() <-chan struct{} {
	if ch := l.ch.Load(); ch != nil {
		return *ch
	}
	return nil
}
