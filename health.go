package sluice

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"time"
)

// Health is the JSON document served by [Pipeline.HealthHandler] at
// /healthz. Its field names are a stable contract.
type Health struct {
	// Status is "ok", "paused" (inside a rate-limit pause) or "stopped"
	// (Run returned, or the pipeline is shutting down after an error such as
	// a persistent rate limit).
	Status string `json:"status"`
	// ConsumerLag is the total lag, or -1 when unknown.
	ConsumerLag int64 `json:"consumer_lag"`
	// LagByPartition is the lag per "topic/partition", or per stream.
	LagByPartition map[string]int64 `json:"lag_by_partition"`
	// LagError says why the lag is unknown, if it is.
	LagError string `json:"lag_error,omitempty"`
	// EnrichmentSuccessRate is enriched / (enriched + dead-lettered) over
	// the last SuccessRateWindow, 1 when nothing finished in it.
	EnrichmentSuccessRate float64 `json:"enrichment_success_rate"`
	// SuccessRateWindow is the window of EnrichmentSuccessRate, as a Go
	// duration ("1m0s"); SuccessRateWindowSeconds is the same in seconds.
	SuccessRateWindow        string  `json:"success_rate_window"`
	SuccessRateWindowSeconds float64 `json:"success_rate_window_seconds"`
	// TotalSuccessRate is the same ratio since start.
	TotalSuccessRate float64 `json:"total_success_rate"`
	// Processed counts events finished either way: Enriched + DeadLettered.
	Processed       uint64 `json:"processed"`
	Received        uint64 `json:"received"`
	Enriched        uint64 `json:"enriched"`
	DeadLettered    uint64 `json:"dead_lettered"`
	Retried         uint64 `json:"retried"`
	RateLimited     uint64 `json:"rate_limited"`
	RateLimitPauses uint64 `json:"rate_limit_pauses"`
	InFlight        int64  `json:"in_flight"`
	// PausedUntil is when the current pause ends (RFC 3339), if paused.
	PausedUntil string `json:"paused_until,omitempty"`
	// LatencyMs holds enrichment latency percentiles in milliseconds.
	LatencyMs map[string]float64 `json:"latency_ms"`
	// Error is the error that stopped the pipeline, if any.
	Error string `json:"error,omitempty"`
}

// healthLagTTL is how long a lag reading is reused, so that frequent probes
// do not each cost broker round trips.
const healthLagTTL = time.Second

type lagCache struct {
	mu  sync.Mutex
	at  time.Time
	lag Lag
	err error
}

// Health computes the health document. Lag is read from the source when it
// implements [LagReporter], at most once a second.
func (p *Pipeline) Health(ctx context.Context) Health {
	st := p.Stats()
	h := Health{
		Status:                   "ok",
		ConsumerLag:              -1,
		LagByPartition:           map[string]int64{},
		EnrichmentSuccessRate:    st.WindowSuccessRate,
		SuccessRateWindow:        st.Window.String(),
		SuccessRateWindowSeconds: st.Window.Seconds(),
		TotalSuccessRate:         st.SuccessRate,
		Processed:                st.Enriched + st.DeadLettered,
		Received:                 st.Received,
		Enriched:                 st.Enriched,
		DeadLettered:             st.DeadLettered,
		Retried:                  st.Retried,
		RateLimited:              st.RateLimited,
		RateLimitPauses:          st.RateLimitPauses,
		InFlight:                 st.InFlight,
		LatencyMs: map[string]float64{
			"p50": ms(st.LatencyP50), "p90": ms(st.LatencyP90), "p99": ms(st.LatencyP99),
		},
		Error: st.Err,
	}
	switch {
	case st.State == StateStopped || (st.State == StateStopping && st.Err != ""):
		h.Status = "stopped"
	case st.State == StatePaused:
		h.Status = "paused"
		if !st.PausedUntil.IsZero() {
			h.PausedUntil = st.PausedUntil.UTC().Format(time.RFC3339Nano)
		}
	}
	if lr, ok := p.src.(LagReporter); ok {
		lag, err := p.lag(ctx, lr)
		if err != nil {
			h.LagError = err.Error()
		} else {
			h.ConsumerLag = lag.Total
			if lag.ByPartition != nil {
				h.LagByPartition = lag.ByPartition
			}
		}
	} else {
		h.LagError = fmt.Sprintf("source %T does not report lag", p.src)
	}
	return h
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func (p *Pipeline) lag(ctx context.Context, lr LagReporter) (Lag, error) {
	c := &p.lagCache
	c.mu.Lock()
	defer c.mu.Unlock()
	now := p.clock.Now()
	if !c.at.IsZero() && now.Sub(c.at) < healthLagTTL {
		return c.lag, c.err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	c.lag, c.err = lr.Lag(ctx)
	c.at = now
	return c.lag, c.err
}

// HealthHandler serves the [Health] document as JSON: status 200 while the
// pipeline is "ok" or "paused", 503 once it is "stopped". Mount it where you
// like, usually at /healthz.
func (p *Pipeline) HealthHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := p.Health(r.Context())
		code := http.StatusOK
		if h.Status == "stopped" {
			code = http.StatusServiceUnavailable
		}
		writeJSON(w, code, h)
	})
}

// Ready reports whether the pipeline is running and its source and sink
// are connected: nil once Run has started and every part implementing
// [Readier] says it is ready (for example, a Redis Streams source has
// finished reconciling its pending entries).
func (p *Pipeline) Ready(ctx context.Context) error {
	switch s := p.State(); s {
	case StateRunning, StatePaused:
	default:
		return fmt.Errorf("sluice: pipeline is %s", s)
	}
	for _, part := range distinct(p.src, p.sink, p.dlq) {
		if rd, ok := part.(Readier); ok {
			if err := rd.Ready(ctx); err != nil {
				return fmt.Errorf("sluice: %T not ready: %w", part, err)
			}
		}
	}
	return nil
}

// ReadyHandler serves readiness: 200 {"ready":true} when [Pipeline.Ready]
// returns nil, else 503 with the reason. Mount it at /readyz.
func (p *Pipeline) ReadyHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		if err := p.Ready(ctx); err != nil {
			writeJSON(w, http.StatusServiceUnavailable, map[string]any{"ready": false, "reason": err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"ready": true})
	})
}

// Handler returns a handler serving /healthz and /readyz, for mounting on
// an existing mux: mux.Handle("/", p.Handler()) or under a prefix with
// http.StripPrefix. Add /metrics from the metrics package alongside.
func (p *Pipeline) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /healthz", p.HealthHandler())
	mux.Handle("GET /readyz", p.ReadyHandler())
	return mux
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
