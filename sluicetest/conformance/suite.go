package conformance

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice"
)

// Run runs the conformance suite against the adapter that h describes, as
// one subtest per behaviour (see the package documentation for the list).
// Run the subtests selectively with go test -run, for example
// -run 'TestConformance/DeadLetters'. Run does not call t.Parallel, and the
// subtests run one after another.
func Run(t *testing.T, h Harness) {
	t.Helper()
	if m := h.missing(); len(m) > 0 {
		t.Fatalf("conformance: harness %q lacks required fields: %s", h.Name, strings.Join(m, ", "))
	}
	h = h.withDefaults()
	for _, st := range subtests {
		t.Run(st.name, func(t *testing.T) { st.run(newEnv(t, h)) })
	}
}

var subtests = []struct {
	name string
	run  func(*env)
}{
	{"PublishConsume", testPublishConsume},
	{"OutOfOrderAck", testOutOfOrderAck},
	{"CrashRestart", testCrashRestart},
	{"Redelivery", testRedelivery},
	{"GroupSplit", testGroupSplit},
	{"PauseResume", testPauseResume},
	{"DeadLetters", testDeadLetters},
	{"Lag", testLag},
	{"CloseWhileBusy", testCloseWhileBusy},
	{"ServerRestart", testServerRestart},
}

// topics makes an input topic with the given partitions plus an output and
// a dead-letter topic, and returns them with a fresh group name.
func (e *env) topics(partitions int) (in, out, dlq, group string) {
	e.t.Helper()
	in = e.h.NewTopic(e.t, partitions)
	out = e.h.NewTopic(e.t, 1)
	dlq = e.h.NewTopic(e.t, 1)
	if in == out || in == dlq || out == dlq {
		e.t.Fatalf("NewTopic returned the same name twice: %q %q %q", in, out, dlq)
	}
	return in, out, dlq, "conformance-" + in
}

// ready waits for a source that implements sluice.Readier to be ready.
func (e *env) ready(src sluice.Source) {
	e.t.Helper()
	r, ok := src.(sluice.Readier)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), e.h.Timeout)
	defer cancel()
	tick := time.NewTicker(e.h.PollInterval)
	defer tick.Stop()
	for {
		err := r.Ready(ctx)
		if err == nil {
			return
		}
		select {
		case <-ctx.Done():
			e.t.Fatalf("source not ready after %s: %v", e.h.Timeout, err)
		case <-tick.C:
		}
	}
}

// recorder enriches every event at once and remembers what the source
// delivered, by origin.
type recorder struct {
	mu   sync.Mutex
	seen map[string][]*sluice.Message
}

func newRecorder() *recorder { return &recorder{seen: map[string][]*sluice.Message{}} }

func (r *recorder) Enrich(_ context.Context, in *sluice.Message) (*sluice.Message, error) {
	c := *in
	c.Headers = append([]sluice.Header(nil), in.Headers...)
	r.mu.Lock()
	k := originKey(in.Origin)
	r.seen[k] = append(r.seen[k], &c)
	r.mu.Unlock()
	return enrich(in), nil
}

func (r *recorder) all() map[string][]*sluice.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := make(map[string][]*sluice.Message, len(r.seen))
	for k, v := range r.seen {
		m[k] = v
	}
	return m
}

