package enrichcache

import (
	"container/list"
	"context"
	"sync"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/internal/optcheck"
)

// entryOverhead is the memory an entry takes besides its key and value
// bytes, roughly: the list element, the map slot and the string headers.
const entryOverhead = 128

// Memory is an in-process least-recently-used cache bounded in bytes: the
// keys and values it holds, plus a fixed overhead per entry, stay within the
// size it was made with. A value larger than a quarter of that size is not
// stored, so that one outsized answer cannot flush the rest.
type Memory struct {
	max int64

	mu    sync.Mutex
	ll    *list.List // front: most recently used
	items map[string]*list.Element
	bytes int64
	stats Stats
}

type memEntry struct {
	key string
	val []byte
}

func (e *memEntry) size() int64 { return int64(len(e.key)+len(e.val)) + entryOverhead }

// NewMemory returns an empty cache that holds at most maxBytes. It fails
// with an error matching [sluice.ErrInvalidConfig] when maxBytes is not
// positive.
func NewMemory(maxBytes int64) (*Memory, error) {
	if maxBytes <= 0 {
		errs := optcheck.New("enrichcache", sluice.ErrInvalidConfig)
		errs.Reject(optcheck.Call("NewMemory", maxBytes), "the size is not positive", "pass the most bytes the cache may hold, such as 64<<20")
		return nil, errs.Err()
	}
	return &Memory{max: maxBytes, ll: list.New(), items: map[string]*list.Element{}}, nil
}

// Get implements [Cache]. It never fails.
func (m *Memory) Get(_ context.Context, key string) ([]byte, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	el, ok := m.items[key]
	if !ok {
		m.stats.Misses++
		return nil, false, nil
	}
	m.ll.MoveToFront(el)
	m.stats.Hits++
	return el.Value.(*memEntry).val, true, nil
}

// Set implements [Cache]: it stores val, evicting the least recently used
// entries until everything fits. It never fails.
func (m *Memory) Set(_ context.Context, key string, val []byte) error {
	e := &memEntry{key: key, val: val}
	if e.size() > m.max/4 {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if el, ok := m.items[key]; ok {
		old := el.Value.(*memEntry)
		m.bytes += e.size() - old.size()
		el.Value = e
		m.ll.MoveToFront(el)
	} else {
		m.items[key] = m.ll.PushFront(e)
		m.bytes += e.size()
	}
	for m.bytes > m.max {
		last := m.ll.Back()
		old := last.Value.(*memEntry)
		m.ll.Remove(last)
		delete(m.items, old.key)
		m.bytes -= old.size()
		m.stats.Evictions++
	}
	return nil
}

// Stats implements [Statser].
func (m *Memory) Stats() Stats {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.stats
	s.Entries = int64(len(m.items))
	s.Bytes = m.bytes
	return s
}

// MaxBytes returns the size the cache was made with.
func (m *Memory) MaxBytes() int64 { return m.max }
