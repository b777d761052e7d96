package openai

import (
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/internal/testutil"
	"github.com/sluicehq/sluice/jsonenrich"
	"github.com/sluicehq/sluice/llmtest"
)

// Run with a fixed event count, for example:
//
//	go test -run '^$' -bench Pipeline -benchtime 4000x ./openai

// BenchmarkPipelineLatency50ms runs b.N events through a pipeline of
// concurrency 64 against a server that takes 50ms per call: the ceiling is
// 64/0.05s = 1280 events/s.
//
// The fake model runs in a process of its own, like a real model server;
// BenchmarkPipelineLatency50msInProcess shares one process with it.
func BenchmarkPipelineLatency50ms(b *testing.B) {
	benchLatency50ms(b, startFake(b, "latency=50ms"))
}

// BenchmarkPipelineLatency50msInProcess is the same with the fake model in
// the benchmark's own process: on a small machine the two then compete for
// the same Go scheduler, and replies wait for a free processor.
func BenchmarkPipelineLatency50msInProcess(b *testing.B) {
	srv := llmtest.NewServer(llmtest.WithLatency(llmtest.Fixed(50 * time.Millisecond)))
	defer srv.Close()
	benchLatency50ms(b, srv.BaseURL())
}

func benchLatency50ms(b *testing.B, url string) {
	e, err := New("llmtest", Sentiment(), []string{"text"}, WithBaseURL(url), WithLogger(testutil.Quiet()))
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	b.ResetTimer()
	res := runPipeline(b, e, b.N, 64, 1)
	b.StopTimer()
	if res.dead > 0 {
		b.Fatalf("%d events dead-lettered: %s", res.dead, res.letters[0].Reason)
	}
	eps := float64(b.N) / res.elapsed.Seconds()
	b.ReportMetric(eps, "events/s")
	b.ReportMetric(100*eps/1280, "%of1280")
	b.ReportMetric(float64(res.stats.LatencyP50.Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(res.stats.LatencyP99.Microseconds())/1000, "p99-ms")
}

// BenchmarkPipelineRateLimited200 runs b.N events against a server that
// allows 200 calls/s and answers the rest with 429 and Retry-After. The
// pipeline must keep goodput near 200/s and dead-letter nothing.
func BenchmarkPipelineRateLimited200(b *testing.B) {
	url := startFake(b, "latency=50ms,rps=200")
	e, err := New("llmtest", Sentiment(), []string{"text"}, WithBaseURL(url), WithLogger(testutil.Quiet()))
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	b.ResetTimer()
	res := runPipeline(b, e, b.N, 64, 1, sluice.WithMaxRateLimitDuration(time.Minute))
	b.StopTimer()
	if res.dead > 0 {
		b.Fatalf("%d events dead-lettered: %s", res.dead, res.letters[0].Reason)
	}
	eps := float64(b.N) / res.elapsed.Seconds()
	b.ReportMetric(eps, "events/s")
	b.ReportMetric(100*eps/200, "%of200")
	b.ReportMetric(float64(res.stats.RateLimited), "429s")
	b.ReportMetric(float64(res.stats.RateLimitPauses), "pauses")
}

// BenchmarkPipelineBatch8 is the 50ms-latency pipeline with batches of 8
// events per call.
func BenchmarkPipelineBatch8(b *testing.B) {
	srv := llmtest.NewServer(llmtest.WithLatency(llmtest.Fixed(50 * time.Millisecond)))
	defer srv.Close()
	e, err := New("llmtest", Sentiment(), []string{"text"}, WithBaseURL(srv.BaseURL()), WithLogger(testutil.Quiet()))
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	b.ResetTimer()
	res := runPipeline(b, e, b.N, 64, 8)
	b.StopTimer()
	if res.dead > 0 {
		b.Fatalf("%d events dead-lettered: %s", res.dead, res.letters[0].Reason)
	}
	st := srv.Stats()
	b.ReportMetric(float64(b.N)/res.elapsed.Seconds(), "events/s")
	b.ReportMetric(float64(st.BatchItems)/float64(max(1, st.BatchCompletions)), "events/call")
}

// BenchmarkDirectCalls64 makes the calls of BenchmarkPipelineLatency50ms
// from 64 goroutines without a pipeline: the ceiling of the HTTP path
// alone, to tell the pipeline's overhead from the HTTP round trip's.
func BenchmarkDirectCalls64(b *testing.B) {
	srv := llmtest.NewServer(llmtest.WithLatency(llmtest.Fixed(50 * time.Millisecond)))
	defer srv.Close()
	e, err := New("llmtest", Sentiment(), []string{"text"}, WithBaseURL(srv.BaseURL()), WithLogger(testutil.Quiet()))
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	var left atomic.Int64
	left.Store(int64(b.N))
	start := time.Now()
	var wg sync.WaitGroup
	for range 64 {
		wg.Go(func() {
			for left.Add(-1) >= 0 {
				if _, err := e.Enrich(bg(), event("great")); err != nil {
					b.Error(err)
				}
			}
		})
	}
	wg.Wait()
	eps := float64(b.N) / time.Since(start).Seconds()
	b.ReportMetric(eps, "events/s")
	b.ReportMetric(100*eps/1280, "%of1280")
}

// BenchmarkEventJSON is the per-event JSON work of Enrich without the HTTP
// call: extracting two text fields from a 1 KiB event, rendering the
// model's input and request, validating and hashing its answer, and merging
// the enrichment into the event.
func BenchmarkEventJSON(b *testing.B) {
	e, err := New("llmtest", Sentiment(), []string{"review.title", "review.body"}, WithBaseURL("http://127.0.0.1:1"), WithLogger(testutil.Quiet()))
	if err != nil {
		b.Fatal(err)
	}
	event := []byte(`{"id":"evt_01J9Z4X7Q2KX8M3V6B5N0R1T2Y","type":"review.created","created_at":"2026-11-29T18:42:07.314Z","source":{"app":"storefront","version":"4.12.3","region":"eu-west-1"},` +
		`"customer":{"id":48213377,"name":"Ana Kovač","tier":"gold","since":"2019-03-14","locale":"hr-HR"},` +
		`"product":{"sku":"PH-X200-128-BLK","name":"Phone X200 128 GB","category":["electronics","phones"],"price":{"amount":499.99,"currency":"EUR"},"attributes":{"color":"black","storage_gb":128,"refurbished":false}},` +
		`"review":{"title":"Great phone, but the charger is missing","rating":4,"verified":true,` +
		`"body":"I have used it for three weeks now. The screen is bright and sharp, battery lasts a full day, and the camera is better than I expected in low light. Two things bother me: there is no charger in the box, and the \"fast charging\" only works with a 45 W adapter that costs extra.\nStill, for the price it is a very good phone.",` +
		`"helpful_votes":12,"images":[{"url":"https://cdn.example.com/r/8812/1.jpg","w":1024,"h":768}]},` +
		`"order":{"id":"ord_7731","channel":"web","lines":3},"flags":{"spam_score":0.02,"language":"en","moderation":null}}`)
	answer := json.RawMessage(`{"label":"positive","score":0.82}`)
	b.SetBytes(int64(len(event)))
	b.ReportAllocs()
	for b.Loop() {
		fields, err := jsonenrich.Extract(event, e.paths)
		if err != nil {
			b.Fatal(err)
		}
		user, err := e.task.input(fields)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := e.body(call{name: e.task.Name, schema: e.schema.JSON(), user: user, maxTokens: e.cfg.maxTokens}, OutputJSONSchema, TokenFieldMaxCompletionTokens); err != nil {
			b.Fatal(err)
		}
		if err := e.schema.Validate(answer); err != nil {
			b.Fatal(err)
		}
		enr, err := e.enrichment("llmtest", answer)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := jsonenrich.Merge(event, e.cfg.key, enr); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBatching runs b.N events through 8 calls at once against a model
// whose call costs 20ms plus 2ms per event it answers, for batches of 1, 4,
// 8 and 16 events per call (WithEnrichBatch and WithMaxBatch), and reports
// model calls per event and events/s. Answers are the same whatever the
// batch: the fake answers each event on its own text.
//
//	go test -run '^$' -bench Batching -benchtime 4000x ./openai
func BenchmarkBatching(b *testing.B) {
	for _, n := range []int{1, 4, 8, 16} {
		b.Run(fmt.Sprintf("batch=%d", n), func(b *testing.B) {
			srv := llmtest.NewServer(llmtest.WithLatency(llmtest.Fixed(20*time.Millisecond)), llmtest.WithPerEventLatency(2*time.Millisecond))
			defer srv.Close()
			e, err := New("llmtest", Sentiment(), []string{"text"}, WithBaseURL(srv.BaseURL()), WithMaxBatch(n), WithLogger(testutil.Quiet()))
			if err != nil {
				b.Fatal(err)
			}
			defer e.Close()
			b.ResetTimer()
			res := runPipeline(b, e, b.N, 8, n)
			b.StopTimer()
			if res.dead > 0 {
				b.Fatalf("%d events dead-lettered: %s", res.dead, res.letters[0].Reason)
			}
			st := srv.Stats()
			if st.Events != int64(b.N) {
				b.Fatalf("the model answered %d events for %d", st.Events, b.N)
			}
			b.ReportMetric(float64(st.Completions)/float64(b.N), "calls/event")
			b.ReportMetric(float64(b.N)/res.elapsed.Seconds(), "events/s")
		})
	}
}
