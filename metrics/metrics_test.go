package metrics_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/metrics"
	"github.com/sluicehq/sluice/sluicetest"
)

func TestMetricsExposition(t *testing.T) {
	src := sluicetest.NewSource("in", 1)
	src.Publish(nil, []byte(`ok`))
	src.Publish(nil, []byte(`bad`))
	src.End()
	enr := sluice.EnricherFunc(func(_ context.Context, in *sluice.Message) (*sluice.Message, error) {
		if string(in.Value) == "bad" {
			return nil, sluice.Permanent(assert.AnError)
		}
		return in, nil
	})
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector())
	p, err := sluice.New(src, enr, sluicetest.NewSink(), metrics.Export(reg),
		sluice.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	require.NoError(t, err)
	require.NoError(t, p.Run(context.Background()))

	rec := httptest.NewRecorder()
	promhttp.HandlerFor(reg, promhttp.HandlerOpts{}).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	require.Equal(t, http.StatusOK, rec.Code)
	body := rec.Body.String()
	for _, want := range []string{
		"sluice_enriched_total 1",
		"sluice_dead_lettered_total 1",
		"sluice_processed_total 2",
		"sluice_received_total 2",
		"sluice_retried_total 0",
		"sluice_rate_limit_pauses_total 0",
		"sluice_in_flight 0",
		"sluice_paused 0",
		"sluice_up 0",
		`sluice_status{status="stopped"} 1`,
		`sluice_status{status="ok"} 0`,
		"sluice_oldest_in_flight_seconds 0",
		"sluice_writes_failing_seconds 0",
		"sluice_consumer_lag 0",
		`sluice_consumer_lag_partition{partition="in/0"} 0`,
		`sluice_enrichment_latency_seconds_count{outcome="enriched"} 1`,
		`sluice_enrichment_latency_seconds_count{outcome="dead_lettered"} 1`,
		"go_goroutines",
	} {
		assert.Contains(t, body, want)
	}
}

// Export cannot be half done: a nil registerer, a registerer that already
// holds the same metrics, or one option given to two pipelines fails New.
func TestExportFailsNew(t *testing.T) {
	noop := sluice.EnricherFunc(func(_ context.Context, in *sluice.Message) (*sluice.Message, error) { return in, nil })
	build := func(opt sluice.Option) error {
		_, err := sluice.New(sluicetest.NewSource("in", 1), noop, sluicetest.NewSink(), opt)
		return err
	}
	assert.ErrorIs(t, build(metrics.Export(nil)), sluice.ErrInvalidConfig)

	label := func(name string) metrics.Option { return metrics.WithConstLabels(prometheus.Labels{"pipeline": name}) }
	reg := prometheus.NewRegistry()
	require.NoError(t, build(metrics.Export(reg, label("a"))))
	err := build(metrics.Export(reg, label("a")))
	assert.ErrorIs(t, err, sluice.ErrInvalidConfig)
	var dup prometheus.AlreadyRegisteredError
	assert.ErrorAs(t, err, &dup)
	require.NoError(t, build(metrics.Export(reg, label("b"))), "another pipeline on the same registry")

	once := metrics.Export(prometheus.NewRegistry())
	require.NoError(t, build(once))
	assert.ErrorIs(t, build(once), sluice.ErrInvalidConfig)
}
