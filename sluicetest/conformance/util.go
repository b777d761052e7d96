package conformance

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice"
)

// env is what one subtest works with.
type env struct {
	t   *testing.T
	h   Harness
	log *slog.Logger
}

func newEnv(t *testing.T, h Harness) *env {
	l := h.Logger
	if l == nil {
		w := &testWriter{t: t}
		t.Cleanup(w.stop)
		l = slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	return &env{t: t, h: h, log: l.With("adapter", h.Name, "subtest", t.Name())}
}

// testWriter sends log lines to t.Log until the test ends.
type testWriter struct {
	mu   sync.Mutex
	t    *testing.T
	done bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func (w *testWriter) stop() {
	w.mu.Lock()
	w.done = true
	w.mu.Unlock()
}

// source opens a source and checks that it can ack.
func (e *env) source(topic, group, member string) (sluice.Source, sluice.Acker) {
	e.t.Helper()
	src := e.h.NewSource(e.t, topic, group, member)
	if src == nil {
		e.t.Fatalf("NewSource(%q, %q, %q) returned nil", topic, group, member)
	}
	a, ok := src.(sluice.Acker)
	if !ok {
		e.t.Fatalf("source %T does not implement sluice.Acker", src)
	}
	return src, a
}

// sink opens a sink and checks that it can write dead letters.
func (e *env) sink(out, dlq string) sluice.Sink {
	e.t.Helper()
	s := e.h.NewSink(e.t, out, dlq)
	if s == nil {
		e.t.Fatalf("NewSink(%q, %q) returned nil", out, dlq)
	}
	if _, ok := s.(sluice.DeadLetterWriter); !ok {
		e.t.Fatalf("sink %T does not implement sluice.DeadLetterWriter", s)
	}
	return s
}

// closeSource closes src and reports an error that is not about the
// source being closed already.
func (e *env) closeSource(src sluice.Source) {
	e.t.Helper()
	if err := src.Close(); err != nil && !errors.Is(err, sluice.ErrSourceClosed) {
		e.t.Errorf("closing source: %v", err)
	}
}

// runner is one pipeline running in the background.
type runner struct {
	name   string
	p      *sluice.Pipeline
	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

// start builds a pipeline with the suite's defaults plus opts and the
// harness's options, and runs it until stopped. A cleanup stops it if the
// subtest ends first.
func (e *env) start(name string, src sluice.Source, enr sluice.Enricher, sink sluice.Sink, opts ...sluice.Option) *runner {
	e.t.Helper()
	all := []sluice.Option{
		sluice.WithConcurrency(8),
		sluice.WithMaxDeliveries(0),
		sluice.WithBackoff(5*time.Millisecond, 100*time.Millisecond),
		sluice.WithDrainTimeout(e.h.DrainTimeout),
		sluice.WithLogger(e.log.With("pipeline", name)),
	}
	all = append(all, opts...)
	all = append(all, e.h.PipelineOptions...)
	p, err := sluice.New(src, enr, sink, all...)
	if err != nil {
		e.t.Fatalf("sluice.New for pipeline %s: %v", name, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &runner{name: name, p: p, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		r.err = p.Run(ctx)
	}()
	e.t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(e.stopBound()):
			e.t.Errorf("pipeline %s: Run did not return within %s of the subtest's end", name, e.stopBound())
		}
	})
	return r
}

// stopBound is how long Run may take to return after its context is
// cancelled: the drain timeout, then flushing, which has its own drain
// timeout, plus slack for a slow machine.
func (e *env) stopBound() time.Duration { return 2*e.h.DrainTimeout + 15*time.Second }

// stop cancels the pipeline and waits for Run to return. It returns how
// long the return took and Run's error.
func (e *env) stop(r *runner) (time.Duration, error) {
	e.t.Helper()
	begin := time.Now()
	r.cancel()
	select {
	case <-r.done:
		return time.Since(begin), r.err
	case <-time.After(e.stopBound()):
		e.t.Fatalf("pipeline %s: Run did not return within %s of its context being cancelled (drain timeout %s)", r.name, e.stopBound(), e.h.DrainTimeout)
		return 0, nil
	}
}

// stopOK stops the pipeline and requires Run to return nil.
func (e *env) stopOK(r *runner) {
	e.t.Helper()
	if _, err := e.stop(r); err != nil {
		e.t.Errorf("pipeline %s: Run returned %v, want nil after cancellation", r.name, err)
	}
}

// stopped reports whether Run has returned.
func (r *runner) stopped() bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

// enrichValue is what the suite's enrichers make of an event.
func enrichValue(v []byte) []byte {
	out := make([]byte, 0, len(enrichedPrefix)+len(v))
	out = append(out, enrichedPrefix...)
	return append(out, v...)
}

const enrichedPrefix = "enriched:"

func enrich(in *sluice.Message) *sluice.Message { return in.WithValue(enrichValue(in.Value)) }

// plainEnricher enriches every event at once and counts calls.
func plainEnricher() sluice.Enricher {
	return sluice.EnricherFunc(func(_ context.Context, in *sluice.Message) (*sluice.Message, error) {
		return enrich(in), nil
	})
}

// gateEnricher lets the first pass events through, then blocks every later
// one until its context is cancelled or crash is closed, in which case it
// returns a fatal error so that the pipeline stops at once without acking.
type gateEnricher struct {
	pass    int
	crash   chan struct{}
	mu      sync.Mutex
	calls   int
	blocked int
	full    chan struct{} // closed when `want` calls are blocked
	want    int
	seen    map[string]int // origin → calls
}

var errCrash = errors.New("conformance: simulated crash")

func newGateEnricher(pass, blockedWanted int) *gateEnricher {
	return &gateEnricher{pass: pass, crash: make(chan struct{}), full: make(chan struct{}), want: blockedWanted, seen: map[string]int{}}
}

func (g *gateEnricher) Enrich(ctx context.Context, in *sluice.Message) (*sluice.Message, error) {
	g.mu.Lock()
	n := g.calls
	g.calls++
	g.seen[in.Origin.String()]++
	if n < g.pass {
		g.mu.Unlock()
		return enrich(in), nil
	}
	g.blocked++
	if g.blocked == g.want {
		close(g.full)
	}
	g.mu.Unlock()
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-g.crash:
		return nil, sluice.Fatal(errCrash)
	}
}

func (g *gateEnricher) seenOrigins() map[string]int {
	g.mu.Lock()
	defer g.mu.Unlock()
	m := make(map[string]int, len(g.seen))
	for k, v := range g.seen {
		m[k] = v
	}
	return m
}

// holdEnricher holds the first len(release) events it sees until the
// matching release channel is closed or its context ends; later events
// pass at once, so they finish first.
type holdEnricher struct {
	release []chan struct{}
	mu      sync.Mutex
	calls   int
	held    []string
	allHeld chan struct{}
}

func newHoldEnricher(hold int) *holdEnricher {
	h := &holdEnricher{allHeld: make(chan struct{})}
	for range hold {
		h.release = append(h.release, make(chan struct{}))
	}
	return h
}

func (h *holdEnricher) Enrich(ctx context.Context, in *sluice.Message) (*sluice.Message, error) {
	h.mu.Lock()
	n := h.calls
	h.calls++
	if n >= len(h.release) {
		h.mu.Unlock()
		return enrich(in), nil
	}
	h.held = append(h.held, in.Origin.String())
	if len(h.held) == len(h.release) {
		close(h.allHeld)
	}
	h.mu.Unlock()
	select {
	case <-h.release[n]:
		return enrich(in), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (h *holdEnricher) heldOrigins() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.held...)
}

// waitChan waits for ch to close within the harness timeout.
func (e *env) waitChan(ch <-chan struct{}, what string, watch ...*runner) {
	e.t.Helper()
	timer := time.NewTimer(e.h.Timeout)
	defer timer.Stop()
	tick := time.NewTicker(e.h.PollInterval)
	defer tick.Stop()
	for {
		select {
		case <-ch:
			return
		case <-timer.C:
			e.t.Fatalf("timed out after %s waiting for %s", e.h.Timeout, what)
		case <-tick.C:
			for _, r := range watch {
				if r.stopped() {
					e.t.Fatalf("pipeline %s stopped (Run returned %v) while waiting for %s", r.name, r.err, what)
				}
			}
		}
	}
}

// goroutines returns the stacks of all goroutines by goroutine id.
func goroutines() map[int64]string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	out := map[int64]string{}
	for _, g := range bytes.Split(buf, []byte("\n\n")) {
		s := string(g)
		rest, ok := strings.CutPrefix(s, "goroutine ")
		if !ok {
			continue
		}
		idStr, _, _ := strings.Cut(rest, " ")
		id, err := strconv.ParseInt(idStr, 10, 64)
		if err != nil {
			continue
		}
		out[id] = s
	}
	return out
}

