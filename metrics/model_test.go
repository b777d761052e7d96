package metrics_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/internal/testutil"
	"github.com/sluicehq/sluice/llmtest"
	"github.com/sluicehq/sluice/metrics"
	"github.com/sluicehq/sluice/openai"
)

var _ openai.CallObserver = (*metrics.ModelCalls)(nil)

func scrape(t *testing.T, reg *prometheus.Registry) string {
	t.Helper()
	rec := httptest.NewRecorder()
	promhttp.HandlerFor(reg, promhttp.HandlerOpts{}).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	require.Equal(t, http.StatusOK, rec.Code)
	return rec.Body.String()
}

// An openai.Enricher's calls show up by status class, with their latency
// and the tokens the usage field reported.
func TestModelCalls(t *testing.T) {
	reg := prometheus.NewRegistry()
	mc, err := metrics.NewModelCalls(reg)
	require.NoError(t, err)
	srv := llmtest.NewServer()
	defer srv.Close()
	e, err := openai.New("llmtest", openai.Sentiment(), []string{"text"}, openai.WithBaseURL(srv.BaseURL()),
		openai.WithCallObserver(mc), openai.WithLogger(testutil.Quiet()), openai.WithTimeout(time.Second))
	require.NoError(t, err)
	ev := &sluice.Message{Value: []byte(`{"text":"a great day"}`)}
	for range 2 {
		_, err := e.Enrich(context.Background(), ev)
		require.NoError(t, err)
	}
	srv.Inject(llmtest.Fault{Status: 429, Code: "rate_limit_exceeded"}, llmtest.Fault{Status: 404, Code: "model_not_found"},
		llmtest.Fault{Status: 502}, llmtest.Fault{Reset: true})
	for range 4 {
		_, _ = e.Enrich(context.Background(), ev)
	}
	st := srv.Stats()
	require.Positive(t, st.PromptTokens)
	body := scrape(t, reg)
	for _, want := range []string{
		`sluice_model_requests_total{class="2xx"} 2`,
		`sluice_model_requests_total{class="429"} 1`,
		`sluice_model_requests_total{class="4xx"} 1`,
		`sluice_model_requests_total{class="5xx"} 1`,
		`sluice_model_requests_total{class="error"} 1`,
		`sluice_model_request_duration_seconds_count{class="2xx"} 2`,
		`sluice_model_tokens_total{kind="prompt"} ` + strconv.FormatInt(st.PromptTokens, 10),
		`sluice_model_tokens_total{kind="completion"} ` + strconv.FormatInt(st.CompletionTokens, 10),
	} {
		assert.Contains(t, body, want)
	}
}

// Every series exists from the start, at 0, so that dashboards and alerts
// see it before the first call; a second registration on one registry and
// a nil registry fail.
func TestModelCallsRegistration(t *testing.T) {
	reg := prometheus.NewRegistry()
	_, err := metrics.NewModelCalls(reg, metrics.WithNamespace("x"), metrics.WithConstLabels(prometheus.Labels{"pipeline": "p"}))
	require.NoError(t, err)
	body := scrape(t, reg)
	for _, c := range []string{"2xx", "4xx", "429", "5xx", "error"} {
		assert.Contains(t, body, `x_model_requests_total{class="`+c+`",pipeline="p"} 0`)
	}
	assert.True(t, strings.Contains(body, `x_model_tokens_total{kind="prompt",pipeline="p"} 0`))
	_, err = metrics.NewModelCalls(reg, metrics.WithNamespace("x"), metrics.WithConstLabels(prometheus.Labels{"pipeline": "p"}))
	assert.Error(t, err)
	_, err = metrics.NewModelCalls(nil)
	assert.Error(t, err)
}
