package sluice

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"
)

// Health is the JSON document served by [Pipeline.HealthHandler] at
// /healthz. It is built from a [Stats] snapshot: the same [Counts], the
// timings in seconds and milliseconds, the source's lag, and a verdict.
// Its field names are a stable contract.
type Health struct {
	// Status is, from worst to best:
	//   - "stopped": Run returned, or the pipeline is shutting down after an
	//     error such as a persistent rate limit (see Error);
	//   - "starting": Run has not started the pipeline yet;
	//   - "degraded": the source cannot be reached: its lag probe fails
	//     (broker or server down, see Reason);
	//   - "stalled": the oldest unfinished event has been in the pipeline
	//     longer than the stall threshold, or writes have kept failing (see
	//     Reason and [WithStallThreshold]);
	//   - "paused": inside a rate-limit pause, or a pause an enricher asked
	//     for with a [PauseError] (see PausedUntil and Reason);
	//   - "ok".
	//
	// The handler answers 200 for "ok" and "paused", 503 otherwise.
	Status string `json:"status"`
	// Reason explains a status other than "ok", in one line.
	Reason string `json:"reason,omitempty"`
	// OldestInFlightSeconds is how long the oldest unfinished event has been
	// in the pipeline, 0 when none is.
	OldestInFlightSeconds float64 `json:"oldest_in_flight_seconds"`
	// WritesFailingSeconds is how long writes to the sink or dead-letter
	// writer have been failing without a success, 0 when they are not.
	WritesFailingSeconds float64 `json:"writes_failing_seconds,omitempty"`
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
	Processed uint64 `json:"processed"`
	Counts
	// PausedUntil is when the current pause ends (RFC 3339), if paused.
	PausedUntil string `json:"paused_until,omitempty"`
	// LatencyMs holds enrichment latency percentiles in milliseconds.
	LatencyMs map[string]float64 `json:"latency_ms"`
	// Error is the error that stopped the pipeline, if any.
	Error string `json:"error,omitempty"`
	// Parts holds the figures of the source, enricher and sinks that
	// implement [HealthReporter], by the name each reports.
	Parts map[string]any `json:"parts,omitempty"`
}

// HealthReporter is an optional interface of a [Source], [Enricher], [Sink]
// or [DeadLetterWriter] with figures of its own for the health document,
// such as an enrichment cache's hit ratio: HealthReport returns a name and
// a JSON-encodable value, shown under [Health].Parts[name], or an empty
// name for nothing. It is called on every health probe, so it must be cheap
// and safe for concurrent use.
type HealthReporter interface {
	HealthReport() (name string, v any)
}

// Health status values; see [Health.Status].
const (
	HealthOK       = "ok"
	HealthStarting = "starting"
	HealthPaused   = "paused"
	HealthStalled  = "stalled"
	HealthDegraded = "degraded"
	HealthStopped  = "stopped"
)

// healthLagTTL is how long a lag reading is reused, so that frequent probes
// do not each cost broker round trips.
const healthLagTTL = time.Second

// probeTimeout bounds the broker round trips of one health or readiness
// probe, so that every probe answers well within a 1 s probe timeout.
const probeTimeout = 800 * time.Millisecond

// lagReadTimeout bounds one read of the source's lag; lagStaleAfter is how
// long health waits for a successful reading before it says "degraded".
const (
	lagReadTimeout = 5 * time.Second
	lagStaleAfter  = 10 * time.Second
)

// writeStallAfter caps how long writes may keep failing before health says
// "stalled", whatever the stall threshold.
const writeStallAfter = 30 * time.Second

type lagCache struct {
	mu      sync.Mutex
	at      time.Time // clock time of the last finished reading
	lag     Lag
	err     error
	goodAt  time.Time     // clock time of the last successful reading
	probing chan struct{} // closed when the probe in flight ends; nil when none
}

