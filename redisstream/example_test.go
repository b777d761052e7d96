package redisstream_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/jsonenrich"
	"github.com/sluicehq/sluice/redisstream"
)

// A pipeline from the "events" stream to the "enriched" stream. The example
// runs against an embedded server; point redisstream.WithAddr (or
// WithClient) at your Redis instead.
func Example() {
	srv, err := miniredis.Run() // an embedded Redis, for the example only
	if err != nil {
		panic(err)
	}
	defer srv.Close()
	client := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer client.Close()
	ctx := context.Background()
	client.XAdd(ctx, &redis.XAddArgs{Stream: "events", Values: []any{"payload", `{"text":"hello"}`, "trace", "t-1"}})
	client.XAdd(ctx, &redis.XAddArgs{Stream: "events", Values: []any{"payload", `not json`}})

	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	src, err := redisstream.NewSource(ctx, "events", "enrichers",
		redisstream.WithClient(client), redisstream.WithConsumer("worker-1"),
		redisstream.WithLogger(quiet))
	if err != nil {
		panic(err)
	}
	defer src.Close()
	sink, err := redisstream.NewSink(ctx, "enriched", redisstream.WithClient(client), redisstream.WithLogger(quiet))
	if err != nil {
		panic(err)
	}
	enr, err := jsonenrich.New([]string{"text"}, func(_ context.Context, f []jsonenrich.Field, _ *sluice.Message) (json.RawMessage, error) {
		return json.RawMessage(fmt.Sprintf(`{"chars":%d}`, len(f[0].Text))), nil
	})
	if err != nil {
		panic(err)
	}
	done2 := &countDone{want: 2, done: make(chan struct{})}
	p, err := sluice.New(src, enr, sink, sluice.WithLogger(quiet), sluice.WithObserver(done2))
	if err != nil {
		panic(err)
	}

	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error)
	go func() { done <- p.Run(runCtx) }()
	<-done2.done // a real service keeps running until it is told to stop
	stop()
	if err := <-done; err != nil {
		panic(err)
	}

	out := client.XRange(ctx, "enriched", "-", "+").Val()[0]
	fmt.Println(out.Values["payload"], out.Values["trace"], out.Values["source_stream"])
	dead := client.XRange(ctx, "dead_letter", "-", "+").Val()[0]
	fmt.Println(dead.Values["payload"], "->", dead.Values["failure_reason"] != nil)
	// Output:
	// {"text":"hello","ai_enrichment":{"chars":5}} t-1 events
	// not json -> true
}

// countDone is a sluice.Observer that closes done after want events.
type countDone struct {
	want int
	n    atomic.Int64
	done chan struct{}
}

func (c *countDone) EventDone(sluice.Outcome, time.Duration) {
	if c.n.Add(1) == int64(c.want) {
		close(c.done)
	}
}
func (c *countDone) RateLimited(time.Duration) {}
