package sluice_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/sluicetest"
)

type traceKey struct{}

// recTracer records what an EventTracer is told, by event value.
type recTracer struct {
	mu  sync.Mutex
	log map[string][]string
}

func newRecTracer() *recTracer { return &recTracer{log: map[string][]string{}} }

func (r *recTracer) add(m *sluice.Message, s string) {
	r.mu.Lock()
	r.log[string(m.Value)] = append(r.log[string(m.Value)], s)
	r.mu.Unlock()
}

func (r *recTracer) of(v string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.log[v])
}

func (r *recTracer) EventDone(sluice.Outcome, time.Duration) {}
func (r *recTracer) RateLimited(time.Duration)               {}

func (r *recTracer) EventReceived(ctx context.Context, m *sluice.Message) context.Context {
	r.add(m, "received")
	if string(m.Value) == "skip" {
		return ctx // not followed: no other call
	}
	return context.WithValue(ctx, traceKey{}, string(m.Value))
}

func (r *recTracer) EventRetry(ctx context.Context, m *sluice.Message, attempt int, err error, _ time.Duration) {
	r.add(m, fmt.Sprintf("retry %d %v ctx=%v", attempt, err, ctx.Value(traceKey{})))
}

func (r *recTracer) EventPaused(ctx context.Context, m *sluice.Message, d time.Duration, err error) {
	r.add(m, fmt.Sprintf("paused %v", d > 0 && err != nil))
}

func (r *recTracer) EventWriting(ctx context.Context, in, out *sluice.Message, hs []sluice.Header, dead bool, reason string) []sluice.Header {
	r.add(in, fmt.Sprintf("writing dead=%v out=%v reason=%q", dead, out != nil, reason))
	v := "out"
	if dead {
		v = "dead"
	}
	return append(slices.Clip(hs), sluice.Header{Key: "trace", Value: []byte(fmt.Sprint(ctx.Value(traceKey{}), "/", v))})
}

func (r *recTracer) EventFinished(ctx context.Context, m *sluice.Message, acked bool, err error) {
	r.add(m, fmt.Sprintf("finished acked=%v", acked))
}

func TestEventTracerFollowsEachEvent(t *testing.T) {
	src := sluicetest.NewSource("in", 1)
	orig := []sluice.Header{{Key: "traceparent", Value: []byte("producer")}}
	for _, v := range []string{"ok", "flaky", "bad", "limited", "skip"} {
		src.Publish(nil, []byte(v), orig...)
	}
	sink := sluicetest.NewSink()
	tr := newRecTracer()
	var mu sync.Mutex
	calls := map[string]int{}
	enr := sluice.EnricherFunc(func(ctx context.Context, in *sluice.Message) (*sluice.Message, error) {
		v := string(in.Value)
		if v == "skip" {
			if ctx.Value(traceKey{}) != nil || in.Context() != context.Background() {
				return nil, sluice.Permanent(errors.New("an event not followed has a tracer's context"))
			}
			mu.Lock()
			calls[v]++
			n := calls[v]
			mu.Unlock()
			if n == 1 {
				return nil, errors.New("flaked") // a retry the tracer is not told about
			}
			return in.WithValue([]byte("SKIP")), nil
		}
		if got := ctx.Value(traceKey{}); got != v {
			return nil, sluice.Permanent(fmt.Errorf("enricher got the context of %v", got))
		}
		if in.Context().Value(traceKey{}) != v {
			return nil, sluice.Permanent(errors.New("Message.Context lacks the event's context"))
		}
		mu.Lock()
		calls[v]++
		n := calls[v]
		mu.Unlock()
		switch {
		case v == "flaky" && n == 1:
			return nil, errors.New("flaked")
		case v == "bad":
			return nil, sluice.Permanent(errors.New("unusable"))
		case v == "limited" && n == 1:
			return nil, &sluice.RateLimitError{RetryAfter: time.Millisecond, Err: errors.New("429")}
		}
		return in.WithValue([]byte(strings.ToUpper(v))), nil
	})
	p, err := sluice.New(src, enr, sink, sluice.WithObserver(tr), sluice.WithBackoff(0, 0), sluice.WithPauseJitter(0), quiet())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(within(t))
	done := start(t, ctx, p)
	if err := sink.WaitFor(within(t), 5); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := wait(t, done); err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{
		"ok":      {"received", `writing dead=false out=true reason=""`, "finished acked=true"},
		"flaky":   {"received", "retry 1 flaked ctx=flaky", `writing dead=false out=true reason=""`, "finished acked=true"},
		"bad":     {"received", `writing dead=true out=false reason="unusable"`, "finished acked=true"},
		"limited": {"received", "paused true", `writing dead=false out=true reason=""`, "finished acked=true"},
		"skip":    {"received"},
	}
	for v, w := range want {
		if got := tr.of(v); !slices.Equal(got, w) {
			t.Errorf("%s: tracer was told\n%q\nwant\n%q", v, got, w)
		}
	}
	for _, m := range sink.Messages() {
		v := strings.ToLower(string(m.Value))
		want := v + "/out"
		if v == "skip" {
			want = ""
		}
		if got, _ := m.Header("trace"); string(got) != want {
			t.Errorf("output %s has trace header %q, want %q", m.Value, got, want)
		}
	}
	letters := sink.DeadLetters()
	if len(letters) != 1 {
		t.Fatalf("%d dead letters, want 1", len(letters))
	}
	hs := letters[0].Headers()
	if got := hdr(hs, "trace"); got != "bad/dead" {
		t.Errorf("dead letter trace header %q, want bad/dead", got)
	}
	if got := hdr(hs, sluice.HeaderFailureReason); got != "unusable" {
		t.Errorf("dead letter failure_reason %q", got)
	}
	if string(letters[0].Msg.Value) != "bad" {
		t.Errorf("dead letter value %q, want the original", letters[0].Msg.Value)
	}
	if len(orig) != 1 || cap(orig) != 1 {
		t.Errorf("the source's headers were changed: %v", orig)
	}
}

func hdr(hs []sluice.Header, key string) string {
	for _, h := range hs {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// An event left for redelivery at shutdown is finished unacked, and an
// event never written is not announced as written.
func TestEventTracerSeesEventsLeftUnacked(t *testing.T) {
	src := sluicetest.NewSource("in", 1)
	src.Publish(nil, []byte("stuck"))
	g := newGated()
	tr := newRecTracer()
	p, err := sluice.New(src, g, sluicetest.NewSink(), sluice.WithObserver(tr), sluice.WithDrainTimeout(time.Millisecond), quiet())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(within(t))
	done := start(t, ctx, p)
	wait(t, g.started)
	cancel()
	if err := wait(t, done); err != nil {
		t.Fatal(err)
	}
	want := []string{"received", "finished acked=false"}
	if got := tr.of("stuck"); !slices.Equal(got, want) {
		t.Errorf("tracer was told %q, want %q", got, want)
	}
}

func TestMessageContext(t *testing.T) {
	m := &sluice.Message{Value: []byte("v")}
	if m.Context() != context.Background() {
		t.Error("a new message's context is not Background")
	}
	ctx := context.WithValue(context.Background(), traceKey{}, "x")
	m2 := m.WithContext(ctx)
	if m2.Context() != ctx || m.Context() != context.Background() {
		t.Error("WithContext did not copy")
	}
	if out := m2.WithValue([]byte("w")); out.Context() != ctx {
		t.Error("WithValue dropped the context")
	}
}
