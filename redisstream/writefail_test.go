package redisstream_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/internal/testutil"
	"github.com/sluicehq/sluice/redisstream"
)

// xaddWatch is a client hook that counts XADDs refused with WRONGTYPE per
// key and, for a test that needs a batch to fail only in part, sends the
// XADDs carrying a marked value to another key.
type xaddWatch struct {
	mu        sync.Mutex
	wrongType map[string]int
	mark      string // a field value whose XADD goes to redirect
	redirect  string
}

func (h *xaddWatch) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *xaddWatch) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.before(cmd)
		err := next(ctx, cmd)
		h.after(cmd, err)
		return err
	}
}

func (h *xaddWatch) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, c := range cmds {
			h.before(c)
		}
		err := next(ctx, cmds)
		for _, c := range cmds {
			h.after(c, c.Err())
		}
		return err
	}
}

func (h *xaddWatch) before(cmd redis.Cmder) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.mark == "" || cmd.Name() != "xadd" {
		return
	}
	args := cmd.Args()
	for _, a := range args[2:] {
		if b, ok := a.([]byte); ok && string(b) == h.mark {
			args[1] = h.redirect
			return
		}
	}
}

// after counts a refused XADD; err is what the command returned (a
// script's error reaches the hook that way).
func (h *xaddWatch) after(cmd redis.Cmder, err error) {
	key := 1 // XADD key ...
	switch cmd.Name() {
	case "xadd":
	case "evalsha", "eval":
		key = 3 // EVALSHA sha numkeys output input ...: the sink's write-and-ack script
	default:
		return
	}
	if err == nil || !strings.Contains(err.Error(), "WRONGTYPE") {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.wrongType == nil {
		h.wrongType = make(map[string]int)
	}
	h.wrongType[fmt.Sprint(cmd.Args()[key])]++
}

func (h *xaddWatch) refused(key string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.wrongType[key]
}

// pendingIDs returns the IDs in a group's pending list.
func pendingIDs(t testing.TB, c *redis.Client, stream, group string) []string {
	t.Helper()
	res, err := c.XPendingExt(ctxT(t, 10*time.Second), &redis.XPendingExtArgs{Stream: stream, Group: group, Start: "-", End: "+", Count: 10000}).Result()
	if err != nil {
		t.Fatalf("XPENDING %s %s: %v", stream, group, err)
	}
	ids := make([]string, len(res))
	for i, p := range res {
		ids[i] = p.ID
	}
	return ids
}

func idsOf(msgs []*sluice.Message) []string {
	ids := make([]string, len(msgs))
	for i, m := range msgs {
		ids[i] = m.Origin.ID
	}
	return ids
}

// TestDeadLettersNotAckedWhenXAddFails checks that a sink sharing the
// source's client acknowledges no entry whose dead letter Redis refused:
// Redis runs the rest of a MULTI/EXEC when one command fails, so an XACK
// queued behind a failed XADD would lose the entry.
func TestDeadLettersNotAckedWhenXAddFails(t *testing.T) {
	c := newClient(t)
	ctx := ctxT(t, 30*time.Second)
	in, out, dlq := uniq(t, c, "in"), uniq(t, c, "out"), uniq(t, c, "dlq")
	add(t, c, in, []any{"payload", "a"}, []any{"payload", "b"}, []any{"payload", "c"})
	src := newSource(t, in, "g", redisstream.WithClient(c))
	sink, err := redisstream.NewSink(context.Background(), out, redisstream.WithClient(src.Client()), redisstream.WithDeadLetterStream(dlq), redisstream.WithLogger(testutil.Logger(t)))
	if err != nil {
		t.Fatal(err)
	}
	got := fetchN(t, src, 3)
	letters := make([]sluice.DeadLetter, len(got))
	for i, m := range got {
		letters[i] = sluice.DeadLetter{Msg: m, Reason: "nope", Attempts: 1, FailedAt: time.Now()}
	}

	// The dead-letter key holds a string: every XADD fails with WRONGTYPE.
	if err := c.Set(ctx, dlq, "not a stream", 0).Err(); err != nil {
		t.Fatal(err)
	}
	err = sink.WriteDeadLetters(ctx, letters)
	if err == nil {
		t.Fatal("WriteDeadLetters to a string key succeeded")
	}
	var we sluice.WriteErrors
	if !errors.As(err, &we) || len(we) != 3 {
		t.Errorf("WriteDeadLetters: %v, want a WriteErrors for all 3 letters", err)
	}
	for _, e := range we {
		if errors.Is(e.Err, sluice.ErrPermanent) {
			t.Errorf("letter %d: permanent error %v; a refused dead letter must be retried", e.Index, e.Err)
		}
	}
	if ids := pendingIDs(t, c, in, "g"); !slices.Equal(ids, idsOf(got)) {
		t.Fatalf("pending after failed dead letters: %v, want all of %v (an entry whose dead letter failed was acknowledged)", ids, idsOf(got))
	}

	// Once the key is fixed, the retry writes them all and acknowledges
	// them.
	if err := c.Del(ctx, dlq).Err(); err != nil {
		t.Fatal(err)
	}
	if err := sink.WriteDeadLetters(ctx, letters); err != nil {
		t.Fatalf("WriteDeadLetters after the key was fixed: %v", err)
	}
	var written []string
	for _, e := range readStream(t, c, dlq) {
		id, _ := field(e, "source_id")
		written = append(written, id)
	}
	if !slices.Equal(written, idsOf(got)) {
		t.Errorf("dead letters for %v, want %v", written, idsOf(got))
	}
	if n := pending(t, c, in, "g"); n != 0 {
		t.Errorf("%d pending after the dead letters were written, want 0", n)
	}
}

// TestDeadLettersPartlyRefused checks a batch in which only some dead-letter
// XADDs fail: exactly those are reported and stay pending, the others are
// written and acknowledged.
func TestDeadLettersPartlyRefused(t *testing.T) {
	c := newClient(t)
	ctx := ctxT(t, 30*time.Second)
	in, out, dlq, str := uniq(t, c, "in"), uniq(t, c, "out"), uniq(t, c, "dlq"), uniq(t, c, "string")
	if err := c.Set(ctx, str, "not a stream", 0).Err(); err != nil {
		t.Fatal(err)
	}
	hook := &xaddWatch{mark: "fail", redirect: str}
	c.AddHook(hook)
	add(t, c, in, []any{"payload", "ok"}, []any{"payload", "fail"}, []any{"payload", "ok"}, []any{"payload", "fail"})
	src := newSource(t, in, "g", redisstream.WithClient(c))
	sink, err := redisstream.NewSink(context.Background(), out, redisstream.WithClient(c), redisstream.WithDeadLetterStream(dlq), redisstream.WithLogger(testutil.Logger(t)))
	if err != nil {
		t.Fatal(err)
	}
	got := fetchN(t, src, 4)
	letters := make([]sluice.DeadLetter, len(got))
	for i, m := range got {
		letters[i] = sluice.DeadLetter{Msg: m, Reason: "nope", Attempts: 1, FailedAt: time.Now()}
	}
	err = sink.WriteDeadLetters(ctx, letters)
	var we sluice.WriteErrors
	if !errors.As(err, &we) || len(we) != 2 || we[0].Index != 1 || we[1].Index != 3 {
		t.Fatalf("WriteDeadLetters: %v, want WriteErrors for letters 1 and 3", err)
	}
	if n := hook.refused(str); n != 2 {
		t.Errorf("%d XADDs refused, want 2", n)
	}
	if ids, want := pendingIDs(t, c, in, "g"), []string{got[1].Origin.ID, got[3].Origin.ID}; !slices.Equal(ids, want) {
		t.Errorf("pending %v, want just the refused %v", ids, want)
	}
	var written []string
	for _, e := range readStream(t, c, dlq) {
		id, _ := field(e, "source_id")
		written = append(written, id)
	}
	if want := []string{got[0].Origin.ID, got[2].Origin.ID}; !slices.Equal(written, want) {
		t.Errorf("dead letters for %v, want %v", written, want)
	}
}

// TestRefusedWritesStayPending runs a pipeline whose output or dead-letter
// key holds a string: no entry bound for that key may be acknowledged while
// Redis refuses the XADDs, and everything arrives once the key is fixed.
func TestRefusedWritesStayPending(t *testing.T) {
	for _, broken := range []string{"output", "dead-letter", "output-atomic-ack"} {
		t.Run(broken, func(t *testing.T) {
			c := newClient(t)
			ctx := ctxT(t, 60*time.Second)
			in, out, dlq := uniq(t, c, "in"), uniq(t, c, "out"), uniq(t, c, "dlq")
			key, bound := out, func(class string) bool { return class == classGood }
			if broken == "dead-letter" {
				key, bound = dlq, func(class string) bool { return class != classGood }
			}
			if err := c.Set(ctx, key, "not a stream", 0).Err(); err != nil {
				t.Fatal(err)
			}
			hook := &xaddWatch{}
			c.AddHook(hook)
			const n = 40
			_, classes := publishClasses(t, c, in, n)
			src := newSource(t, in, "g", redisstream.WithClient(c))
			opts := []redisstream.SinkOption{redisstream.WithClient(c), redisstream.WithDeadLetterStream(dlq), redisstream.WithLogger(testutil.Logger(t))}
			if broken == "output-atomic-ack" {
				opts = append(opts, redisstream.WithAtomicAck()) // the script stops at the refused XADD, before the XACK
			}
			sink, err := redisstream.NewSink(context.Background(), out, opts...)
			if err != nil {
				t.Fatal(err)
			}
			r := startPipeline(t, src, classEnricher(), sink, sluice.WithBackoff(5*time.Millisecond, 20*time.Millisecond))
			// The writer has been refused more than once: it is in
			// its retry loop.
			testutil.WaitFor(t, 30*time.Second, "refused XADDs", func() (bool, string) {
				n := hook.refused(key)
				return n >= 2, fmt.Sprintf("%d refused", n)
			})
			stillPending := make(map[string]bool)
			for _, id := range pendingIDs(t, c, in, "g") {
				stillPending[id] = true
			}
			for id, class := range classes {
				if bound(class) && !stillPending[id] {
					t.Errorf("%s entry %s was acknowledged while its %s write is refused", class, id, broken)
				}
			}
			if err := c.Del(ctx, key).Err(); err != nil {
				t.Fatal(err)
			}
			var o outcome
			testutil.WaitFor(t, 30*time.Second, "all outcomes", func() (bool, string) {
				o = collect(t, c, in, out, dlq)
				p := pending(t, c, in, "g")
				return o.done() >= n && p == 0, fmt.Sprintf("%d done, %d pending", o.done(), p)
			})
			r.stop(t)
			verifyClasses(t, o, classes)
		})
	}
}
