package sluice_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/sluicetest"
)

func getJSON(t *testing.T, h http.Handler, path string) (int, map[string]any) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	var body map[string]any
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &body), rec.Body.String())
	return rec.Code, body
}

func TestHealthAndReadiness(t *testing.T) {
	clk := sluicetest.NewClock(epoch)
	src := sluicetest.NewSource("in", 2)
	src.Publish(nil, []byte(`good`))
	src.Publish(nil, []byte(`bad`))
	var first = true
	enr := sluice.EnricherFunc(func(_ context.Context, in *sluice.Message) (*sluice.Message, error) {
		if string(in.Value) == "bad" {
			return nil, sluice.Permanent(assert.AnError)
		}
		if first {
			first = false
			return nil, &sluice.RateLimitError{RetryAfter: time.Second}
		}
		return in, nil
	})
	sink := sluicetest.NewSink()
	obs := &doneObserver{done: make(chan sluice.Outcome, 16)}
	p, err := sluice.New(src, enr, sink, sluice.WithClock(clk), sluice.WithConcurrency(1), sluice.WithPauseJitter(0),
		sluice.WithObserver(obs), quiet())
	require.NoError(t, err)
	h := p.Handler()

	code, _ := getJSON(t, h, "/readyz")
	assert.Equal(t, http.StatusServiceUnavailable, code, "not ready before Run")

	ctx, cancel := context.WithCancel(context.Background())
	done := start(t, ctx, p)
	require.True(t, clk.BlockUntil(1, nil)) // paused by the 429
	code, body := getJSON(t, h, "/healthz")
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, "paused", body["status"])
	assert.Equal(t, epoch.Add(time.Second).Format(time.RFC3339Nano), body["paused_until"])
	code, _ = getJSON(t, h, "/readyz")
	assert.Equal(t, http.StatusOK, code)

	clk.Advance(time.Second)
	// The observer hears of each outcome once it is counted.
	assert.ElementsMatch(t, []sluice.Outcome{sluice.OutcomeEnriched, sluice.OutcomeDeadLettered},
		[]sluice.Outcome{wait(t, obs.done), wait(t, obs.done)})
	code, body = getJSON(t, h, "/healthz")
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, "ok", body["status"])
	for _, k := range []string{"consumer_lag", "lag_by_partition", "enrichment_success_rate", "processed",
		"enriched", "dead_lettered", "retried", "rate_limit_pauses", "in_flight", "peak_in_flight", "success_rate_window"} {
		assert.Contains(t, body, k)
	}
	assert.EqualValues(t, 2, body["processed"])
	assert.EqualValues(t, 0.5, body["enrichment_success_rate"])
	assert.EqualValues(t, 1, body["rate_limit_pauses"])
	assert.EqualValues(t, 0, body["consumer_lag"])
	assert.Equal(t, map[string]any{"in/0": 0.0, "in/1": 0.0}, body["lag_by_partition"])

	cancel()
	require.NoError(t, wait(t, done))
	code, body = getJSON(t, h, "/healthz")
	assert.Equal(t, http.StatusServiceUnavailable, code)
	assert.Equal(t, "stopped", body["status"])
}

type doneObserver struct{ done chan sluice.Outcome }

func (o *doneObserver) EventDone(out sluice.Outcome, _ time.Duration) { o.done <- out }

func (o *doneObserver) RateLimited(time.Duration) {}

// countingSink counts Flush and Ready calls; it is both sink and dead-letter
// writer, so each must happen once.
type countingSink struct {
	discard
	flushes, readies atomic.Int32
}

func (c *countingSink) Flush(context.Context) error { c.flushes.Add(1); return nil }

func (c *countingSink) Ready(context.Context) error { c.readies.Add(1); return nil }

