package sluice

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// State is the pipeline's life-cycle state, as reported by [Pipeline.Stats]
// and health endpoints.
type State string

// States of a pipeline.
const (
	StateStarting State = "starting" // New was called, Run was not
	StateRunning  State = "running"  // consuming
	StatePaused   State = "paused"   // inside a rate-limit pause
	StateStopping State = "stopping" // draining after cancellation or an error
	StateStopped  State = "stopped"  // Run has returned
)

// Outcome is how an event left the pipeline.
type Outcome int

// Outcomes reported to an [Observer].
const (
	OutcomeEnriched Outcome = iota
	OutcomeDeadLettered
)

// Observer is told about events as they finish, for metrics. See
// [WithObserver]. Methods are called from the pipeline's goroutines and must
// not block.
//
// An Observer that also has a method
//
//	Attach(p *Pipeline) error
//
// is handed the pipeline by [New] once it is built, so that it can read
// [Pipeline.Stats] and [Pipeline.Health] (the metrics package registers its
// collector there); an error from Attach fails New. An Observer that
// implements [EventTracer] also follows each event, for tracing.
type Observer interface {
	// EventDone is called once an event's output or dead letter is written
	// and the event is acked. latency runs from its first enrichment attempt
	// to its final outcome (zero for events rejected before any attempt).
	EventDone(o Outcome, latency time.Duration)
	// RateLimited is called for each rate-limit pause that starts.
	RateLimited(pause time.Duration)
}

// Counts are a pipeline's event counters since start, shared by [Stats]
// and the [Health] document.
type Counts struct {
	// Received counts events fetched from the source.
	Received uint64 `json:"received"`
	// Enriched counts events whose enriched form was written and acked.
	Enriched uint64 `json:"enriched"`
	// DeadLettered counts events written to the dead-letter writer and
	// acked.
	DeadLettered uint64 `json:"dead_lettered"`
	// Retried counts transient failures that were retried.
	Retried uint64 `json:"retried"`
	// RateLimited counts enrichment calls refused with a rate limit.
	RateLimited uint64 `json:"rate_limited"`
	// RateLimitPauses counts pauses of consumption caused by rate limits.
	RateLimitPauses uint64 `json:"rate_limit_pauses"`
	// InFlight is the number of events fetched but not yet acked.
	InFlight int64 `json:"in_flight"`
	// PeakInFlight is the most events in flight at once since the pipeline
	// was created: what a rebalance or a crash would have delivered again
	// at worst, besides what was acked but not yet committed.
	PeakInFlight int64 `json:"peak_in_flight"`
}

// Stats is a snapshot of a pipeline's counters and timings; [Health] is
// built from it.
type Stats struct {
	// State is the life-cycle state.
	State State `json:"status"`
	Counts
	// SuccessRate is Enriched / (Enriched + DeadLettered) since start, or 1
	// before any event finished.
	SuccessRate float64 `json:"success_rate"`
	// WindowSuccessRate is the same ratio over the last Window.
	WindowSuccessRate float64 `json:"window_success_rate"`
	// Window is the span WindowSuccessRate covers.
	Window time.Duration `json:"window_ns"`
	// PausedUntil is when the current rate-limit pause ends, if paused. It
	// can lie a moment in the past while the pipeline is resuming.
	PausedUntil time.Time `json:"paused_until,omitzero"`
	// PauseReason says why, when the pause is an enricher's [PauseError]
	// rather than a rate limit.
	PauseReason string `json:"pause_reason,omitempty"`
	// LatencyP50, LatencyP90 and LatencyP99 are percentiles of enrichment
	// latency over the most recent events.
	LatencyP50 time.Duration `json:"latency_p50_ns"`
	LatencyP90 time.Duration `json:"latency_p90_ns"`
	LatencyP99 time.Duration `json:"latency_p99_ns"`
	// OldestInFlight is how long the oldest event not yet acked has been in
	// the pipeline (since it was fetched), or 0 when none is.
	OldestInFlight time.Duration `json:"oldest_in_flight_ns"`
	// WritesFailingFor is how long writes to the sink or the dead-letter
	// writer have been failing without a success, or 0 when they are not;
	// WriteError is the latest such failure.
	WritesFailingFor time.Duration `json:"writes_failing_ns"`
	WriteError       string        `json:"write_error,omitempty"`
	// Err is the error that stopped the pipeline, if any.
	Err string `json:"error,omitempty"`
}

const latencySamples = 2048