// testPublishConsume: every event is enriched once and written with its
// key, headers and origin headers; the source hands out what was published
// and honours Close.
func testPublishConsume(e *env) {
	in, out, dlq, group := e.topics(3)
	inp := e.publish(in, makeEvents("pc", e.h.Events), nil)
	sink := e.sink(out, dlq)
	src, _ := e.source(in, group, "member-1")
	e.ready(src)
	rec := newRecorder()
	r := e.start("main", src, rec, sink)
	outs, dlqs := e.waitAll(inp, out, dlq, expect{}, e.h.Timeout, r)
	e.stopOK(r)
	e.verify(inp, outs, dlqs, expect{})

	bad := 0
	for k, ms := range rec.all() {
		want := inp.byOrigin[k]
		if want == nil {
			e.t.Errorf("the source delivered a message with origin %s, which was never published", k)
			continue
		}
		for _, m := range ms {
			var problems []string
			if string(m.Key) != string(want.Key) {
				problems = append(problems, fmt.Sprintf("key %q, want %q", m.Key, want.Key))
			}
			if string(m.Value) != string(want.Value) {
				problems = append(problems, fmt.Sprintf("value %q, want %q", m.Value, want.Value))
			}
			if h := missingHeaders(want.Headers, m.Headers); h != "" {
				problems = append(problems, "no header "+h)
			}
			if m.Origin.ID != "" && m.Origin.Offset != -1 {
				problems = append(problems, fmt.Sprintf("Origin.Offset %d with an ID, want -1", m.Origin.Offset))
			}
			if m.Deliveries < 0 {
				problems = append(problems, fmt.Sprintf("Deliveries %d", m.Deliveries))
			}
			if len(problems) > 0 {
				if bad++; bad <= 10 {
					e.t.Errorf("the source delivered %s with %s", k, strings.Join(problems, "; "))
				}
			}
		}
	}
	e.closeSource(src)
	_ = src.Close() // closing twice must not panic
	e.fetchClosed(src)
}

// testOutOfOrderAck: the first events are held while later ones finish,
// then some of the held ones finish last and the rest never do; after a
// restart of the same member nothing is lost. This catches adapters that
// commit the highest finished offset instead of the finished prefix.
func testOutOfOrderAck(e *env) {
	in, out, dlq, group := e.topics(3)
	n := e.h.Events
	inp := e.publish(in, makeEvents("ooo", n), nil)
	sink := e.sink(out, dlq)

	const hold = 4 // below the pipeline's concurrency of 8
	src1, _ := e.source(in, group, "member-1")
	enr := newHoldEnricher(hold)
	r1 := e.start("first", src1, enr, sink)
	e.waitChan(enr.allHeld, "the first events to reach the enricher", r1)
	e.waitCount(inp, out, n-hold, r1)
	// The two later-held events finish last, in reverse order; the other
	// two never finish in this run.
	close(enr.release[3])
	close(enr.release[1])
	e.waitCount(inp, out, n-hold+2, r1)
	if _, err := e.stop(r1); err != nil {
		e.t.Errorf("pipeline first: Run returned %v, want nil", err)
	}
	e.closeSource(src1)
	held := enr.heldOrigins()
	e.t.Logf("held back %v; %s and %s never finished before the restart", held, held[0], held[2])

	src2, _ := e.source(in, group, "member-1")
	r2 := e.start("restarted", src2, plainEnricher(), sink)
	outs, dlqs := e.waitAll(inp, out, dlq, expect{}, e.h.Timeout, r2)
	e.stopOK(r2)
	e.closeSource(src2)
	e.verify(inp, outs, dlqs, expect{})
}

// crashRun runs a pipeline that enriches half the events and blocks on the
// rest, and returns once the blocked ones fill the workers.
func (e *env) crashRun(inp *inputs, src sluice.Source, sink sluice.Sink, out string) (*gateEnricher, *runner) {
	const conc = 8
	pass := len(inp.order) / 2
	enr := newGateEnricher(pass, conc)
	r := e.start("first", src, enr, sink, sluice.WithConcurrency(conc))
	e.waitChan(enr.full, "enrichment calls to block", r)
	e.waitCount(inp, out, pass, r)
	return enr, r
}

