package redisstream_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/internal/testutil"
	"github.com/sluicehq/sluice/jsonenrich"
	"github.com/sluicehq/sluice/redisstream"
)

func newSource(t *testing.T, stream, group string, opts ...redisstream.SourceOption) *redisstream.Source {
	t.Helper()
	opts = append([]redisstream.SourceOption{redisstream.WithBlock(50 * time.Millisecond), redisstream.WithLogger(testutil.Logger(t))}, opts...)
	src, err := redisstream.NewSource(context.Background(), stream, group, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = src.Close() })
	return src
}

// fetchN fetches until it has n messages.
func fetchN(t *testing.T, src sluice.Source, n int) []*sluice.Message {
	t.Helper()
	ctx := ctxT(t, 30*time.Second)
	var all []*sluice.Message
	for len(all) < n {
		msgs, err := src.Fetch(ctx, n-len(all))
		if err != nil {
			t.Fatalf("Fetch after %d of %d messages: %v", len(all), n, err)
		}
		all = append(all, msgs...)
	}
	return all
}

// TestPipelineEndToEnd runs good, bad and payload-less entries through a
// pipeline and checks the output and dead-letter entries field by field.
func TestPipelineEndToEnd(t *testing.T) {
	c := newClient(t)
	in, out, dlq := uniq(t, c, "in"), uniq(t, c, "out"), uniq(t, c, "dlq")
	src := newSource(t, in, "g", redisstream.WithClient(c), redisstream.WithConsumer("c1"))
	sink, err := redisstream.NewSink(context.Background(), out, redisstream.WithClient(c), redisstream.WithDeadLetterStream(dlq), redisstream.WithMaxLen(10000))
	if err != nil {
		t.Fatal(err)
	}
	r := startPipeline(t, src, classEnricher(), sink, sluice.WithRetries(1))
	testutil.WaitFor(t, 30*time.Second, "readiness", func() (bool, string) {
		err := src.Ready(ctxT(t, 5*time.Second))
		return err == nil, fmt.Sprint(err)
	})
	// Published after the group was created at "$".
	_, classes := publishClasses(t, c, in, 100)
	var o outcome
	testutil.WaitFor(t, 30*time.Second, "all outcomes", func() (bool, string) {
		o = collect(t, c, in, out, dlq)
		return o.done() >= 100, fmt.Sprintf("%d done", o.done())
	})
	r.stop(t)
	for _, d := range verifyClasses(t, o, classes) {
		if d != 1 {
			t.Errorf("fresh entry enriched with Deliveries %d, want 1", d)
			break
		}
	}
	if n := pending(t, c, in, "g"); n != 0 {
		t.Errorf("%d entries still pending", n)
	}
	// A dead letter carries the original payload and fields and the
	// failure headers.
	for id, dls := range o.deadLetter {
		e := dls[0]
		if classes[id] == classBad {
			p, _ := field(e, "payload")
			tr, _ := field(e, "trace")
			if !strings.Contains(p, `"class":"bad"`) || !strings.HasPrefix(tr, "t-") {
				t.Errorf("dead letter %v lost the original payload or fields", e.Values)
			}
		} else {
			note, _ := field(e, "note")
			if note != "no payload here" {
				t.Errorf("dead letter of a payload-less entry lost its fields: %v", e.Values)
			}
		}
		for _, f := range []string{"failure_reason", "failure_attempts", "failure_time", "source_stream", "source_id"} {
			if _, ok := field(e, f); !ok {
				t.Errorf("dead letter %v has no %s", e.Values, f)
			}
		}
		if s, _ := field(e, "source_stream"); s != in {
			t.Errorf("dead letter source_stream %q, want %q", s, in)
		}
	}
	l, err := src.Lag(ctxT(t, 5*time.Second))
	if err != nil || l.Total != 0 || l.ByPartition[in] != 0 {
		t.Errorf("Lag after everything was done: %+v, %v; want 0", l, err)
	}
}

