// Package metrics exports a sluice pipeline's counters, latency histogram,
// lag and pause state as Prometheus metrics. It lives apart from the core so
// that pipelines that do not use Prometheus do not depend on it.
//
// One option wires it all, on the registry you serve:
//
//	reg := prometheus.NewRegistry()
//	p, err := sluice.New(src, enr, sink, metrics.Export(reg))
//	...
//	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
package metrics

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice"
)

// exporter is the [sluice.Observer] behind [Export]: it feeds the
// histograms as events finish, and as a [prometheus.Collector] reads the
// pipeline's health when scraped.
type exporter struct {
	reg      prometheus.Registerer
	latency  *prometheus.HistogramVec
	pauseDur prometheus.Histogram

	mu sync.RWMutex
	p  *sluice.Pipeline

	received, enriched, dead, retried, rateLimited, pauses *prometheus.Desc
	processed, inFlight, paused, lag, lagPart, up          *prometheus.Desc
	status, oldest, writeFail                              *prometheus.Desc
}

// Option configures [Export].
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

// Export returns a pipeline option that exports the pipeline's metrics on
// reg: [sluice.New] registers them there once the pipeline is built, and
// fails, with an error matching [sluice.ErrInvalidConfig], if reg is nil or
// refuses them (for example because another pipeline's metrics with the
// same names and labels are on it: pipelines that share a registry each
// need [WithConstLabels] with the same label names and their own values).
// Serve reg as you like, usually with promhttp.HandlerFor at /metrics. An
// Export option serves one pipeline.
func Export(reg prometheus.Registerer, opts ...Option) sluice.Option {
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
	m := &exporter{
		reg: reg,
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
		status:      d("status", "1 for the pipeline's current health status (ok, starting, paused, stalled, degraded, stopped), 0 for the others.", "status"),
		oldest:      d("oldest_in_flight_seconds", "How long the oldest unfinished event has been in the pipeline (0 when none)."),
		writeFail:   d("writes_failing_seconds", "How long writes to the sink or dead-letter writer have kept failing (0 when they succeed)."),
		lag:         d("consumer_lag", "Events waiting to be consumed, in total (-1 when unknown)."),
		lagPart:     d("consumer_lag_partition", "Events waiting to be consumed, per partition or stream.", "partition"),
	}
	return sluice.WithObserver(m)
}

// Attach registers the metrics of p on the registerer; [sluice.New] calls
// it once p is built.
func (m *exporter) Attach(p *sluice.Pipeline) error {
	if m.reg == nil {
		return errors.New("metrics: Export(nil): need a prometheus.Registerer")
	}
	m.mu.Lock()
	taken := m.p != nil
	if !taken {
		m.p = p
	}
	m.mu.Unlock()
	if taken {
		return errors.New("metrics: this Export option already serves another pipeline; give each pipeline its own")
	}
	if err := m.reg.Register(m); err != nil {
		m.mu.Lock()
		m.p = nil
		m.mu.Unlock()
		return err
	}
	return nil
}

// EventDone implements [sluice.Observer].
func (m *exporter) EventDone(o sluice.Outcome, latency time.Duration) {
	label := "enriched"
	if o == sluice.OutcomeDeadLettered {
		label = "dead_lettered"
	}
	m.latency.WithLabelValues(label).Observe(latency.Seconds())
}

// RateLimited implements [sluice.Observer].
func (m *exporter) RateLimited(pause time.Duration) { m.pauseDur.Observe(pause.Seconds()) }

// Describe implements [prometheus.Collector].
func (m *exporter) Describe(ch chan<- *prometheus.Desc) {
	m.latency.Describe(ch)
	m.pauseDur.Describe(ch)
	for _, d := range []*prometheus.Desc{m.received, m.processed, m.enriched, m.dead, m.retried,
		m.rateLimited, m.pauses, m.inFlight, m.paused, m.up, m.status, m.oldest, m.writeFail, m.lag, m.lagPart} {
		ch <- d
	}
}

// Collect implements [prometheus.Collector].
func (m *exporter) Collect(ch chan<- prometheus.Metric) {
	m.latency.Collect(ch)
	m.pauseDur.Collect(ch)
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
	for _, st := range []string{sluice.HealthOK, sluice.HealthStarting, sluice.HealthPaused, sluice.HealthStalled, sluice.HealthDegraded, sluice.HealthStopped} {
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

var _ sluice.Observer = (*exporter)(nil)
var _ prometheus.Collector = (*exporter)(nil)