// testCrashRestart: the source is closed under a pipeline whose enrichers
// are blocked, and the pipeline stops at once without draining (a fatal
// error); a new source for the same member finishes every event.
func testCrashRestart(e *env) {
	in, out, dlq, group := e.topics(2)
	inp := e.publish(in, makeEvents("crash", e.h.Events), nil)
	sink := e.sink(out, dlq)
	src1, _ := e.source(in, group, "member-1")
	enr, r1 := e.crashRun(inp, src1, sink, out)

	e.closeSource(src1) // the process dies: the source goes first
	close(enr.crash)    // and the work in flight never finishes
	if _, err := e.stop(r1); err != nil && !errors.Is(err, errCrash) {
		e.t.Errorf("pipeline first: Run returned %v, want nil or the simulated crash", err)
	}

	src2, _ := e.source(in, group, "member-1")
	r2 := e.start("after-crash", src2, plainEnricher(), sink)
	outs, dlqs := e.waitAll(inp, out, dlq, expect{}, e.h.Timeout, r2)
	e.stopOK(r2)
	e.closeSource(src2)
	e.verify(inp, outs, dlqs, expect{})
}

// testRedelivery: a pipeline stops with events fetched but unfinished (the
// drain timeout cuts them off, so they stay unacked); another member of the
// same group gets them, with a delivery count above 1 when the source
// counts deliveries.
func testRedelivery(e *env) {
	in, out, dlq, group := e.topics(2)
	inp := e.publish(in, makeEvents("redeliver", e.h.Events), nil)
	sink := e.sink(out, dlq)
	src1, _ := e.source(in, group, "member-1")
	enr, r1 := e.crashRun(inp, src1, sink, out)
	if _, err := e.stop(r1); err != nil {
		e.t.Errorf("pipeline first: Run returned %v, want nil", err)
	}
	e.closeSource(src1)
	firstRun := enr.seenOrigins()
	done := inp.tally(e.h.ReadAll(e.t, out), nil).out

	src2, _ := e.source(in, group, "member-2")
	rec := newRecorder()
	r2 := e.start("other-member", src2, rec, sink)
	outs, dlqs := e.waitAll(inp, out, dlq, expect{}, e.h.Timeout+e.h.RedeliveryDelay, r2)
	e.stopOK(r2)
	e.closeSource(src2)
	e.verify(inp, outs, dlqs, expect{})

	redelivered, counted, again := 0, 0, 0
	for k, ms := range rec.all() {
		if firstRun[k] == 0 {
			continue
		}
		if done[k] > 0 {
			again++ // finished before, delivered again: allowed
			continue
		}
		redelivered++
		for _, m := range ms {
			if m.Deliveries == 0 {
				continue
			}
			counted++
			if m.Deliveries < 2 {
				e.t.Errorf("%s was delivered before but came back with Deliveries %d, want at least 2 (or 0 if the source cannot count)", k, m.Deliveries)
			}
		}
	}
	e.t.Logf("%d unfinished events redelivered to the other member (%d with a delivery count); %d finished events delivered again",
		redelivered, counted, again)
	if redelivered == 0 {
		e.t.Errorf("no event left unfinished by the first member reached the second one")
	}
}