func currentGoroutine() int64 {
	buf := make([]byte, 64)
	buf = buf[:runtime.Stack(buf, false)]
	rest, _ := strings.CutPrefix(string(buf), "goroutine ")
	idStr, _, _ := strings.Cut(rest, " ")
	id, _ := strconv.ParseInt(idStr, 10, 64)
	return id
}

// leaked polls until no goroutine started after before that keep selects
// is left, or the deadline passes; it returns the stacks left.
func (e *env) leaked(before map[int64]string, within time.Duration, keep func(id int64, now map[int64]string) bool) []string {
	self := currentGoroutine()
	deadline := time.Now().Add(within)
	tick := time.NewTicker(e.h.PollInterval)
	defer tick.Stop()
	for {
		var left []string
		now := goroutines()
		for id, st := range now {
			if _, old := before[id]; old || id == self || !keep(id, now) {
				continue
			}
			left = append(left, st)
		}
		if len(left) == 0 || time.Now().After(deadline) {
			return left
		}
		<-tick.C
	}
}

// parentOf returns the id of the goroutine that created the goroutine
// whose stack is st, or -1 if the stack does not say.
func parentOf(st string) int64 {
	i := strings.LastIndex(st, "\ncreated by ")
	if i < 0 {
		return -1
	}
	line, _, _ := strings.Cut(st[i+1:], "\n")
	j := strings.LastIndex(line, " in goroutine ")
	if j < 0 {
		return -1
	}
	id, err := strconv.ParseInt(strings.TrimSpace(line[j+len(" in goroutine "):]), 10, 64)
	if err != nil {
		return -1
	}
	return id
}

