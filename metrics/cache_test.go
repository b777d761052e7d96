package metrics_test

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/enrichcache"
	"github.com/sluicehq/sluice/metrics"
)

func TestExportCache(t *testing.T) {
	ctx := context.Background()
	c, err := enrichcache.NewMemory(1 << 20)
	require.NoError(t, err)
	require.NoError(t, c.Set(ctx, "k", []byte("v")))
	_, _, _ = c.Get(ctx, "k")
	_, _, _ = c.Get(ctx, "k")
	_, _, _ = c.Get(ctx, "other")

	reg := prometheus.NewRegistry()
	require.NoError(t, metrics.ExportCache(reg, c, metrics.WithConstLabels(prometheus.Labels{"pipeline": "reviews"})))
	mfs, err := reg.Gather()
	require.NoError(t, err)
	got := map[string]float64{}
	for _, mf := range mfs {
		m := mf.GetMetric()[0]
		require.Equal(t, "reviews", m.GetLabel()[0].GetValue(), mf.GetName())
		if c := m.GetCounter(); c != nil {
			got[mf.GetName()] = c.GetValue()
		} else {
			got[mf.GetName()] = m.GetGauge().GetValue()
		}
	}
	assert.Len(t, got, 7)
	assert.Equal(t, 2.0, got["sluice_cache_hits_total"])
	assert.Equal(t, 1.0, got["sluice_cache_misses_total"])
	assert.Equal(t, 0.0, got["sluice_cache_errors_total"])
	assert.Equal(t, 1.0, got["sluice_cache_entries"])
	assert.Positive(t, got["sluice_cache_bytes"])
	assert.InDelta(t, 2.0/3, got["sluice_cache_hit_ratio"], 1e-9)

	// A second export of the same names on the same registry is refused.
	assert.Error(t, metrics.ExportCache(reg, c, metrics.WithConstLabels(prometheus.Labels{"pipeline": "reviews"})))
	assert.Error(t, metrics.ExportCache(nil, c))
}