// Health computes the health document. Lag is read from the source when it
// implements [LagReporter], at most once a second.
func (p *Pipeline) Health(ctx context.Context) Health {
	st := p.Stats()
	h := Health{
		Status:                   HealthOK,
		OldestInFlightSeconds:    st.OldestInFlight.Seconds(),
		WritesFailingSeconds:     st.WritesFailingFor.Seconds(),
		ConsumerLag:              -1,
		LagByPartition:           map[string]int64{},
		EnrichmentSuccessRate:    st.WindowSuccessRate,
		SuccessRateWindow:        st.Window.String(),
		SuccessRateWindowSeconds: st.Window.Seconds(),
		TotalSuccessRate:         st.SuccessRate,
		Processed:                st.Enriched + st.DeadLettered,
		Counts:                   st.Counts,
		LatencyMs: map[string]float64{
			"p50": ms(st.LatencyP50), "p90": ms(st.LatencyP90), "p99": ms(st.LatencyP99),
		},
		Error: st.Err,
	}
	var lagErr error
	if lr, ok := p.src.(LagReporter); ok {
		lag, err := p.lag(ctx, lr)
		if err != nil {
			if !errors.Is(err, errLagPending) {
				lagErr = err
			}
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
	for _, part := range []any{p.src, p.enr, p.sink, p.dlq} {
		hr, ok := part.(HealthReporter)
		if !ok {
			continue
		}
		if name, v := hr.HealthReport(); name != "" {
			if h.Parts == nil {
				h.Parts = map[string]any{}
			}
			h.Parts[name] = v
		}
	}
	if st.State == StatePaused && !st.PausedUntil.IsZero() {
		h.PausedUntil = st.PausedUntil.UTC().Format(time.RFC3339Nano)
	}
	stall := p.cfg.stallAfter
	switch {
	case st.State == StateStopped || (st.State == StateStopping && st.Err != ""):
		h.Status = HealthStopped
		h.Reason = st.Err
		if h.Reason == "" {
			h.Reason = "the pipeline is not running"
		}
	case st.State == StateStarting:
		h.Status, h.Reason = HealthStarting, "Run has not started the pipeline yet"
	case lagErr != nil:
		h.Status = HealthDegraded
		h.Reason = "cannot reach the source: " + lagErr.Error()
	case st.WritesFailingFor >= min(stall, writeStallAfter):
		h.Status = HealthStalled
		h.Reason = fmt.Sprintf("writes have been failing for %s: %s", st.WritesFailingFor.Round(time.Second), st.WriteError)
	case st.OldestInFlight >= stall:
		h.Status = HealthStalled
		h.Reason = fmt.Sprintf("the oldest unfinished event has been in the pipeline for %s (stall threshold %s)",
			st.OldestInFlight.Round(time.Second), stall)
	case st.State == StatePaused && st.PauseReason != "":
		h.Status = HealthPaused
		h.Reason = st.PauseReason + "; consumption paused"
	case st.State == StatePaused:
		h.Status = HealthPaused
		h.Reason = "rate limited by the model's API; consumption paused"
	}
	return h
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// lag returns the source's lag, read at most once per healthLagTTL. The
// read runs on its own goroutine, with lagReadTimeout, and a probe waits at
// most probeTimeout for it, so that it answers in time even when the
// broker is slow or the source ignores its context. A probe that finds a
// read still running gets the last reading while that is younger than
// lagStaleAfter; a read that fails, or no successful reading for
// lagStaleAfter, is an error.
func (p *Pipeline) lag(ctx context.Context, lr LagReporter) (Lag, error) {
	c := &p.lagCache
	c.mu.Lock()
	now := p.clock.Now()
	if !c.at.IsZero() && now.Sub(c.at) < healthLagTTL {
		defer c.mu.Unlock()
		return c.lag, c.err
	}
	if c.goodAt.IsZero() {
		c.goodAt = now // the first reading gets lagStaleAfter too
	}
	done := c.probing
	if done == nil {
		done = make(chan struct{})
		c.probing = done
		go func() {
			rctx, cancel := context.WithTimeout(context.Background(), lagReadTimeout)
			lag, err := lr.Lag(rctx)
			if err == nil && rctx.Err() != nil {
				err = fmt.Errorf("no answer within %s: %w", lagReadTimeout, rctx.Err())
			}
			cancel()
			c.mu.Lock()
			c.lag, c.err, c.at, c.probing = lag, err, p.clock.Now(), nil
			if err == nil {
				c.goodAt = c.at
			}
			c.mu.Unlock()
			close(done)
		}()
	}
	c.mu.Unlock()
	t := time.NewTimer(probeTimeout)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
	case <-ctx.Done():
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	select {
	case <-done:
		return c.lag, c.err
	default:
	}
	// The read is still running.
	if since := p.clock.Now().Sub(c.goodAt); since >= lagStaleAfter {
		return Lag{Total: -1}, fmt.Errorf("the source has not answered a lag probe for %s", since.Round(time.Second))
	}
	if c.at.IsZero() {
		return Lag{Total: -1}, errLagPending
	}
	return c.lag, c.err // the last reading, until the running one ends
}

// errLagPending is the lag error while the first reading is under way; it
// does not make the pipeline degraded.
var errLagPending = errors.New("the first lag reading is under way")

// HealthHandler serves the [Health] document as JSON: status 200 while the
// pipeline is "ok" or "paused", 503 when it is "degraded", "stalled" or
// "stopped". It makes at most one lag round trip to the broker a second,
// bounded well under a second. Mount it where you like, usually at
// /healthz; for a liveness probe use [Pipeline.LiveHandler] instead.
func (p *Pipeline) HealthHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := p.Health(r.Context())
		code := http.StatusOK
		if h.Status != HealthOK && h.Status != HealthPaused {
			code = http.StatusServiceUnavailable
		}
		writeJSON(w, code, h)
	})
}

