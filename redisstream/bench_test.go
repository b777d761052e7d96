package redisstream_test

import (
	"context"
	"errors"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/internal/testutil"
	"github.com/sluicehq/sluice/redisstream"
)

// benchPayload is a 1 KiB JSON event.
var benchPayload = `{"id":"bench","text":"` + strings.Repeat("x", 1024-len(`{"id":"bench","text":""}`)) + `"}`

// fillStream adds n 1 KiB events to a fresh stream and returns its name.
func fillStream(b *testing.B, c *redis.Client, n int) string {
	b.Helper()
	in := uniq(b, c, "in")
	ctx := context.Background()
	const chunk = 1000
	for i := 0; i < n; i += chunk {
		pipe := c.Pipeline()
		for range min(chunk, n-i) {
			pipe.XAdd(ctx, &redis.XAddArgs{Stream: in, Values: []any{"payload", benchPayload, "trace", "bench"}})
		}
		if _, err := pipe.Exec(ctx); err != nil {
			b.Fatal(err)
		}
	}
	if err := c.XGroupCreate(ctx, in, "g", "0").Err(); err != nil {
		b.Fatal(err)
	}
	return in
}

// BenchmarkPassThrough measures Redis→Redis pass-through of 1 KiB events
// with a no-op enricher, against a minimal hand-written XREADGROUP → XADD →
// XACK loop (256 entries a round) on the same server. Each reports events/s;
// the target is for Sluice to reach at least 80% of HandLoop. The Sluice
// variants also report how many events one XREADGROUP returned on average.
// Run for example with
//
//	REDIS_ADDR=127.0.0.1:6379 go test -run '^$' -bench PassThrough -benchtime 50000x ./redisstream
func BenchmarkPassThrough(b *testing.B) {
	b.Run("HandLoop", benchHandLoop)
	// A pinned window of 1024, and the defaults, whose window adapts to the
	// completion rate.
	b.Run("Sluice", func(b *testing.B) { benchSluice(b, nil, sluice.WithMaxInFlight(1024)) })
	b.Run("SluiceDefaults", func(b *testing.B) { benchSluice(b, nil) })
	// Outputs and their XACK in one script (WithAtomicAck), against the
	// defaults just above.
	b.Run("SluiceDefaultsAtomicAck", func(b *testing.B) {
		benchSluice(b, []redisstream.SinkOption{redisstream.WithAtomicAck()})
	})
}

