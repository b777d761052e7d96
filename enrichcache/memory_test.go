package enrichcache_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/enrichcache"
)

var ctx = context.Background()

func TestMemoryHitMissAndStats(t *testing.T) {
	m, err := enrichcache.NewMemory(1 << 20)
	require.NoError(t, err)
	_, ok, err := m.Get(ctx, "a")
	require.NoError(t, err)
	assert.False(t, ok)
	require.NoError(t, m.Set(ctx, "a", []byte(`{"x":1}`)))
	v, ok, err := m.Get(ctx, "a")
	require.NoError(t, err)
	assert.True(t, ok)
	assert.JSONEq(t, `{"x":1}`, string(v))
	st := m.Stats()
	assert.EqualValues(t, 1, st.Hits)
	assert.EqualValues(t, 1, st.Misses)
	assert.EqualValues(t, 1, st.Entries)
	assert.Positive(t, st.Bytes)
	assert.InDelta(t, 0.5, st.HitRatio(), 1e-9)
}

// The cache never holds more than its size, and evicts the least recently
// used entry first.
func TestMemoryEvictsLeastRecentlyUsedWithinItsBytes(t *testing.T) {
	const size = 4096
	m, err := enrichcache.NewMemory(size)
	require.NoError(t, err)
	val := make([]byte, 300) // with the key and overhead, about 430 bytes an entry
	for i := range 8 {
		require.NoError(t, m.Set(ctx, fmt.Sprint("k", i), val))
	}
	// k0 is the oldest; touch it so that k1 goes first instead.
	_, ok, _ := m.Get(ctx, "k0")
	require.True(t, ok)
	for i := 8; i < 40; i++ {
		require.NoError(t, m.Set(ctx, fmt.Sprint("k", i), val))
		assert.LessOrEqual(t, m.Stats().Bytes, int64(size), "after k%d", i)
	}
	_, ok, _ = m.Get(ctx, "k1")
	assert.False(t, ok, "k1, least recently used, was evicted")
	_, ok, _ = m.Get(ctx, "k39")
	assert.True(t, ok, "the newest entry stays")
	st := m.Stats()
	assert.Positive(t, st.Evictions)
	assert.EqualValues(t, 40-st.Evictions, st.Entries)
}

func TestMemoryReplacesAndSkipsOutsizedValues(t *testing.T) {
	m, err := enrichcache.NewMemory(4096)
	require.NoError(t, err)
	require.NoError(t, m.Set(ctx, "a", []byte("1")))
	require.NoError(t, m.Set(ctx, "a", []byte("22")))
	v, _, _ := m.Get(ctx, "a")
	assert.Equal(t, "22", string(v))
	assert.EqualValues(t, 1, m.Stats().Entries)

	// A value over a quarter of the cache is not kept, and flushes nothing.
	require.NoError(t, m.Set(ctx, "big", make([]byte, 2000)))
	_, ok, _ := m.Get(ctx, "big")
	assert.False(t, ok)
	_, ok, _ = m.Get(ctx, "a")
	assert.True(t, ok)
}

func TestNewMemoryRejectsABadSize(t *testing.T) {
	for _, n := range []int64{0, -1} {
		_, err := enrichcache.NewMemory(n)
		require.Error(t, err)
		assert.True(t, errors.Is(err, sluice.ErrInvalidConfig))
		assert.Contains(t, err.Error(), "NewMemory(")
	}
}

func TestMemoryIsSafeForConcurrentUse(t *testing.T) {
	m, err := enrichcache.NewMemory(64 << 10)
	require.NoError(t, err)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 2000 {
				k := fmt.Sprint((g*7 + i) % 300)
				if _, ok, _ := m.Get(ctx, k); !ok {
					_ = m.Set(ctx, k, []byte(k))
				}
			}
		})
	}
	wg.Wait()
	st := m.Stats()
	assert.EqualValues(t, 8*2000, st.Hits+st.Misses)
	assert.LessOrEqual(t, st.Bytes, int64(64<<10))
}

func TestKeyTellsPartsApart(t *testing.T) {
	a := enrichcache.Key([]byte("ab"), []byte("c"))
	b := enrichcache.Key([]byte("a"), []byte("bc"))
	assert.NotEqual(t, a, b)
	assert.Equal(t, a, enrichcache.Key([]byte("ab"), []byte("c")))
	assert.Len(t, a, 64)
}
