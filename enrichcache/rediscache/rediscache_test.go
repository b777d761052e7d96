package rediscache_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/enrichcache/rediscache"
)

// client connects to the real Redis server named by REDIS_ADDR, or skips
// (fails under CI=true).
func client(t *testing.T) *redis.Client {
	t.Helper()
	addr := os.Getenv("REDIS_ADDR")
	if addr == "" {
		msg := "no Redis server: start one with `scripts/redis.sh start` and run with REDIS_ADDR=127.0.0.1:6379"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	c := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { _ = c.Close() })
	require.NoError(t, c.Ping(context.Background()).Err())
	return c
}

func TestCacheOnRealRedis(t *testing.T) {
	ctx := context.Background()
	rdb := client(t)
	prefix := fmt.Sprintf("test:enrich:%d:", time.Now().UnixNano())
	c, err := rediscache.New(rdb, rediscache.WithPrefix(prefix), rediscache.WithTTL(time.Hour))
	require.NoError(t, err)
	t.Cleanup(func() { rdb.Del(context.Background(), prefix+"k") })

	_, ok, err := c.Get(ctx, "k")
	require.NoError(t, err)
	assert.False(t, ok)
	require.NoError(t, c.Set(ctx, "k", []byte(`{"a":1}`)))
	v, ok, err := c.Get(ctx, "k")
	require.NoError(t, err)
	require.True(t, ok)
	assert.Equal(t, `{"a":1}`, string(v))

	ttl, err := rdb.TTL(ctx, prefix+"k").Result()
	require.NoError(t, err)
	assert.InDelta(t, time.Hour.Seconds(), ttl.Seconds(), 5, "stored with the TTL")

	st := c.Stats()
	assert.EqualValues(t, 1, st.Hits)
	assert.EqualValues(t, 1, st.Misses)
	assert.Zero(t, st.Errors)

	// A second instance with the same prefix shares the answer.
	c2, err := rediscache.New(rdb, rediscache.WithPrefix(prefix))
	require.NoError(t, err)
	_, ok, _ = c2.Get(ctx, "k")
	assert.True(t, ok)
}

// A Redis that does not answer is an error, which callers count as a miss,
// within the cache's own timeout.
func TestCacheWithoutRedisFailsFast(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1})
	t.Cleanup(func() { _ = rdb.Close() })
	c, err := rediscache.New(rdb, rediscache.WithTimeout(50*time.Millisecond))
	require.NoError(t, err)
	_, ok, err := c.Get(context.Background(), "k")
	require.Error(t, err)
	assert.False(t, ok)
	assert.Contains(t, err.Error(), "rediscache: get")
	require.Error(t, c.Set(context.Background(), "k", []byte("v")))
	st := c.Stats()
	assert.EqualValues(t, 2, st.Errors)
	assert.EqualValues(t, 1, st.Misses)
}

func TestNewRejectsBadOptions(t *testing.T) {
	_, err := rediscache.New(nil, rediscache.WithPrefix(""), rediscache.WithTTL(time.Millisecond), rediscache.WithTimeout(0))
	require.Error(t, err)
	assert.True(t, errors.Is(err, sluice.ErrInvalidConfig))
	for _, s := range []string{"New(rdb)", "WithPrefix", "WithTTL(1ms)", "WithTimeout(0s)"} {
		assert.Contains(t, err.Error(), s)
	}
}
