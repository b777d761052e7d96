package sluice_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/sluicetest"
)

type requestIDKey struct{}

// printTracer follows each event: it gives the event a request id in its
// context, which the enricher sees, and puts it on the output record.
type printTracer struct{}

func (printTracer) EventDone(sluice.Outcome, time.Duration) {}
func (printTracer) RateLimited(time.Duration)               {}

func (printTracer) EventReceived(ctx context.Context, m *sluice.Message) context.Context {
	return context.WithValue(ctx, requestIDKey{}, "req-"+m.Origin.String())
}

func (printTracer) EventRetry(ctx context.Context, m *sluice.Message, attempt int, err error, backoff time.Duration) {
}

func (printTracer) EventPaused(ctx context.Context, m *sluice.Message, d time.Duration, err error) {}

func (printTracer) EventWriting(ctx context.Context, in, out *sluice.Message, hs []sluice.Header, dead bool, reason string) []sluice.Header {
	id := ctx.Value(requestIDKey{}).(string)
	// A new slice: hs belongs to the event and must not change.
	return append(hs[:len(hs):len(hs)], sluice.Header{Key: "request_id", Value: []byte(id)})
}

func (printTracer) EventFinished(ctx context.Context, m *sluice.Message, acked bool, err error) {
	fmt.Println("finished", ctx.Value(requestIDKey{}), "acked:", acked)
}

// An Observer that is also an EventTracer follows every event: the
// context it gives an event reaches the enricher, and it sets the headers
// of the event's output. The module github.com/sluicehq/sluice/otel is
// such a tracer, for OpenTelemetry.
func ExampleEventTracer() {
	src := sluicetest.NewSource("events", 1)
	src.Publish(nil, []byte(`hello`))
	src.End()
	enr := sluice.EnricherFunc(func(ctx context.Context, in *sluice.Message) (*sluice.Message, error) {
		fmt.Println("enriching under", ctx.Value(requestIDKey{}))
		return in.WithValue([]byte("HELLO")), nil
	})
	sink := sluicetest.NewSink()
	p, err := sluice.New(src, enr, sink, sluice.WithObserver(printTracer{}),
		sluice.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		panic(err)
	}
	if err := p.Run(context.Background()); err != nil {
		panic(err)
	}
	id, _ := sink.Messages()[0].Header("request_id")
	fmt.Println("output request_id:", string(id))
	// Output:
	// enriching under req-events/0@0
	// finished req-events/0@0 acked: true
	// output request_id: req-events/0@0
}
