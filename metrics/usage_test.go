package metrics_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/internal/testutil"
	"github.com/sluicehq/sluice/llmtest"
	"github.com/sluicehq/sluice/metrics"
	"github.com/sluicehq/sluice/openai"
)

// The usage exported for Prometheus matches what the fake model reported:
// events, and a cost at the prices that follows from its token counts.
func TestExportUsageMatchesTheModel(t *testing.T) {
	srv := llmtest.NewServer()
	defer srv.Close()
	prices := openai.Prices{Prompt: 0.15, Completion: 0.6}
	e, err := openai.New("llmtest", openai.Sentiment(), []string{"text"}, openai.WithBaseURL(srv.BaseURL()),
		openai.WithPrices(prices), openai.WithLogger(testutil.Quiet()), openai.WithTimeout(time.Second))
	require.NoError(t, err)
	reg := prometheus.NewRegistry()
	read := func() metrics.Usage {
		u := e.Usage()
		return metrics.Usage{Events: u.Events, CachedPromptTokens: u.CachedTokens, CostUSD: u.CostUSD}
	}
	require.NoError(t, metrics.ExportUsage(reg, read, true))
	for i := range 3 {
		_, err := e.Enrich(context.Background(), &sluice.Message{Value: fmt.Appendf(nil, `{"text":"a great day %d"}`, i)})
		require.NoError(t, err)
	}
	st := srv.Stats()
	body := scrape(t, reg)
	assert.Contains(t, body, "sluice_model_events_total 3\n")
	assert.Contains(t, body, "sluice_model_cached_prompt_tokens_total 0\n")
	want := (float64(st.PromptTokens)*prices.Prompt + float64(st.CompletionTokens)*prices.Completion) / 1e6
	var got float64
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, "sluice_model_cost_usd_total "); ok {
			_, err := fmt.Sscan(v, &got)
			require.NoError(t, err)
		}
	}
	assert.InDelta(t, want, got, 1e-12, "cost from %d prompt and %d completion tokens", st.PromptTokens, st.CompletionTokens)
	assert.Positive(t, got)
}

// Without prices there is no cost series, rather than a cost of 0 that
// would read as free; a nil registry or reader is refused.
func TestExportUsageWithoutPrices(t *testing.T) {
	reg := prometheus.NewRegistry()
	require.NoError(t, metrics.ExportUsage(reg, func() metrics.Usage { return metrics.Usage{Events: 7} }, false))
	body := scrape(t, reg)
	assert.Contains(t, body, "sluice_model_events_total 7\n")
	assert.NotContains(t, body, "cost_usd")
	assert.Error(t, metrics.ExportUsage(nil, func() metrics.Usage { return metrics.Usage{} }, false))
	assert.Error(t, metrics.ExportUsage(prometheus.NewRegistry(), nil, false))
	assert.Error(t, metrics.ExportUsage(reg, func() metrics.Usage { return metrics.Usage{} }, false), "a second registration")
}