func TestSinkThatIsAlsoTheDeadLetterWriterIsFlushedAndProbedOnce(t *testing.T) {
	src := sluicetest.NewSource("in", 1)
	src.Publish(nil, []byte(`a`))
	enr := sluice.EnricherFunc(func(_ context.Context, in *sluice.Message) (*sluice.Message, error) { return in, nil })
	sink := &countingSink{}
	p, err := sluice.New(src, enr, sink, quiet())
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := start(t, ctx, p)
	for p.State() == sluice.StateStarting {
		runtime.Gosched()
	}
	require.NoError(t, p.Ready(context.Background()))
	assert.EqualValues(t, 1, sink.readies.Load())
	cancel()
	require.NoError(t, wait(t, done))
	assert.EqualValues(t, 1, sink.flushes.Load())

	// Function types cannot be compared: telling them apart must not panic.
	ended := sluicetest.NewSource("in", 1)
	ended.End()
	fn := sluice.SinkFunc(func(context.Context, []*sluice.Message) error { return nil })
	p, err = sluice.New(ended, enr, fn, sluice.WithDeadLetter(sluice.DeadLetterFunc(func(context.Context, []sluice.DeadLetter) error { return nil })), quiet())
	require.NoError(t, err)
	require.NoError(t, p.Run(within(t)))
}

// flakySource is a source whose lag probe can fail or hang, as one does
// while its broker is down.
type flakySource struct {
	*sluicetest.Source
	mu      sync.Mutex
	lagErr  error
	hang    chan struct{} // when set, Lag blocks until it closes, ignoring ctx
	probing chan struct{}
}

func (f *flakySource) Lag(ctx context.Context) (sluice.Lag, error) {
	f.mu.Lock()
	err, hang := f.lagErr, f.hang
	f.mu.Unlock()
	if hang != nil {
		f.probing <- struct{}{}
		<-hang
	}
	if err != nil {
		return sluice.Lag{Total: -1}, err
	}
	return f.Source.Lag(ctx)
}

func (f *flakySource) set(err error, hang chan struct{}) {
	f.mu.Lock()
	f.lagErr, f.hang = err, hang
	f.mu.Unlock()
}

func TestHealthTellsTheTruthWhenTheBrokerIsDown(t *testing.T) {
	clk := sluicetest.NewClock(epoch)
	src := &flakySource{Source: sluicetest.NewSource("in", 1), probing: make(chan struct{}, 1)}
	enr := sluice.EnricherFunc(func(_ context.Context, in *sluice.Message) (*sluice.Message, error) { return in, nil })
	p, err := sluice.New(src, enr, sluicetest.NewSink(), sluice.WithClock(clk), quiet())
	require.NoError(t, err)
	h := p.Handler()
	ctx, cancel := context.WithCancel(context.Background())
	done := start(t, ctx, p)
	for p.State() == sluice.StateStarting {
		runtime.Gosched()
	}
	code, body := getJSON(t, h, "/healthz")
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, "ok", body["status"])

	src.set(errors.New("dial tcp 127.0.0.1:9092: connect: connection refused"), nil)
	clk.Advance(time.Second) // past the lag cache
	code, body = getJSON(t, h, "/healthz")
	assert.Equal(t, http.StatusServiceUnavailable, code)
	assert.Equal(t, "degraded", body["status"])
	assert.Contains(t, body["reason"], "connection refused")
	code, body = getJSON(t, h, "/readyz")
	assert.Equal(t, http.StatusServiceUnavailable, code)
	assert.Contains(t, body["reason"], "connection refused")
	code, _ = getJSON(t, h, "/livez")
	assert.Equal(t, http.StatusOK, code, "a broker outage is no reason to restart the process")

	// Back up: healthy again once the cache expires.
	src.set(nil, nil)
	clk.Advance(time.Second)
	code, body = getJSON(t, h, "/healthz")
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, "ok", body["status"])

	// A probe that never answers (and ignores its context) still gets a
	// bounded answer: the last reading while it is fresh enough, then
	// "degraded"; and one read runs however many probes come.
	hang := make(chan struct{})
	src.set(nil, hang)
	clk.Advance(time.Second)
	code, body = getJSON(t, h, "/healthz")
	<-src.probing
	assert.Equal(t, http.StatusOK, code, "a slow read keeps the last reading for a while")
	assert.Equal(t, "ok", body["status"])
	clk.Advance(10 * time.Second)
	code, body = getJSON(t, h, "/healthz")
	assert.Equal(t, http.StatusServiceUnavailable, code)
	assert.Equal(t, "degraded", body["status"])
	assert.Contains(t, body["reason"], "has not answered a lag probe for 11s")
	code, _ = getJSON(t, h, "/readyz")
	assert.Equal(t, http.StatusServiceUnavailable, code)
	assert.Empty(t, src.probing, "no second read while the first hangs")
	src.set(nil, nil)
	close(hang)
	require.Eventually(t, func() bool {
		clk.Advance(time.Second)
		code, body = getJSON(t, h, "/healthz")
		return code == http.StatusOK
	}, 10*time.Second, time.Millisecond)
	assert.Equal(t, "ok", body["status"])
	cancel()
	require.NoError(t, wait(t, done))
	code, _ = getJSON(t, h, "/livez")
	assert.Equal(t, http.StatusServiceUnavailable, code, "a pipeline whose Run returned is not live")
}