// TestFieldsAsJSONPipeline checks the whole-field-map mapping end to end.
func TestFieldsAsJSONPipeline(t *testing.T) {
	c := newClient(t)
	in, out, dlq := uniq(t, c, "in"), uniq(t, c, "out"), uniq(t, c, "dlq")
	ids := add(t, c, in, []any{"user", "ann", "text", "hello"}, []any{"user", "bob", "text", "reject me"})
	src := newSource(t, in, "g", redisstream.WithClient(c), redisstream.WithFieldsAsJSON())
	sink, err := redisstream.NewSink(context.Background(), out, redisstream.WithClient(c), redisstream.WithFieldsAsJSON(), redisstream.WithDeadLetterStream(dlq))
	if err != nil {
		t.Fatal(err)
	}
	enr, err := jsonenrich.New([]string{"text"}, func(_ context.Context, f []jsonenrich.Field, _ *sluice.Message) (json.RawMessage, error) {
		if f[0].Text == "reject me" {
			return nil, sluice.Permanent(errors.New("rejected"))
		}
		return json.RawMessage(`{"len":` + fmt.Sprint(len(f[0].Text)) + `}`), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	r := startPipeline(t, src, enr, sink)
	testutil.WaitFor(t, 30*time.Second, "outputs", func() (bool, string) {
		n := len(readStream(t, c, out)) + len(readStream(t, c, dlq))
		return n >= 2, fmt.Sprint(n)
	})
	r.stop(t)
	outs := readStream(t, c, out)
	if len(outs) != 1 {
		t.Fatalf("%d outputs, want 1", len(outs))
	}
	e := outs[0]
	want := map[string]string{"user": "ann", "text": "hello", "ai_enrichment": `{"len":5}`, "source_stream": in, "source_id": ids[0], "idempotency_key": in + "/" + ids[0]}
	for k, v := range want {
		if got, _ := field(e, k); got != v {
			t.Errorf("output field %s = %q, want %q (all: %v)", k, got, v, e.Values)
		}
	}
	dls := readStream(t, c, dlq)
	if len(dls) != 1 {
		t.Fatalf("%d dead letters, want 1", len(dls))
	}
	if u, _ := field(dls[0], "user"); u != "bob" {
		t.Errorf("dead letter lost the original fields: %v", dls[0].Values)
	}
}

// TestRestartDeliveries checks the delivery rule: re-reading the own pending
// list at startup does not count, claims do, and readiness waits for the
// recovered entries.
func TestRestartDeliveries(t *testing.T) {
	c := newClient(t)
	in := uniq(t, c, "in")
	ids := add(t, c, in, []any{"payload", "a"}, []any{"payload", "b"}, []any{"payload", "c"})
	ctx := ctxT(t, 30*time.Second)

	// First run: read everything, ack nothing, stop.
	s1 := newSource(t, in, "g", redisstream.WithAddr(redisAddr(t)), redisstream.WithConsumer("c1"))
	if err := s1.Ready(ctx); err != nil {
		t.Errorf("Ready of a new group before the first Fetch: %v, want nil (nothing to reconcile)", err)
	}
	for _, m := range fetchN(t, s1, 3) {
		if m.Deliveries != 1 {
			t.Errorf("first read: Deliveries %d, want 1", m.Deliveries)
		}
	}
	if err := s1.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s1.Fetch(ctx, 1); !errors.Is(err, sluice.ErrSourceClosed) {
		t.Errorf("Fetch after Close: %v, want ErrSourceClosed", err)
	}

	// Restart with the same name: the own pending list comes back, with
	// Deliveries 1; the source is not ready until it is acked.
	s2 := newSource(t, in, "g", redisstream.WithAddr(redisAddr(t)), redisstream.WithConsumer("c1"))
	if err := s2.Ready(ctx); !errors.Is(err, redisstream.ErrNotReady) {
		t.Errorf("Ready before the first Fetch: %v, want ErrNotReady", err)
	}
	got := fetchN(t, s2, 3)
	for i, m := range got {
		if m.Origin.ID != ids[i] || m.Deliveries != 1 {
			t.Errorf("recovered %s with Deliveries %d, want %s with 1", m.Origin.ID, m.Deliveries, ids[i])
		}
	}
	// Drive the source past reconciliation: the next Fetch reads new
	// entries, so give it one.
	newID := add(t, c, in, []any{"payload", "d"})[0]
	if m := fetchN(t, s2, 1); m[0].Origin.ID != newID {
		t.Fatalf("fetched %s, want the new entry %s", m[0].Origin.ID, newID)
	}
	if err := s2.Ready(ctx); !errors.Is(err, redisstream.ErrNotReady) {
		t.Errorf("Ready with recovered entries unacked: %v, want ErrNotReady", err)
	}
	if err := s2.Ack(ctx, got[:1]); err != nil {
		t.Fatal(err)
	}
	if err := s2.Ready(ctx); !errors.Is(err, redisstream.ErrNotReady) {
		t.Errorf("Ready with two recovered entries unacked: %v, want ErrNotReady", err)
	}
	if err := s2.Ack(ctx, got[1:]); err != nil {
		t.Fatal(err)
	}
	if err := s2.Ready(ctx); err != nil {
		t.Errorf("Ready after the recovered entries were acked: %v", err)
	}
	_ = s2.Close()

	// A second restart: the remaining entry ("d") was re-read once
	// before by nobody, so it comes back with 1; an entry that survives
	// two restarts comes back with 2.
	s3 := newSource(t, in, "g", redisstream.WithAddr(redisAddr(t)), redisstream.WithConsumer("c1"))
	m := fetchN(t, s3, 1)[0]
	if m.Origin.ID != newID || m.Deliveries != 1 {
		t.Errorf("after one restart: %s with Deliveries %d, want %s with 1", m.Origin.ID, m.Deliveries, newID)
	}
	_ = s3.Close()
	s4 := newSource(t, in, "g", redisstream.WithAddr(redisAddr(t)), redisstream.WithConsumer("c1"))
	m = fetchN(t, s4, 1)[0]
	if m.Deliveries != 2 {
		t.Errorf("after two restarts: Deliveries %d, want 2", m.Deliveries)
	}
	_ = s4.Close()
	waitIdle(t, c, in, "g", time.Millisecond)

	// Another consumer claims it after the min-idle time: the claim is a
	// delivery (count 4 in Redis: read, two re-reads, one claim).
	s5 := newSource(t, in, "g", redisstream.WithAddr(redisAddr(t)), redisstream.WithConsumer("c2"),
		redisstream.WithMinIdle(time.Millisecond))
	m = fetchN(t, s5, 1)[0]
	if m.Origin.ID != newID || m.Deliveries != 4 {
		t.Errorf("claimed: %s with Deliveries %d, want %s with 4", m.Origin.ID, m.Deliveries, newID)
	}
	if err := s5.Ack(ctx, []*sluice.Message{m}); err != nil {
		t.Fatal(err)
	}
	if err := s5.Ready(ctx); err != nil {
		t.Errorf("Ready after acking the claimed entry: %v", err)
	}
}

// TestMaxDeliveriesDeadLetters checks that an entry that keeps coming back
// is dead-lettered with a reason that says so.
func TestMaxDeliveriesDeadLetters(t *testing.T) {
	c := newClient(t)
	in, out, dlq := uniq(t, c, "in"), uniq(t, c, "out"), uniq(t, c, "dlq")
	id := add(t, c, in, []any{"payload", `{"x":1}`})[0]
	// Three consumers died holding it: read once, claimed twice.
	for _, name := range []string{"a", "b", "c"} {
		s := newSource(t, in, "g", redisstream.WithAddr(redisAddr(t)), redisstream.WithConsumer(name),
			redisstream.WithMinIdle(time.Millisecond))
		fetchN(t, s, 1)
		_ = s.Close()
		waitIdle(t, c, in, "g", time.Millisecond)
	}
	src := newSource(t, in, "g", redisstream.WithClient(c), redisstream.WithConsumer("d"), redisstream.WithMinIdle(time.Millisecond))
	sink, err := redisstream.NewSink(context.Background(), out, redisstream.WithClient(c), redisstream.WithDeadLetterStream(dlq))
	if err != nil {
		t.Fatal(err)
	}
	r := startPipeline(t, src, classEnricher(), sink, sluice.WithMaxDeliveries(3))
	testutil.WaitFor(t, 30*time.Second, "the dead letter", func() (bool, string) {
		n := len(readStream(t, c, dlq))
		return n == 1, fmt.Sprint(n)
	})
	r.stop(t)
	e := readStream(t, c, dlq)[0]
	reason, _ := field(e, "failure_reason")
	sid, _ := field(e, "source_id")
	if sid != id || !strings.Contains(reason, "delivered 4 times") {
		t.Errorf("dead letter %v: want source_id %s and a reason about 4 deliveries", e.Values, id)
	}
	if n := pending(t, c, in, "g"); n != 0 {
		t.Errorf("%d entries still pending", n)
	}
}

// TestDeletedPendingEntries checks that entries trimmed from the stream while
// pending are acknowledged, on both recovery paths.
func TestDeletedPendingEntries(t *testing.T) {
	c := newClient(t)
	ctx := ctxT(t, 30*time.Second)
	for _, same := range []bool{true, false} {
		in := uniq(t, c, "in")
		ids := add(t, c, in, []any{"payload", "1"}, []any{"payload", "2"}, []any{"payload", "3"})
		s1 := newSource(t, in, "g", redisstream.WithAddr(redisAddr(t)), redisstream.WithConsumer("a"))
		fetchN(t, s1, 3)
		_ = s1.Close()
		if err := c.XDel(ctx, in, ids[0], ids[2]).Err(); err != nil {
			t.Fatal(err)
		}
		name := "a"
		if !same {
			name = "b"
		}
		waitIdle(t, c, in, "g", time.Millisecond)
		s2 := newSource(t, in, "g", redisstream.WithAddr(redisAddr(t)), redisstream.WithConsumer(name), redisstream.WithMinIdle(time.Millisecond))
		got := fetchN(t, s2, 1)
		if got[0].Origin.ID != ids[1] || string(got[0].Value) != "2" {
			t.Errorf("same consumer %v: recovered %s %q, want %s", same, got[0].Origin.ID, got[0].Value, ids[1])
		}
		if err := s2.Ack(ctx, got); err != nil {
			t.Fatal(err)
		}
		// Let the source finish reconciling (it reads one entry at a
		// time here); there is nothing more to fetch.
		short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		if msgs, err := s2.Fetch(short, 1); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Fetch with nothing left: %d messages, %v", len(msgs), err)
		}
		cancel()
		if n := pending(t, c, in, "g"); n != 0 {
			t.Errorf("same consumer %v: %d entries still pending; the deleted ones should be acked", same, n)
		}
		_ = s2.Close()
	}
}

// TestLag checks lag plus pending, and an unknown (NULL) lag.
func TestLag(t *testing.T) {
	c := newClient(t)
	ctx := ctxT(t, 30*time.Second)
	in := uniq(t, c, "in")
	src := newSource(t, in, "g", redisstream.WithClient(c))
	if l, err := src.Lag(ctx); err != nil || l.Total != 0 {
		t.Errorf("lag of a missing stream: %+v %v, want 0", l, err)
	}
	ids := add(t, c, in, []any{"payload", "1"}, []any{"payload", "2"}, []any{"payload", "3"}, []any{"payload", "4"})
	if l, err := src.Lag(ctx); err != nil || l.Total != 4 {
		t.Errorf("lag of 4 entries after the group was created at the oldest: %+v %v, want 4", l, err)
	}
	got := fetchN(t, src, 2)
	l, err := src.Lag(ctx)
	if err != nil || l.Total != 4 || l.ByPartition[in] != 4 {
		t.Errorf("lag with 2 unread and 2 pending: %+v %v, want 4", l, err)
	}
	if err := src.Ack(ctx, got); err != nil {
		t.Fatal(err)
	}
	if l, _ := src.Lag(ctx); l.Total != 2 {
		t.Errorf("lag with 2 unread: %+v, want 2", l)
	}
	// Deleting an entry the group has not read makes Redis's lag NULL.
	if err := c.XDel(ctx, in, ids[3]).Err(); err != nil {
		t.Fatal(err)
	}
	if l, err := src.Lag(ctx); err != nil || l.Total != -1 || l.ByPartition[in] != -1 {
		t.Errorf("lag after a deletion: %+v %v, want -1 (unknown)", l, err)
	}
}

// cmdCounter counts commands by name and can make some fail.
type cmdCounter struct {
	xreadgroup atomic.Int64
	failXAck   atomic.Int64 // fail this many XACKs
}

func (h *cmdCounter) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *cmdCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		switch cmd.Name() {
		case "xreadgroup":
			h.xreadgroup.Add(1)
		case "xack":
			if h.failXAck.Add(-1) >= 0 {
				err := errors.New("injected: connection reset")
				cmd.SetErr(err)
				return err
			}
		}
		return next(ctx, cmd)
	}
}

