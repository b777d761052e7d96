// Package metrics exports a sluice pipeline's counters, latency histogram,
// lag and pause state as Prometheus metrics. It lives apart from the core so
// that pipelines that do not use Prometheus do not depend on it.
//
//	m := metrics.New()
//	p, err := sluice.New(src, enr, sink, sluice.WithObserver(m))
//	...
//	m.Attach(p)
//	mux.Handle("GET /metrics", m.Handler())
package metrics

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sluicehq/sluice"
)

// Metrics is a [sluice.Observer] and a [prometheus.Collector]. Register it
// with the pipeline through [sluice.WithObserver], then call Attach.
type Metrics struct {
	reg      *prometheus.Registry
	latency  *prometheus.HistogramVec
	pauseDur prometheus.Histogram

	mu sync.RWMutex
	p  *sluice.Pipeline

	received, enriched, dead, retried, rateLimited, pauses *prometheus.Desc
	processed, inFlight, paused, lag, lagPart, up          *prometheus.Desc
	status, oldest, writeFail                              *prometheus.Desc
}

// Option configures [New].
type Option func(*options)

type options struct {
	namespace string
	buckets   []float64
	labels    prometheus.Labels
}

// WithNamespace sets the metric name prefix. The default is "sluice".
func WithNamespace(ns string) Option { return func(o *options) { o.namespace = ns } }

// WithBuckets sets the latency histogram buckets, in seconds. The default
// spans 5ms to 60s, which suits model calls.
func WithBuckets(b []float64) Option { return func(o *options) { o.buckets = b } }

// WithConstLabels adds labels to every metric, for example the pipeline's
// name when a binary runs several.
func WithConstLabels(l prometheus.Labels) Option { return func(o *options) { o.labels = l } }

// New returns metrics registered on a fresh registry, which also carries the
// Go runtime and process collectors. Use [Metrics.Registry] to add your own.
func New(opts ...Option) *Metrics {
	o := options{
		namespace: "sluice",
		buckets:   []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
	}
	for _, f := range opts {
		f(&o)
	}
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(o.namespace+"_"+name, help, labels, o.labels)
	}
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: o.namespace, Name: "enrichment_latency_seconds",
			Help:        "Time from an event's first enrichment attempt to its outcome.",
			Buckets:     o.buckets,
			ConstLabels: o.labels,
		}, []string{"outcome"}),
		pauseDur: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: o.namespace, Name: "rate_limit_pause_seconds",
			Help:        "Length of each rate-limit pause (Retry-After plus jitter).",
			Buckets:     []float64{.01, .1, .5, 1, 2, 5, 10, 30, 60},
			ConstLabels: o.labels,
		}),
		received:    d("received_total", "Events fetched from the source."),
		processed:   d("processed_total", "Events finished: enriched or dead-lettered, written and acked."),
		enriched:    d("enriched_total", "Events whose enriched form was written and acked."),
		dead:        d("dead_lettered_total", "Events written to the dead-letter channel and acked."),
		retried:     d("retried_total", "Transient enrichment failures that were retried."),
		rateLimited: d("rate_limited_total", "Model calls refused with a rate limit."),
		pauses:      d("rate_limit_pauses_total", "Pauses of consumption caused by rate limits."),
		inFlight:    d("in_flight", "Events fetched but not yet acked."),
		paused:      d("paused", "1 while consumption is paused for a rate limit."),
		up:          d("up", "1 while the pipeline runs, 0 once it has stopped."),
		status:      d("status", "1 for the pipeline's current health status (ok, paused, stalled, degraded, stopped), 0 for the others.", "status"),
		oldest:      d("oldest_in_flight_seconds", "How long the oldest unfinished event has been in the pipeline (0 when none)."),
		writeFail:   d("writes_failing_seconds", "How long writes to the sink or dead-letter writer have kept failing (0 when they succeed)."),
		lag:         d("consumer_lag", "Events waiting to be consumed, in total (-1 when unknown)."),
		lagPart:     d("consumer_lag_partition", "Events waiting to be consumed, per partition or stream.", "partition"),
	}
	m.reg.MustRegister(m, m.latency, m.pauseDur,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Attach points the gauges and counters at p. Call it once, after
// [sluice.New].
func (m *Metrics) Attach(p *sluice.Pipeline) {
	m.mu.Lock()
	m.p = p
	m.mu.Unlock()
}

// Registry returns the registry the metrics are on.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// EventDone implements [sluice.Observer].
func (m *Metrics) EventDone(o sluice.Outcome, latency time.Duration) {
	label := "enriched"
	if o == sluice.OutcomeDeadLettered {
		label = "dead_lettered"
	}
	m.latency.WithLabelValues(label).Observe(latency.Seconds())
}

// RateLimited implements [sluice.Observer].
func (m *Metrics) RateLimited(pause time.Duration) { m.pauseDur.Observe(pause.Seconds()) }

// Describe implements [prometheus.Collector].
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{m.received, m.processed, m.enriched, m.dead, m.retried,
		m.rateLimited, m.pauses, m.inFlight, m.paused, m.up, m.status, m.oldest, m.writeFail, m.lag, m.lagPart} {
		ch <- d
	}
}

// Collect implements [prometheus.Collector].
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	m.mu.RLock()
	p := m.p
	m.mu.RUnlock()
	if p == nil {
		return
	}
	h := p.Health(context.Background()) // bounded by the pipeline's probe timeout
	counter := func(d *prometheus.Desc, v uint64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v))
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter(m.received, h.Received)
	counter(m.processed, h.Processed)
	counter(m.enriched, h.Enriched)
	counter(m.dead, h.DeadLettered)
	counter(m.retried, h.Retried)
	counter(m.rateLimited, h.RateLimited)
	counter(m.pauses, h.RateLimitPauses)
	gauge(m.inFlight, float64(h.InFlight))
	gauge(m.paused, b2f(h.Status == "paused"))
	gauge(m.up, b2f(h.Status != sluice.HealthStopped))
	for _, st := range []string{sluice.HealthOK, sluice.HealthPaused, sluice.HealthStalled, sluice.HealthDegraded, sluice.HealthStopped} {
		gauge(m.status, b2f(h.Status == st), st)
	}
	gauge(m.oldest, h.OldestInFlightSeconds)
	gauge(m.writeFail, h.WritesFailingSeconds)
	gauge(m.lag, float64(h.ConsumerLag))
	for part, n := range h.LagByPartition {
		gauge(m.lagPart, float64(n), part)
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

var _ sluice.Observer = (*Metrics)(nil)
var _ prometheus.Collector = (*Metrics)(nil)
