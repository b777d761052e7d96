package sluiceotel_test

import (
	"context"
	"syscall"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/internal/testutil"
	"github.com/sluicehq/sluice/llmtest"
	"github.com/sluicehq/sluice/openai"
	sluiceotel "github.com/sluicehq/sluice/otel"
)

// discard is a sink and dead-letter writer that keeps nothing.
type discard struct{}

func (discard) Write(context.Context, []*sluice.Message) error              { return nil }
func (discard) WriteDeadLetters(context.Context, []sluice.DeadLetter) error { return nil }

// sliceSource hands out messages built before the timer starts, each with
// a producer's traceparent, and acks by doing nothing.
type sliceSource struct {
	msgs []*sluice.Message
	next int
}

func newSliceSource(n int) *sliceSource {
	s := &sliceSource{msgs: make([]*sluice.Message, n)}
	value := []byte(`{"id":1,"text":"a small event"}`)
	hs := []sluice.Header{{Key: "traceparent", Value: []byte(traceparent)}}
	for i := range s.msgs {
		s.msgs[i] = &sluice.Message{Value: value, Headers: hs, Origin: sluice.Origin{Topic: "in", Offset: int64(i)}}
	}
	return s
}

func (s *sliceSource) Fetch(_ context.Context, max int) ([]*sluice.Message, error) {
	if s.next == len(s.msgs) {
		return nil, sluice.ErrSourceClosed
	}
	end := min(s.next+max, len(s.msgs))
	out := s.msgs[s.next:end]
	s.next = end
	return out, nil
}

func (s *sliceSource) Ack(context.Context, []*sluice.Message) error { return nil }
func (s *sliceSource) Close() error                                 { return nil }

// tracing is one way of running a pipeline: without tracing, or with a
// Tracer over a provider.
type tracing struct {
	name string
	tp   func() trace.TracerProvider // nil: no tracer at all
}

var tracings = []tracing{
	{name: "off"},
	{name: "noop", tp: func() trace.TracerProvider { return noop.NewTracerProvider() }},
	{name: "unsampled", tp: func() trace.TracerProvider {
		return sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.NeverSample()))
	}},
	{name: "recording", tp: func() trace.TracerProvider {
		return sdktrace.NewTracerProvider(sdktrace.WithBatcher(tracetest.NewNoopExporter()), sdktrace.WithSampler(sdktrace.AlwaysSample()))
	}},
}

// BenchmarkTracing runs b.N events through a pipeline without tracing and
// with a Tracer over the no-op provider, an SDK provider that samples
// nothing, and one that records every span (exported to nowhere). ns/op
// is per event.
//
//   - runner: a no-op enricher, so that the runner's own cost, and the
//     tracer's share of it, is all there is (the worst case);
//   - model: the openai enricher against the fake model in-process, at
//     concurrency 8, as a real pipeline runs.
func BenchmarkTracing(b *testing.B) {
	noopEnr := sluice.EnricherFunc(func(_ context.Context, in *sluice.Message) (*sluice.Message, error) {
		return in.WithValue(in.Value), nil
	})
	model := llmtest.NewServer()
	defer model.Close()
	for _, tc := range tracings {
		b.Run("runner/"+tc.name, func(b *testing.B) {
			opts, _ := tracerOpts(b, tc)
			benchPipeline(b, newSliceSource(b.N), noopEnr, append(opts, sluice.WithConcurrency(1))...)
		})
	}
	for _, tc := range tracings {
		b.Run("model/"+tc.name, func(b *testing.B) {
			opts, tr := tracerOpts(b, tc)
			eopts := []openai.Option{openai.WithBaseURL(model.BaseURL()), openai.WithLogger(testutil.Quiet())}
			if tr != nil {
				eopts = append(eopts, openai.WithCallObserver(tr))
			}
			enr, err := openai.New("gpt-test", openai.Sentiment(), []string{"text"}, eopts...)
			if err != nil {
				b.Fatal(err)
			}
			defer enr.Close()
			benchPipeline(b, newSliceSource(b.N), enr, append(opts, sluice.WithConcurrency(8))...)
		})
	}
}

func tracerOpts(b *testing.B, tc tracing) ([]sluice.Option, *sluiceotel.Tracer) {
	if tc.tp == nil {
		return nil, nil
	}
	tp := tc.tp()
	if s, ok := tp.(*sdktrace.TracerProvider); ok {
		b.Cleanup(func() { _ = s.Shutdown(context.Background()) })
	}
	tr, err := sluiceotel.New(sluiceotel.WithTracerProvider(tp))
	if err != nil {
		b.Fatal(err)
	}
	return []sluice.Option{sluice.WithObserver(tr)}, tr
}

func benchPipeline(b *testing.B, src sluice.Source, enr sluice.Enricher, opts ...sluice.Option) {
	b.Helper()
	p, err := sluice.New(src, enr, discard{}, append(opts, sluice.WithLogger(testutil.Quiet()))...)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime()
	start := time.Now()
	if err := p.Run(context.Background()); err != nil {
		b.Fatal(err)
	}
	elapsed := time.Since(start)
	cpu := cpuTime() - cpu0
	b.StopTimer()
	if st := p.Stats(); st.Enriched != uint64(b.N) {
		b.Fatalf("enriched %d of %d (dead-lettered %d)", st.Enriched, b.N, st.DeadLettered)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/event")
}

// cpuTime is the CPU time the process has used, user and system. On a
// machine shared with other work it measures the pipeline's cost more
// steadily than the wall clock does.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkHooks is what tracing adds to one event, alone: the calls the
// pipeline and the enricher make to the Tracer for a traced event with one
// model call (received, model call started and ended, written, finished).
// ns/op is per event; the runner's own cost per event is in
// BenchmarkTracing's runner/off. For an event the Tracer does not follow
// (no-op provider, not sampled) the pipeline makes only the first call,
// and without tracing none.
func BenchmarkHooks(b *testing.B) {
	for _, tc := range tracings[1:] {
		b.Run(tc.name, func(b *testing.B) {
			_, tr := tracerOpts(b, tc)
			m := &sluice.Message{Value: []byte(`{"id":1,"text":"a small event"}`),
				Headers: []sluice.Header{{Key: "traceparent", Value: []byte(traceparent)}},
				Origin:  sluice.Origin{Topic: "in", Offset: 1}}
			call := &openai.Call{Model: "gpt-test", Task: "sentiment", Events: []*sluice.Message{m}}
			res := &openai.CallResult{StatusCode: 200, UsageKnown: true, Usage: openai.Usage{PromptTokens: 100, CompletionTokens: 10}}
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				ectx := tr.EventReceived(ctx, m)
				cctx := tr.CallStarted(ectx, call)
				tr.CallEnded(cctx, call, res)
				tr.EventWriting(ectx, m, m, m.Headers, false, "")
				tr.EventFinished(ectx, m, true, nil)
			}
		})
	}
}
