// Package rediscache is an [enrichcache.Cache] in Redis, shared by every
// instance of a pipeline: an answer paid for by one instance serves the
// others, and survives a restart or a crash, for as long as its TTL.
//
// Values are plain strings under a key prefix, written with SET … EX, so
// that Redis's own eviction (maxmemory-policy allkeys-lru or volatile-ttl)
// can bound the memory they take. Every call has a short timeout of its own:
// a slow or absent Redis turns into misses, never into a stalled pipeline.
package rediscache

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/enrichcache"
	"github.com/sluicehq/sluice/internal/optcheck"
)

// Defaults of the options.
const (
	DefaultPrefix  = "sluice:enrich:"
	DefaultTTL     = 24 * time.Hour
	DefaultTimeout = 100 * time.Millisecond
)

// Cache is an [enrichcache.Cache] and [enrichcache.Statser] in Redis. It is
// safe for concurrent use.
type Cache struct {
	rdb     redis.UniversalClient
	prefix  string
	ttl     time.Duration
	timeout time.Duration

	hits, misses, errs atomic.Uint64
}

var (
	_ enrichcache.Cache   = (*Cache)(nil)
	_ enrichcache.Statser = (*Cache)(nil)
)

// Option configures a [Cache]. [New] reports every bad option at once, each
// matching [sluice.ErrInvalidConfig].
type Option func(*config)

type config struct {
	prefix  string
	ttl     time.Duration
	timeout time.Duration
	errs    optcheck.Errors
}

// WithPrefix sets the prefix of every key. The default is "sluice:enrich:".
// Pipelines that must not share answers use different prefixes.
func WithPrefix(p string) Option {
	return func(c *config) {
		if p == "" {
			c.errs.Reject(optcheck.Call("WithPrefix", p), "the prefix is empty", "pass a prefix such as \"sluice:enrich:\", so that the cache's keys stand apart")
			return
		}
		c.prefix = p
	}
}

// WithTTL sets how long an answer is kept. The default is 24h.
func WithTTL(d time.Duration) Option {
	return func(c *config) {
		if d < time.Second {
			c.errs.Reject(optcheck.Call("WithTTL", d), "the TTL is below one second", "pass a TTL of a second or more; the default is 24h")
			return
		}
		c.ttl = d
	}
}

// WithTimeout bounds each Get and Set. The default is 100ms: a cache that
// answers later than a model call would is not worth waiting for.
func WithTimeout(d time.Duration) Option {
	return func(c *config) {
		if d <= 0 {
			c.errs.Reject(optcheck.Call("WithTimeout", d), "the timeout is not positive", "pass a positive duration; the default is 100ms")
			return
		}
		c.timeout = d
	}
}

// New returns a cache on rdb. It does not contact Redis: a cache that
// cannot reach it answers every Get with an error, which callers count as a
// miss.
func New(rdb redis.UniversalClient, opts ...Option) (*Cache, error) {
	c := config{prefix: DefaultPrefix, ttl: DefaultTTL, timeout: DefaultTimeout, errs: optcheck.New("rediscache", sluice.ErrInvalidConfig)}
	if rdb == nil {
		c.errs.Reject("New(rdb)", "the Redis client is nil", "pass a client made with redis.NewClient")
	}
	for _, o := range opts {
		if o != nil {
			o(&c)
		}
	}
	if err := c.errs.Err(); err != nil {
		return nil, err
	}
	return &Cache{rdb: rdb, prefix: c.prefix, ttl: c.ttl, timeout: c.timeout}, nil
}

// Get implements [enrichcache.Cache].
func (c *Cache) Get(ctx context.Context, key string) ([]byte, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	v, err := c.rdb.Get(ctx, c.prefix+key).Bytes()
	switch {
	case err == nil:
		c.hits.Add(1)
		return v, true, nil
	case errors.Is(err, redis.Nil):
		c.misses.Add(1)
		return nil, false, nil
	default:
		c.misses.Add(1)
		c.errs.Add(1)
		return nil, false, fmt.Errorf("rediscache: get: %w", err)
	}
}

// Set implements [enrichcache.Cache].
func (c *Cache) Set(ctx context.Context, key string, val []byte) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	if err := c.rdb.Set(ctx, c.prefix+key, val, c.ttl).Err(); err != nil {
		c.errs.Add(1)
		return fmt.Errorf("rediscache: set: %w", err)
	}
	return nil
}

// Stats implements [enrichcache.Statser]. Entries, Bytes and Evictions are
// Redis's to know and stay 0.
func (c *Cache) Stats() enrichcache.Stats {
	return enrichcache.Stats{Hits: c.hits.Load(), Misses: c.misses.Load(), Errors: c.errs.Load()}
}
