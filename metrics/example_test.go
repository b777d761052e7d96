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
	"github.com/sluicehq/sluice/metrics"
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
