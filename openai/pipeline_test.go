package openai

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/internal/testutil"
	"github.com/sluicehq/sluice/sluicetest"
)

type pipelineResult struct {
	enriched, dead int
	letters        []sluice.DeadLetter
	stats          sluice.Stats
	elapsed        time.Duration
}

// runPipeline enriches n events through a pipeline over the in-memory
// source and sink and returns what came out.
func runPipeline(tb testing.TB, e sluice.Enricher, n, concurrency, batch int, opts ...sluice.Option) pipelineResult {
	tb.Helper()
	src := sluicetest.NewSource("events", 4)
	for i := range n {
		src.Publish(nil, fmt.Appendf(nil, `{"id":%d,"text":"event %d is great"}`, i, i))
	}
	sink := sluicetest.NewSink()
	opts = append([]sluice.Option{
		sluice.WithConcurrency(concurrency),
		sluice.WithEnrichBatch(batch),
		sluice.WithBackoff(time.Millisecond, 10*time.Millisecond),
		sluice.WithLogger(testutil.Quiet()),
	}, opts...)
	p, err := sluice.New(src, e, sink, opts...)
	if err != nil {
		tb.Fatal(err)
	}
	// Run until every event is written or dead-lettered, then stop. (Ending
	// the source instead can lose the last fetched batch; see Run.)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- p.Run(ctx) }()
	waitErr := sink.WaitFor(context.Background(), n)
	el := time.Since(start)
	cancel()
	if err := <-done; err != nil {
		tb.Fatal(err)
	}
	if waitErr != nil {
		tb.Fatal(waitErr)
	}
	return pipelineResult{
		enriched: len(sink.Messages()),
		dead:     len(sink.DeadLetters()),
		letters:  sink.DeadLetters(),
		stats:    p.Stats(),
		elapsed:  el,
	}
}
