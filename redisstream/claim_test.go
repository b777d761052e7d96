package redisstream_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/internal/testutil"
	"github.com/sluicehq/sluice/redisstream"
)

// claimWatch counts the XAUTOCLAIM replies that name a given entry ID.
type claimWatch struct {
	id   atomic.Pointer[string]
	seen atomic.Int64
}

func (h *claimWatch) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *claimWatch) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		// The start cursor is 0-0 here (one page), so only the reply
		// can name the entry.
		if id := h.id.Load(); id != nil && cmd.Name() == "xautoclaim" && err == nil && strings.Contains(cmd.String(), *id) {
			h.seen.Add(1)
		}
		return err
	}
}

func (h *claimWatch) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// deliveryCount returns Redis's delivery counter of one pending entry.
func deliveryCount(t *testing.T, c *redis.Client, stream, group, id string) int64 {
	t.Helper()
	res, err := c.XPendingExt(ctxT(t, 10*time.Second), &redis.XPendingExtArgs{Stream: stream, Group: group, Start: id, End: id, Count: 1}).Result()
	if err != nil || len(res) != 1 {
		t.Fatalf("XPENDING of %s: %v %v", id, res, err)
	}
	return res[0].RetryCount
}

// TestOwnInflightEntriesNotReclaimed holds an entry in flight across many
// claim intervals with a min-idle time far below the time it is held: the
// periodic claim must not raise its delivery counter (a later restart would
// take it for a poison entry), while an idle entry of a dead consumer is
// still claimed, as a second delivery.
func TestOwnInflightEntriesNotReclaimed(t *testing.T) {
	c := newClient(t)
	hook := &claimWatch{}
	c.AddHook(hook)
	ctx := ctxT(t, 60*time.Second)
	in := uniq(t, c, "in")
	held := add(t, c, in, []any{"payload", "held"})[0]
	src := newSource(t, in, "g", redisstream.WithClient(c), redisstream.WithConsumer("me"),
		redisstream.WithMinIdle(5*time.Millisecond), redisstream.WithClaimInterval(time.Millisecond))
	if m := fetchN(t, src, 1)[0]; m.Origin.ID != held || m.Deliveries != 1 {
		t.Fatalf("fetched %s with Deliveries %d, want %s with 1", m.Origin.ID, m.Deliveries, held)
	}

	// Another consumer reads an entry and dies with it.
	orphan := add(t, c, in, []any{"payload", "orphan"})[0]
	dead := newSource(t, in, "g", redisstream.WithAddr(redisAddr(t)), redisstream.WithConsumer("dead"))
	fetchN(t, dead, 1)
	_ = dead.Close()
	if m := fetchN(t, src, 1)[0]; m.Origin.ID != orphan || m.Deliveries != 2 {
		t.Errorf("claimed %s with Deliveries %d, want %s with 2", m.Origin.ID, m.Deliveries, orphan)
	}

	// Keep the source fetching (and claiming) while it holds both.
	hook.id.Store(&held)
	fctx, cancel := context.WithCancel(ctx)
	type result struct {
		msgs []*sluice.Message
		err  error
	}
	done := make(chan result, 1)
	go func() {
		msgs, err := src.Fetch(fctx, 10)
		done <- result{msgs, err}
	}()
	testutil.WaitFor(t, 30*time.Second, "claim passes over the held entry", func() (bool, string) {
		n := hook.seen.Load()
		return n >= 5, fmt.Sprintf("%d passes", n)
	})
	cancel()
	if r := <-done; !errors.Is(r.err, context.Canceled) || len(r.msgs) != 0 {
		t.Errorf("Fetch while holding everything: %d messages (%v), %v; want none", len(r.msgs), idsOf(r.msgs), r.err)
	}
	if n := deliveryCount(t, c, in, "g", held); n != 1 {
		t.Errorf("held entry has delivery count %d after %d claim passes, want 1", n, hook.seen.Load())
	}
	if n := deliveryCount(t, c, in, "g", orphan); n != 2 {
		t.Errorf("claimed entry has delivery count %d, want 2", n)
	}
}