// testGroupSplit: two pipelines in one group with different members share
// the work; together they enrich every event, and each gets some.
func testGroupSplit(e *env) {
	in, out, dlq, group := e.topics(4)
	both := make(chan struct{})
	var once sync.Once
	var got [2]atomic.Int64
	member := func(i int) sluice.Enricher {
		return sluice.EnricherFunc(func(ctx context.Context, m *sluice.Message) (*sluice.Message, error) {
			if got[i].Add(1) == 1 && got[1-i].Load() > 0 {
				once.Do(func() { close(both) })
			}
			// Hold work until both members have some, so that one
			// fast member cannot take it all.
			select {
			case <-both:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			return enrich(m), nil
		})
	}
	var runners []*runner
	var srcs []sluice.Source
	for i := range 2 {
		src, _ := e.source(in, group, "member-"+strconv.Itoa(i+1))
		srcs = append(srcs, src)
		runners = append(runners, e.start("member-"+strconv.Itoa(i+1), src, member(i), e.sink(out, dlq),
			sluice.WithConcurrency(4), sluice.WithMaxInFlight(16)))
	}
	for _, s := range srcs {
		e.ready(s)
	}
	inp := e.publish(in, makeEvents("split", e.h.Events), nil)

	timer := time.NewTimer(e.h.Timeout)
	select {
	case <-both:
	case <-timer.C:
		e.t.Errorf("after %s, member 1 had %d events and member 2 had %d: the group did not share the work", e.h.Timeout, got[0].Load(), got[1].Load())
		once.Do(func() { close(both) })
	}
	timer.Stop()
	outs, dlqs := e.waitAll(inp, out, dlq, expect{}, e.h.Timeout, runners...)
	for _, r := range runners {
		e.stopOK(r)
	}
	for _, s := range srcs {
		e.closeSource(s)
	}
	e.t.Logf("member 1 enriched %d events, member 2 %d", got[0].Load(), got[1].Load())
	e.verify(inp, outs, dlqs, expect{})
}

// testPauseResume: a rate-limited enricher makes the pipeline pause and
// resume the source (twice), and every event still completes.
func testPauseResume(e *env) {
	in, out, dlq, group := e.topics(2)
	n := e.h.Events
	inp := e.publish(in, makeEvents("pause", n), nil)
	sink := e.sink(out, dlq)
	src, acker := e.source(in, group, "member-1")
	p, ok := src.(sluice.Pauser)
	if !ok {
		e.closeSource(src)
		e.t.Skipf("source %T does not implement sluice.Pauser", src)
	}
	wrapped := &pauseRecorder{Source: src, inner: p}
	var calls atomic.Int64
	enr := sluice.EnricherFunc(func(_ context.Context, m *sluice.Message) (*sluice.Message, error) {
		if c := calls.Add(1); c == 1 || c == int64(n/2) {
			return nil, &sluice.RateLimitError{RetryAfter: 100 * time.Millisecond, Err: errors.New("conformance: simulated 429")}
		}
		return enrich(m), nil
	})
	r := e.start("paused", wrapped, enr, sink, sluice.WithAcker(acker),
		sluice.WithConcurrency(4), sluice.WithMaxInFlight(16))
	outs, dlqs := e.waitAll(inp, out, dlq, expect{}, e.h.Timeout, r)
	e.stopOK(r)
	e.closeSource(src)
	e.verify(inp, outs, dlqs, expect{})

	log := wrapped.log()
	e.t.Logf("pipeline called %v", log)
	if len(log) < 2 {
		e.t.Fatalf("the pipeline called Pause/Resume %d times, want a pause and a resume", len(log))
	}
	for i, c := range log {
		if want := []string{"pause", "resume"}[i%2]; c != want {
			e.t.Errorf("call %d was %s, want %s: Pause and Resume must alternate", i, c, want)
		}
	}
	if log[len(log)-1] != "resume" {
		e.t.Errorf("the last call was %s, want resume", log[len(log)-1])
	}
	if st := r.p.Stats(); st.RateLimitPauses < 1 {
		e.t.Errorf("Stats().RateLimitPauses = %d, want at least 1", st.RateLimitPauses)
	}
}

// testDeadLetters: events the enricher rejects for good, and events whose
// retries run out, become dead letters carrying the original bytes, key and
// headers, the failure headers and the origin headers.
func testDeadLetters(e *env) {
	in, out, dlq, group := e.topics(2)
	n := max(e.h.Events/4, 30)
	events := makeEvents("dlq", n)
	for i, m := range events {
		switch i % 4 {
		case 0:
			m.Value = []byte{0x00, 0xff, 0xfe, '\n', 'b', 'i', 'n', 0x80, byte(i)}
		case 1:
			m.Value = []byte{}
		case 2:
			m.Value = []byte("not json, \"quoted\" \u2603 " + strconv.Itoa(i))
		}
	}
	inp := e.publish(in, events, nil)
	sink := e.sink(out, dlq)
	src, _ := e.source(in, group, "member-1")

	idx := func(m *sluice.Message) (string, int) {
		id, _ := m.Header(HeaderEventID)
		i, _ := strconv.Atoi(string(id[strings.LastIndexByte(string(id), '-')+1:]))
		return string(id), i
	}
	enr := sluice.EnricherFunc(func(_ context.Context, m *sluice.Message) (*sluice.Message, error) {
		id, i := idx(m)
		switch i % 3 {
		case 0:
			return nil, sluice.Permanent(fmt.Errorf("conformance: rejected %s", id))
		case 1:
			return nil, fmt.Errorf("conformance: flaky model for %s", id)
		}
		return enrich(m), nil
	})
	x := expect{
		dest: func(m *sluice.Message) dest {
			if _, i := idx(m); i%3 == 2 {
				return toOutput
			}
			return toDLQ
		},
		attempts: func(m *sluice.Message) int {
			if _, i := idx(m); i%3 == 0 {
				return 1
			}
			return 2
		},
		reason: func(m *sluice.Message) string {
			id, i := idx(m)
			if i%3 == 0 {
				return "conformance: rejected " + id
			}
			return "conformance: flaky model for " + id
		},
	}
	r := e.start("dlq", src, enr, sink, sluice.WithRetries(1))
	outs, dlqs := e.waitAll(inp, out, dlq, x, e.h.Timeout, r)
	e.stopOK(r)
	e.closeSource(src)
	e.verify(inp, outs, dlqs, x)
	if st := r.p.Stats(); st.DeadLettered == 0 {
		e.t.Errorf("Stats().DeadLettered = 0")
	}
}

// testLag: a source that reports lag reports 0 once every event is done,
// and its total is the sum of its parts.
func testLag(e *env) {
	in, out, dlq, group := e.topics(3)
	n := e.h.Events / 2
	inp := e.publish(in, makeEvents("lag", n), nil)
	sink := e.sink(out, dlq)
	src, _ := e.source(in, group, "member-1")
	lr, ok := src.(sluice.LagReporter)
	if !ok {
		e.closeSource(src)
		e.t.Skipf("source %T does not implement sluice.LagReporter", src)
	}
	ctx, cancel := context.WithTimeout(context.Background(), e.h.Timeout)
	defer cancel()
	if l, err := lr.Lag(ctx); err != nil {
		e.t.Logf("lag before consuming: %v", err)
	} else {
		e.t.Logf("lag before consuming: %d (%v)", l.Total, l.ByPartition)
	}
	r := e.start("lag", src, plainEnricher(), sink)
	outs, dlqs := e.waitAll(inp, out, dlq, expect{}, e.h.Timeout, r)

	tick := time.NewTicker(e.h.PollInterval)
	defer tick.Stop()
	var last sluice.Lag
	var lastErr error
	inconsistent := false
	for {
		last, lastErr = lr.Lag(ctx)
		if lastErr == nil {
			sum, known := int64(0), true
			for _, v := range last.ByPartition {
				if v < 0 {
					known = false
				}
				sum += v
			}
			if known && last.Total >= 0 && sum != last.Total && !inconsistent {
				inconsistent = true
				e.t.Errorf("Lag.Total %d is not the sum %d of Lag.ByPartition %v", last.Total, sum, last.ByPartition)
			}
			if last.Total == 0 && known {
				break
			}
		}
		if ctx.Err() != nil || r.stopped() {
			e.t.Errorf("lag did not reach 0 after every event was done: last %d (%v), err %v", last.Total, last.ByPartition, lastErr)
			break
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
		}
	}
	e.stopOK(r)
	e.closeSource(src)
	e.verify(inp, outs, dlqs, expect{})
}

// testCloseWhileBusy: Run's context is cancelled while every worker is
// blocked in the enricher; Run returns after the drain timeout, no pipeline
// or source goroutine outlives it, and a fresh pipeline finishes every
// event.
func testCloseWhileBusy(e *env) {
	in, out, dlq, group := e.topics(2)
	n := e.h.Events
	inp := e.publish(in, makeEvents("busy", n), nil)
	sink := e.sink(out, dlq)

	before := goroutines()
	src1, _ := e.source(in, group, "member-1")
	const conc = 4
	enr := newGateEnricher(n/4, conc)
	r1 := e.start("busy", src1, enr, sink, sluice.WithConcurrency(conc))
	e.waitChan(enr.full, "every worker to block in the enricher", r1)
	took, err := e.stop(r1)
	if err != nil {
		e.t.Errorf("pipeline busy: Run returned %v after cancellation, want nil", err)
	}
	e.t.Logf("Run returned %s after cancellation (drain timeout %s)", took.Round(time.Millisecond), e.h.DrainTimeout)

	pipelineFrames := []string{"github.com/sluicehq/sluice.(*run)", "github.com/sluicehq/sluice.(*Pipeline)", "sluicetest/conformance.(*gateEnricher)"}
	pipelineLeft := func(id int64, now map[int64]string) bool { return containsAny(now[id], pipelineFrames) }
	if left := e.leaked(before, 5*time.Second, pipelineLeft); len(left) > 0 {
		e.t.Errorf("%s of the pipeline still running after Run returned:\n%s", plural(len(left), "goroutine"), strings.Join(head(left, 5), "\n\n"))
	}
	e.closeSource(src1)
	grace := min(e.h.Timeout, 10*time.Second)
	self := currentGoroutine()
	sourceLeft := func(id int64, now map[int64]string) bool {
		return !containsAny(now[id], e.h.IgnoreGoroutines) && !ownedByOlder(id, now, before, self)
	}
	if left := e.leaked(before, grace, sourceLeft); len(left) > 0 {
		e.t.Errorf("%s started while the source was open still running %s after it was closed (list expected ones in Harness.IgnoreGoroutines):\n%s",
			plural(len(left), "goroutine"), grace, strings.Join(head(left, 5), "\n\n"))
	}

	src2, _ := e.source(in, group, "member-1")
	r2 := e.start("fresh", src2, plainEnricher(), sink)
	outs, dlqs := e.waitAll(inp, out, dlq, expect{}, e.h.Timeout, r2)
	e.stopOK(r2)
	e.closeSource(src2)
	e.verify(inp, outs, dlqs, expect{})
}

// testServerRestart: the broker restarts while a pipeline runs with events
// in flight; the pipeline carries on, and every event published before and
// after the restart is enriched.
func testServerRestart(e *env) {
	if e.h.RestartServer == nil {
		e.t.Skip("Harness.RestartServer is nil")
	}
	in, out, dlq, group := e.topics(2)
	half := e.h.Events / 2
	inp := e.publish(in, makeEvents("restart-a", half), nil)
	sink := e.sink(out, dlq)
	src, _ := e.source(in, group, "member-1")
	const hold = 3
	enr := newHoldEnricher(hold)
	r := e.start("restart", src, enr, sink)
	e.waitChan(enr.allHeld, "the first events to reach the enricher", r)
	e.waitCount(inp, out, half-hold, r)

	begin := time.Now()
	e.h.RestartServer(e.t)
	e.t.Logf("server restarted in %s", time.Since(begin).Round(time.Millisecond))
	for _, c := range enr.release {
		close(c) // these finish, are written and acked after the restart
	}
	e.publish(in, makeEvents("restart-b", e.h.Events-half), inp)
	outs, dlqs := e.waitAll(inp, out, dlq, expect{}, 2*e.h.Timeout, r)
	e.stopOK(r)
	e.closeSource(src)
	e.verify(inp, outs, dlqs, expect{})
}
