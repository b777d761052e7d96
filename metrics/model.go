package metrics

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// ModelCalls exports what operators ask about model calls first: requests
// by status class, their latency, and the tokens the API's usage field
// reports. Pass it to openai.WithCallObserver; it implements that
// package's CallObserver. Its methods are safe for concurrent use.
type ModelCalls struct {
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	tokens   *prometheus.CounterVec
}

// Status classes of [ModelCalls]' "class" label.
const (
	Class2xx   = "2xx"
	Class4xx   = "4xx" // other than 429
	Class429   = "429"
	Class5xx   = "5xx"
	ClassError = "error" // no response: a timeout, a refused connection, a cancelled call
)

// NewModelCalls registers on reg, and returns, the model-call metrics:
//
//	sluice_model_requests_total{class}            counter; class is 2xx, 4xx, 429, 5xx or error
//	sluice_model_request_duration_seconds{class}  histogram, to the end of reading the answer
//	sluice_model_tokens_total{kind}               counter; kind is prompt or completion
//
// It takes the same options as [Export] (namespace, buckets, constant
// labels). It fails if reg is nil or refuses the metrics.
func NewModelCalls(reg prometheus.Registerer, opts ...Option) (*ModelCalls, error) {
	if reg == nil {
		return nil, errors.New("metrics: NewModelCalls(nil): need a prometheus.Registerer")
	}
	o := options{
		namespace: "sluice",
		buckets:   []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
	}
	for _, f := range opts {
		f(&o)
	}
	m := &ModelCalls{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: o.namespace, Name: "model_requests_total", ConstLabels: o.labels,
			Help: "Requests to the model's API by status class: 2xx, 4xx (other than 429), 429, 5xx, or error when no response came.",
		}, []string{"class"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: o.namespace, Name: "model_request_duration_seconds", ConstLabels: o.labels,
			Help:    "Time of each request to the model's API, to the end of reading the answer, by status class.",
			Buckets: o.buckets,
		}, []string{"class"}),
		tokens: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: o.namespace, Name: "model_tokens_total", ConstLabels: o.labels,
			Help: "Tokens the model's API reported in the usage field of its answers, by kind: prompt or completion.",
		}, []string{"kind"}),
	}
	for _, c := range []string{Class2xx, Class4xx, Class429, Class5xx, ClassError} {
		m.requests.WithLabelValues(c)
		m.latency.WithLabelValues(c)
	}
	m.tokens.WithLabelValues("prompt")
	m.tokens.WithLabelValues("completion")
	for _, c := range []prometheus.Collector{m.requests, m.latency, m.tokens} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// ModelCall records one request: its HTTP status (0 without a response),
// latency, and the tokens of its usage field.
func (m *ModelCalls) ModelCall(status int, latency time.Duration, promptTokens, completionTokens int64) {
	c := statusClass(status)
	m.requests.WithLabelValues(c).Inc()
	m.latency.WithLabelValues(c).Observe(latency.Seconds())
	if promptTokens > 0 {
		m.tokens.WithLabelValues("prompt").Add(float64(promptTokens))
	}
	if completionTokens > 0 {
		m.tokens.WithLabelValues("completion").Add(float64(completionTokens))
	}
}

func statusClass(status int) string {
	switch {
	case status == 429:
		return Class429
	case status >= 200 && status < 300:
		return Class2xx
	case status >= 400 && status < 500:
		return Class4xx
	case status >= 500 && status < 600:
		return Class5xx
	}
	return ClassError
}
