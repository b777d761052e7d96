package sluice

import (
	"fmt"
	"sync"
)

// Dedup remembers the most recent idempotency keys a downstream consumer
// has seen, so that it can drop the copies an at-least-once pipeline writes
// when it delivers an event again (after a crash, a rebalance or a broker
// restart). Read the key from the [HeaderIdempotencyKey] header (Kafka) or
// field (Redis Streams) of each output and dead letter.
//
// It holds at most its capacity of keys and forgets the oldest first:
// copies arrive close together (within the events in flight when the
// pipeline stopped, plus what it had not yet committed), so a capacity of a
// few times the pipeline's in-flight window is enough. A consumer that must
// drop copies across its own restarts keeps the keys in its store instead,
// for example as a unique column written in the same transaction as its
// effect. The methods are safe for concurrent use.
type Dedup struct {
	mu   sync.Mutex
	seen map[string]struct{}
	ring []string // keys in arrival order; next is the oldest once full
	next int
}

// NewDedup returns a Dedup that remembers up to capacity keys. capacity
// must be positive.
func NewDedup(capacity int) (*Dedup, error) {
	if capacity < 1 {
		return nil, fmt.Errorf("%w: NewDedup(%d): the capacity must be positive; a few times the pipeline's in-flight window suits most consumers", ErrInvalidConfig, capacity)
	}
	return &Dedup{seen: make(map[string]struct{}, capacity), ring: make([]string, 0, capacity)}, nil
}

// Seen reports whether key was seen before, and remembers it. An empty key
// (a record without the header) is never reported as seen.
func (d *Dedup) Seen(key string) bool {
	if key == "" {
		return false
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.seen[key]; ok {
		return true
	}
	if len(d.ring) < cap(d.ring) {
		d.ring = append(d.ring, key)
	} else {
		delete(d.seen, d.ring[d.next])
		d.ring[d.next] = key
		d.next = (d.next + 1) % len(d.ring)
	}
	d.seen[key] = struct{}{}
	return false
}

// Len returns how many keys d remembers.
func (d *Dedup) Len() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.seen)
}