func (h *cmdCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// TestPauseStopsReads checks that a paused source issues no reads.
func TestPauseStopsReads(t *testing.T) {
	c := newClient(t)
	hook := &cmdCounter{}
	c.AddHook(hook)
	in := uniq(t, c, "in")
	src := newSource(t, in, "g", redisstream.WithClient(c))
	add(t, c, in, []any{"payload", "1"})
	fetchN(t, src, 1)
	add(t, c, in, []any{"payload", "2"})
	src.Pause()
	before := hook.xreadgroup.Load()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if msgs, err := src.Fetch(ctx, 10); !errors.Is(err, context.DeadlineExceeded) || len(msgs) != 0 {
		t.Errorf("Fetch while paused: %d messages, %v; want none and a deadline error", len(msgs), err)
	}
	if n := hook.xreadgroup.Load() - before; n != 0 {
		t.Errorf("%d XREADGROUPs while paused", n)
	}
	done := make(chan []*sluice.Message)
	go func() {
		msgs, _ := src.Fetch(ctxT(t, 30*time.Second), 10)
		done <- msgs
	}()
	src.Resume()
	if msgs := <-done; len(msgs) != 1 || string(msgs[0].Value) != "2" {
		t.Errorf("after Resume: %v", msgs)
	}
}

// TestAckRetriedAfterFailure checks that a failed XACK is kept and sent with
// the next Ack (and by Flush).
func TestAckRetriedAfterFailure(t *testing.T) {
	c := newClient(t)
	hook := &cmdCounter{}
	c.AddHook(hook)
	ctx := ctxT(t, 30*time.Second)
	in := uniq(t, c, "in")
	src := newSource(t, in, "g", redisstream.WithClient(c))
	add(t, c, in, []any{"payload", "1"}, []any{"payload", "2"}, []any{"payload", "3"})
	got := fetchN(t, src, 3)
	hook.failXAck.Store(1)
	err := src.Ack(ctx, got[:1])
	if err == nil || !strings.Contains(err.Error(), "kept for retry") {
		t.Fatalf("Ack with a failing XACK: %v", err)
	}
	if n := pending(t, c, in, "g"); n != 3 {
		t.Fatalf("%d pending, want 3", n)
	}
	if err := src.Ack(ctx, got[1:2]); err != nil {
		t.Fatal(err)
	}
	if n := pending(t, c, in, "g"); n != 1 {
		t.Errorf("%d pending after the next Ack, want 1 (the failed ack must be retried)", n)
	}
	hook.failXAck.Store(1)
	if err := src.Ack(ctx, got[2:]); err == nil {
		t.Fatal("Ack with a failing XACK succeeded")
	}
	if err := src.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if n := pending(t, c, in, "g"); n != 0 {
		t.Errorf("%d pending after Flush, want 0", n)
	}
}

// TestDeadLetterTransaction checks that a sink sharing the source's client
// acknowledges entries once their dead letters are written, and that the
// later Ack is harmless.
func TestDeadLetterTransaction(t *testing.T) {
	c := newClient(t)
	ctx := ctxT(t, 30*time.Second)
	in, out, dlq := uniq(t, c, "in"), uniq(t, c, "out"), uniq(t, c, "dlq")
	add(t, c, in, []any{"payload", "x", "h", "v"}, []any{"payload", "y"})
	src := newSource(t, in, "g", redisstream.WithClient(c))
	sink, err := redisstream.NewSink(context.Background(), out, redisstream.WithClient(src.Client()), redisstream.WithDeadLetterStream(dlq))
	if err != nil {
		t.Fatal(err)
	}
	got := fetchN(t, src, 2)
	if err := sink.WriteDeadLetters(ctx, []sluice.DeadLetter{{Msg: got[0], Reason: "nope", Attempts: 2, FailedAt: time.Now()}}); err != nil {
		t.Fatal(err)
	}
	if n := pending(t, c, in, "g"); n != 1 {
		t.Errorf("%d pending after the dead letter was written, want 1", n)
	}
	if err := src.Ack(ctx, got); err != nil {
		t.Fatalf("Ack after the transaction: %v", err)
	}
	if n := pending(t, c, in, "g"); n != 0 {
		t.Errorf("%d pending, want 0", n)
	}
	dls := readStream(t, c, dlq)
	if len(dls) != 1 {
		t.Fatalf("%d dead letters", len(dls))
	}
	for k, v := range map[string]string{"payload": "x", "h": "v", "failure_reason": "nope", "failure_attempts": "2", "source_id": got[0].Origin.ID} {
		if g, _ := field(dls[0], k); g != v {
			t.Errorf("dead letter %s = %q, want %q", k, g, v)
		}
	}
	// A sink on another client writes without acknowledging.
	other, err := redisstream.NewSink(context.Background(), out, redisstream.WithAddr(redisAddr(t)), redisstream.WithDeadLetterStream(dlq))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	add(t, c, in, []any{"payload", "z"})
	z := fetchN(t, src, 1)
	if err := other.WriteDeadLetters(ctx, []sluice.DeadLetter{{Msg: z[0], Reason: "r"}}); err != nil {
		t.Fatal(err)
	}
	if n := pending(t, c, in, "g"); n != 1 {
		t.Errorf("%d pending after a dead letter on another client, want 1", n)
	}
}

// TestConnectionErrors checks that the constructors refuse an unreachable
// server with ErrUnreachable, naming it without the password, and that
// rejected credentials are reported as such.
func TestConnectionErrors(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	_ = ln.Close()
	for what, build := range map[string]func() error{
		"NewSource": func() error {
			_, err := redisstream.NewSource(ctxT(t, 30*time.Second), "s", "g", redisstream.WithAddr(dead), redisstream.WithCredentials("user", "hunter2-secret"))
			return err
		},
		"NewSink": func() error {
			_, err := redisstream.NewSink(ctxT(t, 30*time.Second), "s", redisstream.WithAddr(dead), redisstream.WithCredentials("user", "hunter2-secret"))
			return err
		},
	} {
		err := build()
		if !errors.Is(err, redisstream.ErrUnreachable) || !strings.Contains(err.Error(), dead) {
			t.Errorf("%s with a dead server: %v, want ErrUnreachable naming %s", what, err, dead)
		}
		if err != nil && strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%s leaks the password: %v", what, err)
		}
	}

	c := newClient(t)
	_, err = redisstream.NewSource(ctxT(t, 30*time.Second), uniq(t, c, "in"), "g", redisstream.WithAddr(redisAddr(t)), redisstream.WithCredentials("nobody", "wrong"))
	if err == nil || !redis.IsAuthError(err) || errors.Is(err, redisstream.ErrUnreachable) {
		t.Errorf("NewSource with bad credentials: %v, want an auth error", err)
	}
}

