// Package offsets tracks, per partition, which delivered offsets have
// finished, so that an offset-based consumer commits only the contiguous
// prefix of finished work even when events finish out of order.
package offsets

import (
	"fmt"
	"sort"
	"sync"
)

// Partition tracks the offsets delivered from one partition. Offsets must be
// delivered in increasing order, but need not be contiguous (Kafka skips
// offsets for transaction markers and compacted records). It is safe for
// concurrent use.
type Partition struct {
	mu    sync.Mutex
	offs  []int64 // delivered, not yet passed by the commit point, ascending
	done  []bool
	head  int
	next  int64 // one past the last delivered offset
	last  int64 // the last delivered offset; -1 before any
	floor int64 // commit point when nothing is pending
}

// NewPartition returns a tracker whose commit point starts at start, the
// first offset that will be delivered (or -1 if unknown).
func NewPartition(start int64) *Partition {
	return &Partition{next: start, last: -1, floor: start}
}

// Deliver records that offset was handed out. It returns an error if offset
// is not above every offset delivered before.
func (p *Partition) Deliver(offset int64) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.last >= 0 && offset <= p.last {
		return fmt.Errorf("offsets: offset %d delivered after %d", offset, p.last)
	}
	p.offs = append(p.offs, offset)
	p.done = append(p.done, false)
	p.next = offset + 1
	p.last = offset
	return nil
}

// Done records that offset finished. It reports false if offset is not
// pending (never delivered, or already done).
func (p *Partition) Done(offset int64) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	live := p.offs[p.head:]
	i := sort.Search(len(live), func(i int) bool { return live[i] >= offset })
	if i == len(live) || live[i] != offset || p.done[p.head+i] {
		return false
	}
	p.done[p.head+i] = true
	for p.head < len(p.offs) && p.done[p.head] {
		p.head++
	}
	if p.head == len(p.offs) {
		p.offs, p.done, p.head = p.offs[:0], p.done[:0], 0
		p.floor = p.next
	} else if p.head > 1024 && p.head > len(p.offs)/2 {
		n := copy(p.offs, p.offs[p.head:])
		copy(p.done, p.done[p.head:])
		p.offs, p.done, p.head = p.offs[:n], p.done[:n], 0
	}
	return true
}

// CommitPoint returns the offset to commit: the lowest unfinished delivered
// offset, or one past the last delivered offset when all are finished. It is
// -1 before anything was delivered to a tracker started at -1.
func (p *Partition) CommitPoint() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.head < len(p.offs) {
		return p.offs[p.head]
	}
	return p.floor
}

// Pending returns how many delivered offsets have not finished.
func (p *Partition) Pending() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, d := range p.done[p.head:] {
		if !d {
			n++
		}
	}
	return n
}