func TestHealthReportsAStalledEvent(t *testing.T) {
	clk := sluicetest.NewClock(epoch)
	src := sluicetest.NewSource("in", 1)
	src.Publish(nil, []byte(`slow`))
	g := newGated()
	sink := sluicetest.NewSink()
	p, err := sluice.New(src, g, sink, sluice.WithClock(clk), sluice.WithStallThreshold(2*time.Minute), quiet())
	require.NoError(t, err)
	h := p.Handler()
	ctx, cancel := context.WithCancel(context.Background())
	done := start(t, ctx, p)
	wait(t, g.started)

	clk.Advance(time.Minute)
	code, body := getJSON(t, h, "/healthz")
	assert.Equal(t, http.StatusOK, code)
	assert.EqualValues(t, 60, body["oldest_in_flight_seconds"])

	clk.Advance(time.Minute)
	code, body = getJSON(t, h, "/healthz")
	assert.Equal(t, http.StatusServiceUnavailable, code)
	assert.Equal(t, "stalled", body["status"])
	assert.Contains(t, body["reason"], "oldest unfinished event has been in the pipeline for 2m0s")

	g.release("slow", nil)
	require.NoError(t, sink.WaitFor(within(t), 1))
	require.Eventually(t, func() bool { return p.Stats().OldestInFlight == 0 }, 10*time.Second, time.Millisecond)
	clk.Advance(time.Second)
	code, body = getJSON(t, h, "/healthz")
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, "ok", body["status"])
	cancel()
	require.NoError(t, wait(t, done))
}

func TestHealthReportsWritesThatKeepFailing(t *testing.T) {
	clk := sluicetest.NewClock(epoch)
	src := sluicetest.NewSource("in", 1)
	src.Publish(nil, []byte(`a`))
	sink := sluicetest.NewSink()
	var down atomic.Bool
	down.Store(true)
	sink.WriteHook = func(context.Context, []*sluice.Message) error {
		if down.Load() {
			return errors.New("kafka: client has run out of available brokers")
		}
		return nil
	}
	enr := sluice.EnricherFunc(func(_ context.Context, in *sluice.Message) (*sluice.Message, error) { return in, nil })
	p, err := sluice.New(src, enr, sink, sluice.WithClock(clk), sluice.WithBackoff(time.Second, time.Second), quiet())
	require.NoError(t, err)
	h := p.Handler()
	ctx, cancel := context.WithCancel(context.Background())
	done := start(t, ctx, p)
	for range 31 { // the writer backs off 1s between attempts
		require.True(t, clk.BlockUntil(1, nil))
		clk.Advance(time.Second)
	}
	require.True(t, clk.BlockUntil(1, nil))
	code, body := getJSON(t, h, "/healthz")
	assert.Equal(t, http.StatusServiceUnavailable, code)
	assert.Equal(t, "stalled", body["status"])
	assert.Contains(t, body["reason"], "writes have been failing for")
	assert.Contains(t, body["reason"], "run out of available brokers")

	down.Store(false)
	clk.Advance(time.Second)
	require.NoError(t, sink.WaitFor(within(t), 1))
	require.Eventually(t, func() bool { return p.Stats().WritesFailingFor == 0 }, 10*time.Second, time.Millisecond)
	code, body = getJSON(t, h, "/healthz")
	assert.Equal(t, http.StatusOK, code, body["reason"])
	cancel()
	require.NoError(t, wait(t, done))
}