// ownedByOlder reports whether goroutine id descends from a goroutine that
// existed before the snapshot other than self, the test's goroutine: such a
// goroutine belongs to something older than the source, like a sink's
// producer that starts workers when it first writes to a topic.
func ownedByOlder(id int64, now, before map[int64]string, self int64) bool {
	for range 64 {
		st, ok := now[id]
		if !ok {
			return false // an ancestor is gone; it cannot be told apart
		}
		p := parentOf(st)
		if p < 0 || p == self {
			return false
		}
		if _, old := before[p]; old {
			return true
		}
		id = p
	}
	return false
}

func containsAny(s string, subs []string) bool {
	for _, x := range subs {
		if x != "" && strings.Contains(s, x) {
			return true
		}
	}
	return false
}

// pauseRecorder wraps a source and records the pipeline's Pause and Resume
// calls before passing them on.
type pauseRecorder struct {
	sluice.Source
	inner sluice.Pauser
	mu    sync.Mutex
	calls []string
}

func (p *pauseRecorder) Pause() {
	p.mu.Lock()
	p.calls = append(p.calls, "pause")
	p.mu.Unlock()
	p.inner.Pause()
}

func (p *pauseRecorder) Resume() {
	p.mu.Lock()
	p.calls = append(p.calls, "resume")
	p.mu.Unlock()
	p.inner.Resume()
}

func (p *pauseRecorder) log() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.calls...)
}

// fetchClosed checks that Fetch on a closed source returns
// sluice.ErrSourceClosed promptly.
func (e *env) fetchClosed(src sluice.Source) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), e.h.Timeout)
	defer cancel()
	msgs, err := src.Fetch(ctx, 1)
	switch {
	case errors.Is(err, sluice.ErrSourceClosed):
	case err == nil:
		e.t.Errorf("Fetch after Close returned %d messages and no error, want sluice.ErrSourceClosed", len(msgs))
	case ctx.Err() != nil:
		e.t.Errorf("Fetch after Close blocked for %s, want sluice.ErrSourceClosed at once", e.h.Timeout)
	default:
		e.t.Errorf("Fetch after Close returned %v, want an error matching sluice.ErrSourceClosed", err)
	}
}

func plural(n int, what string) string {
	if n == 1 {
		return fmt.Sprintf("1 %s", what)
	}
	return fmt.Sprintf("%d %ss", n, what)
}
