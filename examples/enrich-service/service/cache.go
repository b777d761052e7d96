package service

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/sluicehq/sluice/enrichcache"
	"github.com/sluicehq/sluice/enrichcache/rediscache"
	"github.com/sluicehq/sluice/metrics"
)

// Defaults of the cache flags.
const (
	defaultCacheSize = 64 << 20
	defaultCacheTTL  = 24 * time.Hour
)

// cacheConfig is what the -cache flags say.
type cacheConfig struct {
	Kind      string   // off, memory or redis
	Size      byteSize // memory: the most bytes held
	TTL       time.Duration
	RedisAddr string // redis: the server (default -redis-addr)
}

func (c *cacheConfig) validate(bad func(string, ...any)) {
	switch c.Kind {
	case "off", "memory", "redis":
	default:
		bad("-cache %q: must be off, memory or redis", c.Kind)
	}
	if c.Kind == "memory" && c.Size <= 0 {
		bad("-cache-size %d: must be positive, such as 64MiB", c.Size)
	}
	if c.Kind == "redis" {
		if c.TTL < time.Second {
			bad("-cache-ttl %s: must be at least 1s", c.TTL)
		}
		if _, _, err := net.SplitHostPort(c.RedisAddr); err != nil {
			bad("-cache-redis-addr %q: %v", c.RedisAddr, err)
		}
	}
}

// newCache builds the enrichment cache the flags ask for, exports its
// metrics on reg, and returns it with a function that releases it. It does
// not wait for a Redis cache to answer: an absent Redis costs model calls,
// which its metrics and logs show, not events.
func newCache(cfg *config, reg prometheus.Registerer, log *slog.Logger) (enrichcache.Cache, func(), error) {
	var (
		c       enrichcache.Cache
		release = func() {}
	)
	switch cfg.Cache.Kind {
	case "off":
		return nil, release, nil
	case "memory":
		m, err := enrichcache.NewMemory(int64(cfg.Cache.Size))
		if err != nil {
			return nil, nil, err
		}
		c = m
		log.Info("enrichment cache in memory", "max_bytes", int64(cfg.Cache.Size))
	case "redis":
		var tlsCfg *tls.Config
		if cfg.RedisTLS {
			var err error
			if tlsCfg, err = tlsConfig("-redis", cfg.RedisCAFile, "", ""); err != nil {
				return nil, nil, err
			}
		}
		rdb := redis.NewClient(&redis.Options{
			Addr: cfg.Cache.RedisAddr, Username: cfg.RedisUser, Password: cfg.redisPassword,
			TLSConfig: tlsCfg, ClientName: "sluice-enrich-cache", MaxRetries: -1,
		})
		rc, err := rediscache.New(rdb, rediscache.WithTTL(cfg.Cache.TTL))
		if err != nil {
			_ = rdb.Close()
			return nil, nil, err
		}
		pctx, cancel := context.WithTimeout(context.Background(), time.Second)
		if err := rdb.Ping(pctx).Err(); err != nil {
			log.Warn("the Redis enrichment cache does not answer yet; events are enriched without it until it does",
				"addr", cfg.Cache.RedisAddr, "err", err)
		}
		cancel()
		c, release = rc, func() { _ = rdb.Close() }
		log.Info("enrichment cache in Redis", "addr", cfg.Cache.RedisAddr, "ttl", cfg.Cache.TTL.String())
	}
	if st, ok := c.(enrichcache.Statser); ok {
		if err := metrics.ExportCache(reg, st); err != nil {
			release()
			return nil, nil, err
		}
	}
	return c, release, nil
}

// byteSize is a flag.Value for sizes such as 64MiB, 512KiB, 1GiB or a
// plain number of bytes.
type byteSize int64

func (b *byteSize) String() string {
	switch v := int64(*b); {
	case v > 0 && v%(1<<30) == 0:
		return strconv.FormatInt(v>>30, 10) + "GiB"
	case v > 0 && v%(1<<20) == 0:
		return strconv.FormatInt(v>>20, 10) + "MiB"
	case v > 0 && v%(1<<10) == 0:
		return strconv.FormatInt(v>>10, 10) + "KiB"
	default:
		return strconv.FormatInt(v, 10)
	}
}

func (b *byteSize) Set(s string) error {
	num, mult := strings.TrimSpace(s), int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"B", 1}} {
		if strings.HasSuffix(num, u.suffix) {
			num, mult = strings.TrimSpace(strings.TrimSuffix(num, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return fmt.Errorf("%q is not a size: write a number of bytes or a number with KiB, MiB or GiB", s)
	}
	*b = byteSize(n * mult)
	return nil
}
