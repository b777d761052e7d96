package sluiceotel_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/sluicehq/sluice"
	sluiceotel "github.com/sluicehq/sluice/otel"
	"github.com/sluicehq/sluice/sluicetest"
)

// A pipeline traced with a Tracer: the event's producer set traceparent,
// and the enriched output continues the same trace.
func Example() {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	defer tp.Shutdown(context.Background())

	tr, err := sluiceotel.New(sluiceotel.WithTracerProvider(tp), sluiceotel.WithConsumerGroup("enrich"),
		sluiceotel.WithDestinations("reviews.enriched", "reviews.dlq"))
	if err != nil {
		panic(err)
	}
	src := sluicetest.NewSource("reviews", 1)
	src.Publish(nil, []byte(`{"text":"great"}`), sluice.Header{
		Key: "traceparent", Value: []byte("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
	})
	upper := sluice.EnricherFunc(func(ctx context.Context, in *sluice.Message) (*sluice.Message, error) {
		// With openai.WithCallObserver(tr), the model call would be a
		// span under the event's, found in ctx.
		return in.WithValue([]byte(strings.ToUpper(string(in.Value)))), nil
	})
	sink := sluicetest.NewSink()
	p, err := sluice.New(src, upper, sink, sluice.WithObserver(tr), sluice.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	if err := sink.WaitFor(context.Background(), 1); err != nil {
		panic(err)
	}
	cancel()
	if err := <-done; err != nil {
		panic(err)
	}

	out := sink.Messages()[0]
	tp2, _ := out.Header("traceparent")
	fmt.Println("output trace:", strings.Split(string(tp2), "-")[1])
	for _, s := range exp.GetSpans() {
		fmt.Println(s.Name, s.SpanKind, s.SpanContext.TraceID())
	}
	// Output:
	// output trace: 4bf92f3577b34da6a3ce929d0e0e4736
	// send reviews.enriched producer 4bf92f3577b34da6a3ce929d0e0e4736
	// process reviews consumer 4bf92f3577b34da6a3ce929d0e0e4736
}
