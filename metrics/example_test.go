package metrics_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/metrics"
	"github.com/sluicehq/sluice/sluicetest"
)

// Prometheus metrics for a pipeline: register the Metrics as the pipeline's
// observer, attach it, and serve its handler at /metrics.
func Example() {
	src := sluicetest.NewSource("events", 1)
	src.Publish(nil, []byte(`{"text":"hello"}`))
	src.End()
	noop := sluice.EnricherFunc(func(_ context.Context, in *sluice.Message) (*sluice.Message, error) { return in, nil })

	m := metrics.New()
	p, err := sluice.New(src, noop, sluicetest.NewSink(), sluice.WithObserver(m),
		sluice.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		panic(err)
	}
	m.Attach(p)
	if err := p.Run(context.Background()); err != nil {
		panic(err)
	}

	srv := httptest.NewServer(m.Handler()) // in a service: mux.Handle("GET /metrics", m.Handler())
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
