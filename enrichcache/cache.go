package enrichcache

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
)

// Cache stores answers by key. Implementations are safe for concurrent use.
type Cache interface {
	// Get returns the value stored under key; ok is false when there is
	// none. An error says the cache could not answer: callers treat it as
	// a miss.
	Get(ctx context.Context, key string) (val []byte, ok bool, err error)
	// Set stores val under key. The cache may drop it (for example when it
	// is larger than the cache) or evict it later. The cache keeps val:
	// callers must not modify it afterwards.
	Set(ctx context.Context, key string, val []byte) error
}

// Stats are a cache's counters since it was created.
type Stats struct {
	// Hits and Misses count Get calls that found a value and that did not;
	// Errors counts calls (Get or Set) that failed.
	Hits, Misses, Errors uint64
	// Evictions counts values dropped to make room, or expired.
	Evictions uint64
	// Entries and Bytes are what the cache holds now, where it knows (a
	// shared cache reports 0).
	Entries int64
	Bytes   int64
}

// HitRatio is Hits / (Hits + Misses), or 0 before the first Get.
func (s Stats) HitRatio() float64 {
	if n := s.Hits + s.Misses; n > 0 {
		return float64(s.Hits) / float64(n)
	}
	return 0
}

// Statser is implemented by caches that count what they do; metrics and
// health read it.
type Statser interface {
	Stats() Stats
}

// Key returns the content address of parts: the hex SHA-256 of each part
// prefixed with its length, so that no two different lists of parts share a
// key (("ab", "c") and ("a", "bc") differ).
func Key(parts ...[]byte) string {
	h := sha256.New()
	var n [8]byte
	for _, p := range parts {
		binary.BigEndian.PutUint64(n[:], uint64(len(p)))
		h.Write(n[:])
		h.Write(p)
	}
	return hex.EncodeToString(h.Sum(nil))
}