// Live reports whether the process should be left running: nil unless Run
// has returned or the pipeline is shutting down after an error (a graceful
// drain stays live). It makes no broker round trip and never blocks, so a
// broker outage does not get a healthy process restarted.
func (p *Pipeline) Live() error {
	st := p.Stats()
	if st.State == StateStopped || (st.State == StateStopping && st.Err != "") {
		if st.Err != "" {
			return fmt.Errorf("sluice: pipeline stopped: %s", st.Err)
		}
		return errors.New("sluice: pipeline stopped")
	}
	return nil
}

// LiveHandler serves liveness for /livez: 200 {"live":true} while
// [Pipeline.Live] returns nil, else 503 with the reason. Use it for
// Kubernetes livenessProbe; use /readyz for readinessProbe.
func (p *Pipeline) LiveHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := p.Live(); err != nil {
			writeJSON(w, http.StatusServiceUnavailable, map[string]any{"live": false, "reason": err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"live": true})
	})
}

// Ready reports whether the pipeline can do its work now: nil once Run has
// started, the source answers its lag probe (when it reports lag), and
// every part implementing [Readier] (source, enricher, sink, dead-letter
// writer) says it is ready (for example, a Redis Streams source has
// finished reconciling its pending entries).
func (p *Pipeline) Ready(ctx context.Context) error {
	switch s := p.State(); s {
	case StateRunning, StatePaused:
	default:
		return fmt.Errorf("sluice: pipeline is %s", s)
	}
	if lr, ok := p.src.(LagReporter); ok {
		if _, err := p.lag(ctx, lr); err != nil && !errors.Is(err, errLagPending) {
			return fmt.Errorf("sluice: cannot reach the source: %w", err)
		}
	}
	for _, part := range distinct(p.src, p.enr, p.sink, p.dlq) {
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
		ctx, cancel := context.WithTimeout(r.Context(), probeTimeout)
		defer cancel()
		if err := p.Ready(ctx); err != nil {
			writeJSON(w, http.StatusServiceUnavailable, map[string]any{"ready": false, "reason": err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"ready": true})
	})
}

// Handler returns a handler serving /livez, /readyz and /healthz, for
// mounting on an existing mux: mux.Handle("/", p.Handler()) or under a
// prefix with http.StripPrefix. Add /metrics from the metrics package
// alongside.
func (p *Pipeline) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /livez", p.LiveHandler())
	mux.Handle("GET /readyz", p.ReadyHandler())
	mux.Handle("GET /healthz", p.HealthHandler())
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