// TestStartAt checks where a new group starts on a stream with a backlog:
// at the oldest entry by default, after the newest with
// WithStartAt(Newest). The kafka suite has the same test.
func TestStartAt(t *testing.T) {
	c := newClient(t)
	in := uniq(t, c, "in")
	backlog := add(t, c, in, []any{"payload", "0"}, []any{"payload", "1"}, []any{"payload", "2"})

	oldest := newSource(t, in, "oldest", redisstream.WithClient(c))
	if got := fetchN(t, oldest, 3); got[0].Origin.ID != backlog[0] || string(got[0].Value) != "0" {
		t.Fatalf("default start: first entry %s (%s), want the backlog's first %s", got[0].Origin.ID, got[0].Value, backlog[0])
	}

	newest := newSource(t, in, "newest", redisstream.WithClient(c), redisstream.WithStartAt(redisstream.Newest))
	fresh := add(t, c, in, []any{"payload", "3"}, []any{"payload", "4"})
	got := fetchN(t, newest, 2)
	for i, m := range got {
		if m.Origin.ID != fresh[i] {
			t.Fatalf("WithStartAt(Newest): entry %d is %s, want %s (the backlog must be skipped)", i, m.Origin.ID, fresh[i])
		}
	}
}

// TestMissingPayloadDeadLettered checks the entry-without-payload path with
// an enricher that fails on it and one that lets it through.
func TestMissingPayloadDeadLettered(t *testing.T) {
	c := newClient(t)
	in, out, dlq := uniq(t, c, "in"), uniq(t, c, "out"), uniq(t, c, "dlq")
	ids := add(t, c, in, []any{"body", "oops"}, []any{"payload", "fine"})
	src := newSource(t, in, "g", redisstream.WithClient(c))
	sink, err := redisstream.NewSink(context.Background(), out, redisstream.WithClient(c), redisstream.WithDeadLetterStream(dlq))
	if err != nil {
		t.Fatal(err)
	}
	enr := sluice.EnricherFunc(func(_ context.Context, in *sluice.Message) (*sluice.Message, error) {
		return in.WithValue(append([]byte("seen:"), in.Value...)), nil
	})
	r := startPipeline(t, src, enr, sink)
	testutil.WaitFor(t, 30*time.Second, "both entries", func() (bool, string) {
		n := len(readStream(t, c, out)) + len(readStream(t, c, dlq))
		return n == 2, fmt.Sprint(n)
	})
	r.stop(t)
	dls := readStream(t, c, dlq)
	if len(dls) != 1 {
		t.Fatalf("%d dead letters, want 1", len(dls))
	}
	reason, _ := field(dls[0], "failure_reason")
	body, _ := field(dls[0], "body")
	sid, _ := field(dls[0], "source_id")
	if sid != ids[0] || body != "oops" || !strings.Contains(reason, `no "payload" field`) {
		t.Errorf("dead letter %v", dls[0].Values)
	}
	outs := readStream(t, c, out)
	if p, _ := field(outs[0], "payload"); p != "seen:fine" {
		t.Errorf("output %v", outs[0].Values)
	}
}
