package openai

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/enrichcache"
	"github.com/sluicehq/sluice/llmtest"
)

func memCache(t *testing.T) *enrichcache.Memory {
	t.Helper()
	c, err := enrichcache.NewMemory(1 << 20)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// A hit costs no call and yields the bytes the miss produced.
func TestCacheHitSkipsTheModelAndYieldsTheSameEnrichment(t *testing.T) {
	c := memCache(t)
	e, srv := newTest(t, Sentiment(), nil, WithCache(c))
	first, err := e.Enrich(bg(), event("great"))
	if err != nil {
		t.Fatal(err)
	}
	again, err := e.Enrich(bg(), event("great"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(first.Value, again.Value) {
		t.Errorf("hit %s differs from miss %s", again.Value, first.Value)
	}
	if n := srv.Stats().Completions; n != 1 {
		t.Errorf("%d model calls, want 1", n)
	}
	if _, err := e.Enrich(bg(), event("awful")); err != nil {
		t.Fatal(err)
	}
	if n := srv.Stats().Completions; n != 2 {
		t.Errorf("another text: %d model calls, want 2", n)
	}
	st, ok := e.CacheStats()
	if !ok || st.Hits != 1 || st.Misses != 2 {
		t.Errorf("cache stats %+v (%v), want 1 hit and 2 misses", st, ok)
	}

	// Another Enricher on the same cache with another task or model does
	// not share the answer.
	other, srv2 := newTest(t, Spam(), nil, WithCache(c))
	if _, err := other.Enrich(bg(), event("great")); err != nil {
		t.Fatal(err)
	}
	if n := srv2.Stats().Completions; n != 1 {
		t.Errorf("another task: %d calls, want 1", n)
	}
}

// Bad answers are not kept: the next delivery asks the model again.
func TestCacheKeepsOnlyValidatedAnswers(t *testing.T) {
	c := memCache(t)
	e, srv := newTest(t, Sentiment(), nil, WithCache(c))
	bad := llmtest.Fault{Status: 200, Body: completion(`{"label":"great","score":3}`, "stop")}
	srv.Inject(bad, bad)
	if _, err := e.Enrich(bg(), event("great")); class(err) != "permanent" {
		t.Fatalf("err = %v, want permanent", err)
	}
	if st := c.Stats(); st.Entries != 0 {
		t.Fatalf("%d entries after a failed event", st.Entries)
	}
	if _, err := e.Enrich(bg(), event("great")); err != nil {
		t.Fatal(err)
	}
	if n := srv.Stats().Total; n != 3 {
		t.Errorf("%d calls, want 3", n)
	}
}

func TestCacheServesBatches(t *testing.T) {
	c := memCache(t)
	e, srv := newTest(t, Sentiment(), nil, WithCache(c))
	batch := func(texts ...string) []sluice.BatchResult {
		var in []*sluice.Message
		for _, s := range texts {
			in = append(in, event(s))
		}
		res := e.EnrichBatch(bg(), in)
		for i, r := range res {
			if r.Err != nil {
				t.Fatalf("event %d: %v", i, r.Err)
			}
		}
		return res
	}
	first := batch("great", "awful", "meh")
	if st := srv.Stats(); st.Completions != 1 || st.Events != 3 {
		t.Fatalf("first batch: %+v", st)
	}
	again := batch("great", "awful", "meh")
	for i := range first {
		if !bytes.Equal(first[i].Msg.Value, again[i].Msg.Value) {
			t.Errorf("event %d: hit %s, miss %s", i, again[i].Msg.Value, first[i].Msg.Value)
		}
	}
	if n := srv.Stats().Completions; n != 1 {
		t.Errorf("the same batch again made %d calls in all, want 1", n)
	}
	// Two hits and two misses: one call for the misses.
	mixed := batch("great", "love it", "meh", "hate it")
	if st := srv.Stats(); st.Completions != 2 || st.Events != 5 {
		t.Errorf("mixed batch: %+v, want one more call for 2 events", st)
	}
	// A single Enrich is served by what a batch stored, and the other way
	// round.
	one, err := e.Enrich(bg(), event("love it"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(one.Value, mixed[1].Msg.Value) {
		t.Errorf("single %s, batch %s", one.Value, mixed[1].Msg.Value)
	}
	if n := srv.Stats().Completions; n != 2 {
		t.Errorf("%d calls, want 2", n)
	}
}

// failingCache fails every call, or returns a value that is not JSON.
type failingCache struct {
	garbage bool
	calls   atomic.Int64
}

func (f *failingCache) Get(context.Context, string) ([]byte, bool, error) {
	f.calls.Add(1)
	if f.garbage {
		return []byte("{not json"), true, nil
	}
	return nil, false, errors.New("connection refused")
}

func (f *failingCache) Set(context.Context, string, []byte) error {
	f.calls.Add(1)
	if f.garbage {
		return nil
	}
	return errors.New("connection refused")
}

// A cache that fails never fails an event: it costs calls, and a log line
// now and then.
func TestCacheFailuresAreMissesLoggedSparingly(t *testing.T) {
	for _, garbage := range []bool{false, true} {
		var logs logBuffer
		fc := &failingCache{garbage: garbage}
		e, srv := newTest(t, Sentiment(), nil, WithCache(fc),
			WithLogger(slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))))
		now := time.Unix(1000, 0)
		e.cfg.now = func() time.Time { return now }
		for range 20 {
			if _, err := e.Enrich(bg(), event("great")); err != nil {
				t.Fatalf("garbage=%v: %v", garbage, err)
			}
		}
		if n := srv.Stats().Completions; n != 20 {
			t.Errorf("garbage=%v: %d calls, want 20", garbage, n)
		}
		if n := strings.Count(logs.String(), "enrichment cache failed"); n != 1 {
			t.Errorf("garbage=%v: %d log lines within 10s, want 1:\n%s", garbage, n, logs.String())
		}
		now = now.Add(11 * time.Second)
		if _, err := e.Enrich(bg(), event("great")); err != nil {
			t.Fatal(err)
		}
		if n := strings.Count(logs.String(), "enrichment cache failed"); n != 2 {
			t.Errorf("garbage=%v: %d log lines after 11s, want 2", garbage, n)
		}
		if !strings.Contains(logs.String(), "failures_not_logged=") {
			t.Errorf("the log does not count the failures it left out:\n%s", logs.String())
		}
	}
}

func TestWithCacheNil(t *testing.T) {
	_, err := New("m", Sentiment(), []string{"text"}, WithCache(nil))
	if !errors.Is(err, sluice.ErrInvalidConfig) || !strings.Contains(err.Error(), "WithCache(nil)") {
		t.Fatalf("err = %v", err)
	}
}

func TestHealthReportShowsTheCache(t *testing.T) {
	e, _ := newTest(t, Sentiment(), nil, WithCache(memCache(t)))
	for range 3 {
		if _, err := e.Enrich(bg(), event("great")); err != nil {
			t.Fatal(err)
		}
	}
	name, v := e.HealthReport()
	b, _ := json.Marshal(v)
	if name != "model" || !strings.Contains(string(b), `"cache":{"hits":2,"misses":1,`) || !strings.Contains(string(b), `"hit_ratio":0.666`) {
		t.Errorf("%s: %s", name, b)
	}
	plain, _ := newTest(t, Sentiment(), nil)
	_, v = plain.HealthReport()
	if b, _ := json.Marshal(v); strings.Contains(string(b), `"cache":`) {
		t.Errorf("no cache, yet %s", b)
	}
}