// benchHandLoop is the baseline: read a batch, write it with one pipelined
// round of XADDs, acknowledge it with one XACK.
func benchHandLoop(b *testing.B) {
	c := newClient(b)
	in := fillStream(b, c, b.N)
	out := uniq(b, c, "out")
	ctx := context.Background()
	b.SetBytes(int64(len(benchPayload)))
	b.ResetTimer()
	start := time.Now()
	done := 0
	ids := make([]string, 0, 256)
	for done < b.N {
		res, err := c.XReadGroup(ctx, &redis.XReadGroupArgs{
			Group: "g", Consumer: "loop", Streams: []string{in, ">"}, Count: 256, Block: time.Second,
		}).Result()
		if err != nil {
			b.Fatal(err)
		}
		msgs := res[0].Messages
		ids = ids[:0]
		pipe := c.Pipeline()
		for _, m := range msgs {
			pipe.XAdd(ctx, &redis.XAddArgs{Stream: out, Values: []any{
				"payload", m.Values["payload"], "trace", m.Values["trace"], "source_stream", in, "source_id", m.ID,
			}})
			ids = append(ids, m.ID)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			b.Fatal(err)
		}
		if err := c.XAck(ctx, in, "g", ids...).Err(); err != nil {
			b.Fatal(err)
		}
		done += len(msgs)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
}

// benchSluice runs the same pass-through as a pipeline with the given
// options.
func benchSluice(b *testing.B, sinkOpts []redisstream.SinkOption, pipeOpts ...sluice.Option) {
	c := newClient(b)
	in := fillStream(b, c, b.N)
	out := uniq(b, c, "out")
	reads := &readCounter{}
	c.AddHook(reads)
	src, err := redisstream.NewSource(context.Background(), in, "g", redisstream.WithClient(c), redisstream.WithConsumer("sluice"),
		redisstream.WithBlock(50*time.Millisecond), redisstream.WithLogger(testutil.Logger(b)))
	if err != nil {
		b.Fatal(err)
	}
	defer src.Close()
	sink, err := redisstream.NewSink(context.Background(), out, append([]redisstream.SinkOption{redisstream.WithClient(c), redisstream.WithLogger(testutil.Logger(b))}, sinkOpts...)...)
	if err != nil {
		b.Fatal(err)
	}
	noop := sluice.EnricherFunc(func(_ context.Context, in *sluice.Message) (*sluice.Message, error) { return in, nil })
	obs := &countDone{want: b.N, done: make(chan struct{})}
	opts := append([]sluice.Option{sluice.WithObserver(obs), sluice.WithLogger(testutil.Logger(b))}, pipeOpts...)
	p, err := sluice.New(src, noop, sink, opts...)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b.SetBytes(int64(len(benchPayload)))
	b.ResetTimer()
	start := time.Now()
	runErr := make(chan error, 1)
	go func() { runErr <- p.Run(ctx) }()
	select {
	case <-obs.done:
	case err := <-runErr:
		b.Fatalf("Run returned early: %v", err)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	cancel()
	if err := <-runErr; err != nil && !errors.Is(err, context.Canceled) {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
	b.ReportMetric(float64(b.N)/float64(max(reads.n.Load(), 1)), "events/read")
	// Events read and not yet acked: at most what a crash leaves pending for
	// another consumer to claim.
	b.ReportMetric(float64(p.Stats().PeakInFlight), "peak-in-flight")
}

// readCounter counts XREADGROUP calls.
type readCounter struct{ n atomic.Int64 }

func (h *readCounter) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *readCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if cmd.Name() == "xreadgroup" {
			h.n.Add(1)
		}
		return next(ctx, cmd)
	}
}

func (h *readCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// BenchmarkRedisLatencyModel adds b.N 1 KiB events at SLUICE_LATENCY_RATE
// events/s (default 800: half of the 1,600/s that the default 8 calls of 5ms
// allow) while a pipeline with defaults and a 5ms model passes them on, and
// reports end-to-end latency percentiles: the input entry's ID time to the
// reply of the output's XADD.
func BenchmarkRedisLatencyModel(b *testing.B) {
	rate := 800
	if v, err := strconv.Atoi(os.Getenv("SLUICE_LATENCY_RATE")); err == nil && v > 0 {
		rate = v
	}
	c := newClient(b)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	in, out := uniq(b, c, "in"), uniq(b, c, "out")
	if err := c.XGroupCreateMkStream(ctx, in, "g", "0").Err(); err != nil {
		b.Fatal(err)
	}
	src, err := redisstream.NewSource(ctx, in, "g", redisstream.WithClient(c), redisstream.WithConsumer("sluice"),
		redisstream.WithLogger(testutil.Logger(b)))
	if err != nil {
		b.Fatal(err)
	}
	defer src.Close()
	rsink, err := redisstream.NewSink(ctx, out, redisstream.WithClient(c), redisstream.WithLogger(testutil.Logger(b)))
	if err != nil {
		b.Fatal(err)
	}
	var mu sync.Mutex
	lats := make([]time.Duration, 0, b.N)
	all := make(chan struct{})
	sink := sluice.SinkFunc(func(ctx context.Context, msgs []*sluice.Message) error {
		if err := rsink.Write(ctx, msgs); err != nil {
			return err
		}
		now := time.Now()
		mu.Lock()
		defer mu.Unlock()
		for _, m := range msgs {
			lats = append(lats, now.Sub(m.Timestamp))
		}
		if len(lats) >= b.N {
			select {
			case <-all:
			default:
				close(all)
			}
		}
		return nil
	})
	model := sluice.EnricherFunc(func(_ context.Context, m *sluice.Message) (*sluice.Message, error) {
		time.Sleep(5 * time.Millisecond)
		return m, nil
	})
	p, err := sluice.New(src, model, sink, sluice.WithDeadLetter(rsink), sluice.WithLogger(testutil.Logger(b)))
	if err != nil {
		b.Fatal(err)
	}
	runErr := make(chan error, 1)
	go func() { runErr <- p.Run(ctx) }()
	b.ResetTimer()
	go func() { // the feeder: a steady rate, in ticks of 5ms
		per := max(1, rate/200)
		tick := time.NewTicker(time.Second * time.Duration(per) / time.Duration(rate))
		defer tick.Stop()
		for i := 0; i < b.N; i += per {
			<-tick.C
			pipe := c.Pipeline()
			for range min(per, b.N-i) {
				pipe.XAdd(ctx, &redis.XAddArgs{Stream: in, Values: []any{"payload", benchPayload, "trace", "bench"}})
			}
			if _, err := pipe.Exec(ctx); err != nil && ctx.Err() == nil {
				b.Error(err)
				return
			}
		}
	}()
	select {
	case <-all:
	case err := <-runErr:
		b.Fatalf("Run returned early: %v", err)
	}
	b.StopTimer()
	cancel()
	if err := <-runErr; err != nil && !errors.Is(err, context.Canceled) {
		b.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	slices.Sort(lats)
	q := func(p float64) float64 { return float64(lats[int(p*float64(len(lats)-1))]) / 1e6 }
	b.ReportMetric(q(0.50), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
	b.ReportMetric(float64(rate), "load-ev/s")
}