func TestLivenessAfterAnErrorStop(t *testing.T) {
	src := sluicetest.NewSource("in", 1)
	src.Publish(nil, []byte(`a`))
	enr := sluice.EnricherFunc(func(context.Context, *sluice.Message) (*sluice.Message, error) {
		return nil, sluice.Fatal(errors.New("model API rejected the key"))
	})
	p, err := sluice.New(src, enr, sluicetest.NewSink(), quiet())
	require.NoError(t, err)
	require.Error(t, p.Run(within(t)))
	code, body := getJSON(t, p.Handler(), "/livez")
	assert.Equal(t, http.StatusServiceUnavailable, code)
	assert.Contains(t, body["reason"], "rejected the key")
}

// reportingEnricher is an enricher with figures of its own.
type reportingEnricher struct {
	sluice.EnricherFunc
	name string
}

func (r reportingEnricher) HealthReport() (string, any) {
	return r.name, map[string]int{"hits": 3}
}

func TestHealthShowsThePartsReports(t *testing.T) {
	src := sluicetest.NewSource("in", 1)
	noop := sluice.EnricherFunc(func(_ context.Context, m *sluice.Message) (*sluice.Message, error) { return m, nil })
	p, err := sluice.New(src, reportingEnricher{EnricherFunc: noop, name: "model"}, sluicetest.NewSink(), quiet())
	require.NoError(t, err)
	_, body := getJSON(t, p.Handler(), "/healthz")
	assert.Equal(t, map[string]any{"model": map[string]any{"hits": 3.0}}, body["parts"])

	// An empty name reports nothing, and no parts key is shown.
	p, err = sluice.New(src, reportingEnricher{EnricherFunc: noop}, sluicetest.NewSink(), quiet())
	require.NoError(t, err)
	_, body = getJSON(t, p.Handler(), "/healthz")
	assert.NotContains(t, body, "parts")
}

// notReadyEnricher is an enricher whose model check failed.
type notReadyEnricher struct{ err error }

func (n notReadyEnricher) Enrich(_ context.Context, in *sluice.Message) (*sluice.Message, error) {
	return in, nil
}

func (n notReadyEnricher) Ready(context.Context) error { return n.err }

// An enricher that implements Readier (openai.Enricher reports its latest
// model check) takes part in readiness.
func TestEnricherTakesPartInReadiness(t *testing.T) {
	src := sluicetest.NewSource("in", 1)
	enr := notReadyEnricher{err: errors.New("model check failed: HTTP 404 model_not_found")}
	p, err := sluice.New(src, enr, sluicetest.NewSink(), quiet())
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := start(t, ctx, p)
	for p.State() == sluice.StateStarting {
		runtime.Gosched()
	}
	err = p.Ready(context.Background())
	require.ErrorIs(t, err, enr.err)
	assert.Contains(t, err.Error(), "model_not_found")
	rec := httptest.NewRecorder()
	p.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
	assert.Equal(t, 503, rec.Code)
	cancel()
	require.NoError(t, wait(t, done))
}
