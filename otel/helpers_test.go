package sluiceotel_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/internal/testutil"
	"github.com/sluicehq/sluice/llmtest"
	"github.com/sluicehq/sluice/openai"
	sluiceotel "github.com/sluicehq/sluice/otel"
	"github.com/sluicehq/sluice/sluicetest"
)

// The producer's trace context that the events carry.
const (
	producerTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	producerSpan  = "00f067aa0ba902b7"
	traceparent   = "00-" + producerTrace + "-" + producerSpan + "-01"
)

// run is one traced pipeline over the in-memory source and sink, with the
// openai enricher calling a fake model that first answers with faults.
type run struct {
	spans   tracetest.SpanStubs
	sink    *sluicetest.Sink
	origins []sluice.Origin
}

type setup struct {
	events   int
	batch    int
	faults   []llmtest.Fault
	retries  int
	noParent bool            // events without a traceparent
	headers  []sluice.Header // the events' headers instead of the producer's
	// sink, when set, wraps the in-memory sink for outputs; dead letters
	// still go to the in-memory sink.
	sink func(*sluicetest.Sink) sluice.Sink
}

func runTraced(t *testing.T, s setup) *run {
	t.Helper()
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	tr, err := sluiceotel.New(sluiceotel.WithTracerProvider(tp), sluiceotel.WithConsumerGroup("enrichers"),
		sluiceotel.WithDestinations("reviews.enriched", "reviews.dlq"))
	if err != nil {
		t.Fatal(err)
	}
	h, err := llmtest.NewHandler()
	if err != nil {
		t.Fatal(err)
	}
	h.Inject(s.faults...)
	// With batches, the first call (the blocker's) is held until every
	// event is queued, so that the next call takes them all at once.
	held, release := make(chan struct{}), make(chan struct{})
	var first atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if s.batch > 1 && strings.HasSuffix(req.URL.Path, "/chat/completions") && first.CompareAndSwap(false, true) {
			close(held)
			<-release
		}
		h.ServeHTTP(w, req)
	}))
	t.Cleanup(func() { h.Close(); srv.Close() })
	enr, err := openai.New("gpt-test", openai.Sentiment(), []string{"text"},
		openai.WithBaseURL(srv.URL+"/v1"), openai.WithCallObserver(tr), openai.WithLogger(testutil.Quiet()))
	if err != nil {
		t.Fatal(err)
	}
	src := sluicetest.NewSource("reviews", 1)
	r := &run{sink: sluicetest.NewSink()}
	publish := func() {
		for i := range s.events {
			var hs []sluice.Header
			if s.headers != nil {
				hs = append(hs, s.headers...)
			} else if !s.noParent {
				hs = append(hs, sluice.Header{Key: "traceparent", Value: []byte(traceparent)}, sluice.Header{Key: "tracestate", Value: []byte("vendor=1")})
			}
			hs = append(hs, sluice.Header{Key: "app", Value: []byte("x")})
			r.origins = append(r.origins, src.Publish(nil, fmt.Appendf(nil, `{"id":%d,"text":"review %d is great"}`, i, i), hs...))
		}
	}
	total := s.events
	if s.batch > 1 {
		src.Publish(nil, []byte(`{"id":-1,"text":"the blocker"}`))
		total++
	} else {
		publish()
	}
	batch := max(s.batch, 1)
	var sink sluice.Sink = r.sink
	if s.sink != nil {
		sink = s.sink(r.sink)
	}
	p, err := sluice.New(src, enr, sink,
		sluice.WithDeadLetter(r.sink),
		sluice.WithObserver(tr),
		sluice.WithConcurrency(1),
		sluice.WithEnrichBatch(batch),
		sluice.WithRetries(s.retries),
		sluice.WithBackoff(time.Millisecond, 2*time.Millisecond),
		sluice.WithPauseJitter(0),
		sluice.WithLogger(testutil.Quiet()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	if s.batch > 1 {
		<-held
		publish()
		testutil.WaitFor(t, 10*time.Second, "every event queued", func() (bool, string) {
			st := p.Stats()
			return st.InFlight == int64(total), fmt.Sprintf("in flight %d of %d", st.InFlight, total)
		})
		close(release)
	}
	werr := r.sink.WaitFor(context.Background(), total)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if werr != nil {
		t.Fatal(werr)
	}
	// Run has returned: every event was retired, so every span has ended
	// and, with a syncer, been exported.
	r.spans = exp.GetSpans()
	return r
}

// named returns the spans called name.
func (r *run) named(name string) []tracetest.SpanStub {
	var out []tracetest.SpanStub
	for _, s := range r.spans {
		if s.Name == name {
			out = append(out, s)
		}
	}
	return out
}

// childrenOf returns the spans whose parent is p.
func (r *run) childrenOf(p tracetest.SpanStub) []tracetest.SpanStub {
	var out []tracetest.SpanStub
	for _, s := range r.spans {
		if s.Parent.SpanID() == p.SpanContext.SpanID() && s.Parent.TraceID() == p.SpanContext.TraceID() {
			out = append(out, s)
		}
	}
	return out
}

func attr(s tracetest.SpanStub, key attribute.Key) (attribute.Value, bool) {
	for _, a := range s.Attributes {
		if a.Key == key {
			return a.Value, true
		}
	}
	return attribute.Value{}, false
}

// wantAttrs checks that s has each attribute with the value given.
func wantAttrs(t *testing.T, s tracetest.SpanStub, want ...attribute.KeyValue) {
	t.Helper()
	for _, w := range want {
		got, ok := attr(s, w.Key)
		if !ok {
			t.Errorf("span %q has no attribute %s (has %v)", s.Name, w.Key, s.Attributes)
			continue
		}
		if got.String() != w.Value.String() {
			t.Errorf("span %q: %s = %s, want %s", s.Name, w.Key, got.String(), w.Value.String())
		}
	}
}

func hasEvent(s tracetest.SpanStub, name string) (sdktrace.Event, bool) {
	for _, e := range s.Events {
		if e.Name == name {
			return e, true
		}
	}
	return sdktrace.Event{}, false
}

func header(hs []sluice.Header, key string) string {
	for _, h := range hs {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

func countHeader(hs []sluice.Header, key string) int {
	n := 0
	for _, h := range hs {
		if h.Key == key {
			n++
		}
	}
	return n
}

// wantTraceparent checks that hs carries exactly one traceparent, of span
// s, and the producer's tracestate.
func wantTraceparent(t *testing.T, hs []sluice.Header, s tracetest.SpanStub) {
	t.Helper()
	want := fmt.Sprintf("00-%s-%s-01", s.SpanContext.TraceID(), s.SpanContext.SpanID())
	if n := countHeader(hs, "traceparent"); n != 1 {
		t.Errorf("%d traceparent headers, want 1: %v", n, hs)
	}
	if got := header(hs, "traceparent"); got != want {
		t.Errorf("traceparent = %q, want %q (span %q)", got, want, s.Name)
	}
}

func hasAttr(as []attribute.KeyValue, key attribute.Key, f float64) bool {
	for _, a := range as {
		if a.Key == key && a.Value.AsFloat64() == f {
			return true
		}
	}
	return false
}

func hasString(as []attribute.KeyValue, key attribute.Key, v string) bool {
	for _, a := range as {
		if a.Key == key && a.Value.AsString() == v {
			return true
		}
	}
	return false
}
