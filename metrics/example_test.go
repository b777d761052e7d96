package metrics_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/llmtest"
	"github.com/sluicehq/sluice/metrics"
	"github.com/sluicehq/sluice/openai"
	"github.com/sluicehq/sluice/sluicetest"
)

// Prometheus metrics for a pipeline: one option exports them on a registry,
// which the service serves at /metrics.
func Example() {
	src := sluicetest.NewSource("events", 1)
	src.Publish(nil, []byte(`{"text":"hello"}`))
	src.End()
	noop := sluice.EnricherFunc(func(_ context.Context, in *sluice.Message) (*sluice.Message, error) { return in, nil })

	reg := prometheus.NewRegistry()
	p, err := sluice.New(src, noop, sluicetest.NewSink(), metrics.Export(reg),
		sluice.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		panic(err)
	}
	if err := p.Run(context.Background()); err != nil {
		panic(err)
	}

	handler := promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	srv := httptest.NewServer(handler) // in a service: mux.Handle("GET /metrics", handler)
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		panic(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if line := sc.Text(); strings.HasPrefix(line, "sluice_enriched_total") || strings.HasPrefix(line, "sluice_consumer_lag ") {
			fmt.Println(line)
		}
	}
	// Output:
	// sluice_consumer_lag 0
	// sluice_enriched_total 1
}

// Model-call metrics: requests by status class, latency and tokens, fed by
// the openai Enricher.
func ExampleNewModelCalls() {
	model := llmtest.NewServer()
	defer model.Close()

	reg := prometheus.NewRegistry()
	calls, err := metrics.NewModelCalls(reg)
	if err != nil {
		panic(err)
	}
	enr, err := openai.New("llmtest", openai.Sentiment(), []string{"text"},
		openai.WithBaseURL(model.BaseURL()), openai.WithCallObserver(calls))
	if err != nil {
		panic(err)
	}
	if _, err := enr.Enrich(context.Background(), &sluice.Message{Value: []byte(`{"text":"great"}`)}); err != nil {
		panic(err)
	}

	rec := httptest.NewRecorder()
	promhttp.HandlerFor(reg, promhttp.HandlerOpts{}).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	for _, line := range strings.Split(rec.Body.String(), "\n") {
		if strings.HasPrefix(line, "sluice_model_requests_total") {
			fmt.Println(line)
		}
	}
	// Output:
	// sluice_model_requests_total{class="2xx"} 1
	// sluice_model_requests_total{class="429"} 0
	// sluice_model_requests_total{class="4xx"} 0
	// sluice_model_requests_total{class="5xx"} 0
	// sluice_model_requests_total{class="error"} 0
}
