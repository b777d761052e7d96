package openai

import (
	"context"
	"encoding/json"
	"errors"
	"sync/atomic"
	"time"

	"github.com/sluicehq/sluice/enrichcache"
)

// cacheLogEvery is the least time between two logs of cache failures.
const cacheLogEvery = 10 * time.Second

// cacheState is the Enricher's side of [WithCache].
type cacheState struct {
	c          enrichcache.Cache
	lastLog    atomic.Int64 // unix ns of the last failure logged
	suppressed atomic.Int64 // failures not logged since
}

// cacheKey is the content address of one event's answer: everything that
// decides it.
func (e *Enricher) cacheKey(input json.RawMessage) string {
	return enrichcache.Key([]byte(e.model), []byte(e.prompts[0][0]), e.schema.JSON(), input)
}

// cached returns the stored enrichment under key, if there is a usable one.
func (e *Enricher) cached(ctx context.Context, key string) (json.RawMessage, bool) {
	v, ok, err := e.cache.c.Get(ctx, key)
	if err == nil && ok && !json.Valid(v) {
		err = errors.New("the stored value is not JSON; ignoring it")
	}
	if err != nil {
		e.cacheFailed("get", err)
		return nil, false
	}
	return v, ok
}

// store keeps a validated enrichment under key. It outlives ctx's
// cancellation: the answer was paid for.
func (e *Enricher) store(ctx context.Context, key string, enr json.RawMessage) {
	if err := e.cache.c.Set(context.WithoutCancel(ctx), key, enr); err != nil {
		e.cacheFailed("set", err)
	}
}

func (e *Enricher) cacheFailed(op string, err error) {
	now := e.cfg.now().UnixNano()
	last := e.cache.lastLog.Load()
	if now-last < int64(cacheLogEvery) || !e.cache.lastLog.CompareAndSwap(last, now) {
		e.cache.suppressed.Add(1)
		return
	}
	e.log.Warn("openai: the enrichment cache failed; calling the model instead", "op", op, "err", err,
		"failures_not_logged", e.cache.suppressed.Swap(0))
}

// CacheStats returns the counters of the cache given to [WithCache], when
// it keeps any ([enrichcache.Statser]); ok is false otherwise.
func (e *Enricher) CacheStats() (s enrichcache.Stats, ok bool) {
	if e.cache == nil {
		return s, false
	}
	st, ok := e.cache.c.(enrichcache.Statser)
	if !ok {
		return s, false
	}
	return st.Stats(), true
}
