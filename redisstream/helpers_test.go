package redisstream_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/internal/testutil"
)

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		os.Exit(childMain())
	}
	os.Exit(m.Run())
}

// redisAddr returns the address of a real Redis server (REDIS_ADDR), or skips
// the test (fails it when CI=true) with a message saying how to get one. The
// module integration/testcontainers runs these tests against a server in a
// Docker container.
func redisAddr(t testing.TB) string {
	t.Helper()
	addr := os.Getenv("REDIS_ADDR")
	if addr == "" {
		msg := "no Redis server: start one with `scripts/redis.sh start` and run with REDIS_ADDR=127.0.0.1:6379 (or, with a Docker engine, run the integration/testcontainers module's tests)"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return addr
}

// newClient connects to the test server and closes the client when the test
// ends.
func newClient(t testing.TB) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: redisAddr(t)})
	t.Cleanup(func() { _ = c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("PING %s: %v", redisAddr(t), err)
	}
	return c
}

// uniq returns a fresh name for a stream or group, removing the keys it
// names when the test ends.
func uniq(t testing.TB, c *redis.Client, prefix string) string {
	t.Helper()
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := fmt.Sprintf("sluice-test:%s:%s:%s", strings.ReplaceAll(t.Name(), "/", "."), prefix, hex.EncodeToString(b[:]))
	if c != nil {
		t.Cleanup(func() { _ = c.Del(context.Background(), name).Err() })
	}
	return name
}

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// add appends entries with the given field lists and returns their IDs.
func add(t testing.TB, c *redis.Client, stream string, entries ...[]any) []string {
	t.Helper()
	ctx := ctxT(t, 30*time.Second)
	pipe := c.Pipeline()
	cmds := make([]*redis.StringCmd, len(entries))
	for i, f := range entries {
		cmds[i] = pipe.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: f})
	}
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatalf("XADD to %s: %v", stream, err)
	}
	ids := make([]string, len(cmds))
	for i, cmd := range cmds {
		ids[i] = cmd.Val()
	}
	return ids
}

// readStream returns every entry of stream.
func readStream(t testing.TB, c *redis.Client, stream string) []redis.XMessage {
	t.Helper()
	res, err := c.XRange(ctxT(t, 30*time.Second), stream, "-", "+").Result()
	if err != nil {
		t.Fatalf("XRANGE %s: %v", stream, err)
	}
	return res
}

// pending returns the size of a group's pending list.
func pending(t testing.TB, c *redis.Client, stream, group string) int64 {
	t.Helper()
	p, err := c.XPending(ctxT(t, 10*time.Second), stream, group).Result()
	if err != nil {
		t.Fatalf("XPENDING %s %s: %v", stream, group, err)
	}
	return p.Count
}

// runner runs a pipeline in the background.
type runner struct {
	p      *sluice.Pipeline
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
}

func startPipeline(t testing.TB, src sluice.Source, enr sluice.Enricher, sink sluice.Sink, opts ...sluice.Option) *runner {
	t.Helper()
	opts = append([]sluice.Option{sluice.WithLogger(testutil.Logger(t)), sluice.WithDrainTimeout(2 * time.Second)}, opts...)
	p, err := sluice.New(src, enr, sink, opts...)
	if err != nil {
		t.Fatalf("sluice.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &runner{p: p, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- p.Run(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

func (r *runner) stop(t testing.TB) {
	t.Helper()
	r.once.Do(func() {
		r.cancel()
		select {
		case err := <-r.done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("Run did not return 30s after cancellation")
		}
	})
}

// field returns a field of an entry as a string.
func field(e redis.XMessage, name string) (string, bool) {
	v, ok := e.Values[name]
	if !ok {
		return "", false
	}
	s, _ := v.(string)
	return s, true
}

// waitIdle waits until every pending entry of the group has been idle for
// more than d, so that a consumer started next with WithMinIdle(d) claims
// them at its startup. On a fast machine the next consumer can otherwise
// start within the millisecond of Redis's idle clock, find nothing to
// claim yet, and wait for the next claim interval.
func waitIdle(t testing.TB, c *redis.Client, stream, group string, d time.Duration) {
	t.Helper()
	testutil.WaitFor(t, 10*time.Second, "pending entries idle for more than "+d.String(), func() (bool, string) {
		ps, err := c.XPendingExt(ctxT(t, 10*time.Second), &redis.XPendingExtArgs{Stream: stream, Group: group, Start: "-", End: "+", Count: 1000}).Result()
		if err != nil {
			return false, err.Error()
		}
		for _, p := range ps {
			if p.Idle <= d {
				return false, fmt.Sprintf("%s idle %s", p.ID, p.Idle)
			}
		}
		return true, ""
	})
}
