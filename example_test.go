package sluice_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/sluicetest"
)

// A pipeline over the in-memory source and sink. The enricher upper-cases
// each event; an empty event is a permanent failure and ends up as a dead
// letter.
func Example() {
	src := sluicetest.NewSource("events", 2)
	src.Publish(nil, []byte(`hello`))
	src.Publish(nil, []byte(``))
	src.Publish(nil, []byte(`world`))
	src.End() // Run returns once every event is done

	enr := sluice.EnricherFunc(func(ctx context.Context, in *sluice.Message) (*sluice.Message, error) {
		if len(in.Value) == 0 {
			return nil, sluice.Permanent(fmt.Errorf("empty event"))
		}
		return in.WithValue(bytes.ToUpper(in.Value)), nil
	})
	sink := sluicetest.NewSink()

	p, err := sluice.New(src, enr, sink,
		sluice.WithConcurrency(4),
		sluice.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))),
	)
	if err != nil {
		panic(err)
	}
	if err := p.Run(context.Background()); err != nil {
		panic(err)
	}
	st := p.Stats()
	fmt.Println("enriched:", st.Enriched, "dead-lettered:", st.DeadLettered)
	for _, d := range sink.DeadLetters() {
		fmt.Println("dead letter:", d.Msg.Origin, d.Reason)
	}
	// Output:
	// enriched: 2 dead-lettered: 1
	// dead letter: events/1@0 empty event
}

// A wrong setup fails every event the same way. The enricher marks such
// failures with Misconfigured, and the breaker stops the pipeline after a
// few in a row instead of dead-lettering the whole input.
func ExampleWithBreaker() {
	src := sluicetest.NewSource("events", 1)
	for range 100 {
		src.Publish(nil, []byte(`{"text":"hello"}`))
	}
	src.End()
	enr := sluice.EnricherFunc(func(context.Context, *sluice.Message) (*sluice.Message, error) {
		// What a model client returns when the URL has a typo.
		return nil, sluice.Misconfigured("HTTP 404 unknown_url", fmt.Errorf("HTTP 404: unknown path /v2/chat/completions"))
	})
	sink := sluicetest.NewSink()
	p, err := sluice.New(src, enr, sink,
		sluice.WithConcurrency(1),
		sluice.WithBreaker(5),
		sluice.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))),
	)
	if err != nil {
		panic(err)
	}
	err = p.Run(context.Background())
	var mis *sluice.MisconfiguredError
	fmt.Println("stopped for a misconfiguration:", errors.As(err, &mis), mis.Class)
	fmt.Println("dead letters:", len(sink.DeadLetters()), "acked:", src.Committed(0))
	// Output:
	// stopped for a misconfiguration: true HTTP 404 unknown_url
	// dead letters: 4 acked: 4
}
