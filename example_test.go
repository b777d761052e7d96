package sluice_test

import (
	"bytes"
	"context"
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