// stats holds the counters behind [Stats].
type stats struct {
	received, enriched, dead, retried, rateLimited, pauses atomic.Uint64
	inFlight, peakInFlight                                 atomic.Int64
	oldestNs                                               atomic.Int64 // fetch time of the oldest unfinished event; 0 when none

	writeMu       sync.Mutex
	writesFailing int       // writers inside a run of failed writes
	writeFailFrom time.Time // when the current run of failures began
	writeErr      string    // the latest write error

	mu          sync.Mutex
	lat         [latencySamples]time.Duration
	latN        int // samples written so far
	buckets     []bucket
	bucketNs    int64
	err         string
	paused      time.Time
	pauseReason string
}

type bucket struct {
	sec            int64
	enriched, dead uint64
}

func newStats(window time.Duration) *stats {
	n := int(window / time.Second)
	return &stats{buckets: make([]bucket, n), bucketNs: int64(time.Second)}
}

// record adds finished events at time now.
func (s *stats) record(now time.Time, enriched, dead uint64, lats []time.Duration) {
	s.enriched.Add(enriched)
	s.dead.Add(dead)
	sec := now.UnixNano() / s.bucketNs
	s.mu.Lock()
	b := &s.buckets[int(sec%int64(len(s.buckets)))]
	if b.sec != sec {
		*b = bucket{sec: sec}
	}
	b.enriched += enriched
	b.dead += dead
	for _, l := range lats {
		s.lat[s.latN%latencySamples] = l
		s.latN++
	}
	s.mu.Unlock()
}

// setErr records the error that stopped the pipeline.
// setInFlight records how many events are in flight, and the peak. Only the
// runner's goroutine calls it.
func (s *stats) setInFlight(n int) {
	s.inFlight.Store(int64(n))
	if int64(n) > s.peakInFlight.Load() {
		s.peakInFlight.Store(int64(n))
	}
}

func (s *stats) setErr(err error) {
	s.mu.Lock()
	s.err = err.Error()
	s.mu.Unlock()
}

// setPausedUntil records when the current pause ends, and why when it is
// not a rate limit.
func (s *stats) setPausedUntil(t time.Time, reason string) {
	s.mu.Lock()
	s.paused = t
	s.pauseReason = reason
	s.mu.Unlock()
}

// writeFailed notes a failed write; first says whether it is the first
// failure of the caller's current write.
func (s *stats) writeFailed(now time.Time, first bool, err error) {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	if first {
		if s.writesFailing == 0 {
			s.writeFailFrom = now
		}
		s.writesFailing++
	}
	s.writeErr = err.Error()
}

// writeRecovered ends a run of failures that writeFailed began.
func (s *stats) writeRecovered() {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	if s.writesFailing--; s.writesFailing == 0 {
		s.writeFailFrom = time.Time{}
		s.writeErr = ""
	}
}

// writeFailure returns since when writes have been failing and the latest
// error, or the zero time when they are not.
func (s *stats) writeFailure() (time.Time, string) {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	return s.writeFailFrom, s.writeErr
}

func ratio(ok, bad uint64) float64 {
	if ok+bad == 0 {
		return 1
	}
	return float64(ok) / float64(ok+bad)
}

func (s *stats) snapshot(now time.Time, window time.Duration) Stats {
	st := Stats{
		Counts: Counts{
			Received:        s.received.Load(),
			Enriched:        s.enriched.Load(),
			DeadLettered:    s.dead.Load(),
			Retried:         s.retried.Load(),
			RateLimited:     s.rateLimited.Load(),
			RateLimitPauses: s.pauses.Load(),
			InFlight:        s.inFlight.Load(),
			PeakInFlight:    s.peakInFlight.Load(),
		},
		Window: window,
	}
	st.SuccessRate = ratio(st.Enriched, st.DeadLettered)
	sec := now.UnixNano() / s.bucketNs
	var ok, bad uint64
	s.mu.Lock()
	for _, b := range s.buckets {
		if b.sec > sec-int64(len(s.buckets)) && b.sec <= sec {
			ok += b.enriched
			bad += b.dead
		}
	}
	n := min(s.latN, latencySamples)
	lat := slices.Clone(s.lat[:n])
	st.Err = s.err
	st.PausedUntil = s.paused // kept by Pipeline.Stats only while paused
	st.PauseReason = s.pauseReason
	s.mu.Unlock()
	if ns := s.oldestNs.Load(); ns != 0 {
		st.OldestInFlight = max(now.Sub(time.Unix(0, ns)), 0)
	}
	if from, werr := s.writeFailure(); !from.IsZero() {
		st.WritesFailingFor = max(now.Sub(from), 0)
		st.WriteError = werr
	}
	st.WindowSuccessRate = ratio(ok, bad)
	if n > 0 {
		slices.Sort(lat)
		st.LatencyP50 = lat[(n-1)*50/100]
		st.LatencyP90 = lat[(n-1)*90/100]
		st.LatencyP99 = lat[(n-1)*99/100]
	}
	return st
}
