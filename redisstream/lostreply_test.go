package redisstream_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/internal/testutil"
	"github.com/sluicehq/sluice/redisstream"
)

// cycleWatch counts the source's XREADGROUP > reads and its XPENDING calls.
type cycleWatch struct {
	reads, pendings atomic.Int64
}

func (h *cycleWatch) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *cycleWatch) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		args := cmd.Args()
		switch cmd.Name() {
		case "xreadgroup":
			if args[len(args)-1] == ">" {
				h.reads.Add(1)
			}
		case "xpending":
			h.pendings.Add(1)
		}
		return err
	}
}

func (h *cycleWatch) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// TestLostReplyRecovered simulates an XREADGROUP > whose reply was lost:
// entries delivered to the source's consumer (so pending there, with a
// delivery count of 1) that the source never saw. A running source must
// hand them out within a few of its read cycles, with their real delivery
// count, and in pages no larger than Fetch's limit, while an entry it has in
// flight is neither handed out again nor counted again.
func TestLostReplyRecovered(t *testing.T) {
	c := newClient(t)
	sc := redis.NewClient(&redis.Options{Addr: redisAddr(t)})
	t.Cleanup(func() { _ = sc.Close() })
	hook := &cycleWatch{}
	sc.AddHook(hook)
	ctx := ctxT(t, 60*time.Second)
	in := uniq(t, c, "in")
	// A claim interval of 20ms makes the source look for lost entries at
	// least every 20ms, that is, after every read (BLOCK is 50ms). The
	// min-idle time keeps the periodic claim out of the way.
	src := newSource(t, in, "g", redisstream.WithClient(sc), redisstream.WithConsumer("me"),
		redisstream.WithMinIdle(10*time.Minute), redisstream.WithClaimInterval(20*time.Millisecond))

	held := add(t, c, in, []any{"payload", "held"})[0]
	first := fetchN(t, src, 1)
	if m := first[0]; m.Origin.ID != held || m.Deliveries != 1 {
		t.Fatalf("fetched %s with Deliveries %d, want %s with 1", m.Origin.ID, m.Deliveries, held)
	}

	// The lost reply: another client reads new entries as "me".
	lost := add(t, c, in, []any{"payload", "lost1"}, []any{"payload", "lost2"}, []any{"payload", "lost3"})
	res, err := c.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "g", Consumer: "me", Streams: []string{in, ">"}, Count: 10, Block: -1}).Result()
	if err != nil || len(res) != 1 || len(res[0].Messages) != len(lost) {
		t.Fatalf("XREADGROUP as the source's consumer: %v %v", res, err)
	}

	// Fetch with a limit of 2: the lost entries come in two pages, in
	// order, each within a bounded number of reads.
	type result struct {
		msgs []*sluice.Message
		err  error
	}
	const maxReads = 20
	fetch := func(limit int) []*sluice.Message {
		t.Helper()
		fctx, cancel := context.WithCancel(ctx)
		defer cancel()
		done := make(chan result, 1)
		from := hook.reads.Load()
		go func() {
			msgs, err := src.Fetch(fctx, limit)
			done <- result{msgs, err}
		}()
		var r result
		testutil.WaitFor(t, 30*time.Second, fmt.Sprintf("the lost entries within %d reads", maxReads), func() (bool, string) {
			select {
			case r = <-done:
				return true, ""
			default:
			}
			n := hook.reads.Load() - from
			if n > maxReads {
				cancel()
				r = <-done
				t.Fatalf("%d reads of new entries and the lost entries are not handed out (Fetch: %d messages, %v)", n, len(r.msgs), r.err)
			}
			return false, fmt.Sprintf("%d reads", n)
		})
		if r.err != nil {
			t.Fatalf("Fetch: %v", r.err)
		}
		return r.msgs
	}
	got := fetch(2)
	got = append(got, fetch(2)...)
	if ids := idsOf(got); !slices.Equal(ids, lost) {
		t.Fatalf("handed out %v, want the lost entries %v", ids, lost)
	}
	for i, m := range got {
		if want := fmt.Sprintf("lost%d", i+1); string(m.Value) != want || m.Deliveries != 1 {
			t.Errorf("entry %s: value %q, Deliveries %d; want %q, 1", m.Origin.ID, m.Value, m.Deliveries, want)
		}
	}

	// Everything is in flight now: many more look-ups must hand out
	// nothing and count no delivery.
	fctx, cancel := context.WithCancel(ctx)
	done := make(chan result, 1)
	from := hook.pendings.Load()
	go func() {
		msgs, err := src.Fetch(fctx, 10)
		done <- result{msgs, err}
	}()
	testutil.WaitFor(t, 30*time.Second, "more look-ups for lost entries", func() (bool, string) {
		n := hook.pendings.Load() - from
		return n >= 10, fmt.Sprintf("%d XPENDING", n)
	})
	cancel()
	if r := <-done; !errors.Is(r.err, context.Canceled) || len(r.msgs) != 0 {
		t.Errorf("Fetch while holding everything: %d messages (%v), %v; want none", len(r.msgs), idsOf(r.msgs), r.err)
	}
	for _, id := range append([]string{held}, lost...) {
		if n := deliveryCount(t, c, in, "g", id); n != 1 {
			t.Errorf("entry %s has delivery count %d, want 1", id, n)
		}
	}

	if err := src.Ack(ctx, append(first, got...)); err != nil {
		t.Fatal(err)
	}
	if n := pending(t, c, in, "g"); n != 0 {
		t.Errorf("%d entries pending after acknowledging all, want 0", n)
	}
}
