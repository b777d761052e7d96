package openai

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/internal/testutil"
	"github.com/sluicehq/sluice/llmtest"
	"github.com/sluicehq/sluice/sluicetest"
)

func usageHeader(t *testing.T, m *sluice.Message) map[string]float64 {
	t.Helper()
	v, ok := m.Header("ai_usage")
	if !ok {
		t.Fatalf("no ai_usage header on %s", m.Value)
	}
	var u map[string]float64
	if err := json.Unmarshal(v, &u); err != nil {
		t.Fatalf("ai_usage %s: %v", v, err)
	}
	return u
}

// The Enricher's token counts are the fake model's, a batch's usage is
// split among its events, and the header carries each event's share.
func TestUsageMatchesTheModelsCounts(t *testing.T) {
	e, srv := newTest(t, Sentiment(), nil, WithUsageHeader("ai_usage"), WithPrices(Prices{Prompt: 0.15, Completion: 0.60}))
	var prompt, completion float64
	for _, text := range []string{"great", "awful"} {
		out, err := e.Enrich(bg(), event(text))
		if err != nil {
			t.Fatal(err)
		}
		u := usageHeader(t, out)
		prompt += u["prompt_tokens"]
		completion += u["completion_tokens"]
		if want := (u["prompt_tokens"]*0.15 + u["completion_tokens"]*0.60) / 1e6; fmt.Sprintf("%.9f", u["cost_usd"]) != fmt.Sprintf("%.9f", want) {
			t.Errorf("cost_usd %v, want %v", u["cost_usd"], want)
		}
	}
	var in []*sluice.Message
	for _, s := range []string{"love it", "hate it", "meh"} {
		in = append(in, event(s))
	}
	for _, r := range e.EnrichBatch(bg(), in) {
		if r.Err != nil {
			t.Fatal(r.Err)
		}
		u := usageHeader(t, r.Msg)
		prompt += u["prompt_tokens"]
		completion += u["completion_tokens"]
	}
	st := srv.Stats()
	if st.PromptTokens == 0 || float64(st.PromptTokens) != prompt || float64(st.CompletionTokens) != completion {
		t.Errorf("the headers add up to %v prompt and %v completion tokens; the model reported %d and %d",
			prompt, completion, st.PromptTokens, st.CompletionTokens)
	}
	tot := e.Usage()
	if tot.PromptTokens != st.PromptTokens || tot.CompletionTokens != st.CompletionTokens || tot.Calls != st.Completions || tot.Events != st.Events {
		t.Errorf("totals %+v; the model: %+v", tot, st)
	}
	_, v := e.HealthReport()
	b, _ := json.Marshal(v)
	for _, want := range []string{`"calls":3`, `"events":5`, fmt.Sprintf(`"prompt_tokens":%d`, st.PromptTokens), `"cost_usd":`, `"cost_per_event_usd":`, `"tokens_per_event":`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("health %s lacks %s", b, want)
		}
	}
}

func TestUsageSplitAndParse(t *testing.T) {
	parts := Usage{PromptTokens: 10, CachedTokens: 3, CompletionTokens: 7}.split(3)
	var sum Usage
	for _, p := range parts {
		sum.add(p)
	}
	if sum != (Usage{PromptTokens: 10, CachedTokens: 3, CompletionTokens: 7}) || parts[0].PromptTokens != 4 || parts[2].PromptTokens != 3 {
		t.Errorf("split %+v", parts)
	}
	for doc, want := range map[string]Usage{
		`{"prompt_tokens":100,"completion_tokens":20,"prompt_tokens_details":{"cached_tokens":64}}`: {PromptTokens: 100, CachedTokens: 64, CompletionTokens: 20},
		`{"prompt_tokens":-5,"completion_tokens":2}`:                                                {CompletionTokens: 2},
		`{"prompt_tokens":10,"cached_tokens":50}`:                                                   {PromptTokens: 10, CachedTokens: 10},
	} {
		var u Usage
		if err := json.Unmarshal([]byte(doc), &u); err != nil || u != want {
			t.Errorf("%s: %+v %v, want %+v", doc, u, err, want)
		}
	}
	p := Prices{Prompt: 1, CachedPrompt: 0.5, Completion: 2}
	if c := p.Cost(Usage{PromptTokens: 1_000_000, CachedTokens: 500_000, CompletionTokens: 1_000_000}); c != 2.75 {
		t.Errorf("cost %v, want 2.75", c)
	}
}

// A cache hit costs nothing, and its header says so.
func TestUsageHeaderOfACacheHit(t *testing.T) {
	e, _ := newTest(t, Sentiment(), nil, WithUsageHeader("ai_usage"), WithCache(memCache(t)))
	if _, err := e.Enrich(bg(), event("great")); err != nil {
		t.Fatal(err)
	}
	out, err := e.Enrich(bg(), event("great"))
	if err != nil {
		t.Fatal(err)
	}
	if u := usageHeader(t, out); u["prompt_tokens"] != 0 || u["completion_tokens"] != 0 {
		t.Errorf("a hit's usage %v", u)
	}
}

// Once the hour's budget is spent, Enrich asks for a pause until the next
// hour without calling the model; the next hour it calls again.
func TestBudgetAsksForAPauseUntilTheNextPeriod(t *testing.T) {
	now := time.Date(2026, 12, 2, 14, 20, 0, 0, time.UTC)
	e, srv := newTest(t, Sentiment(), nil, WithBudget(Budget{Tokens: 1, Per: time.Hour}))
	e.cfg.now = func() time.Time { return now }
	if _, err := e.Enrich(bg(), event("great")); err != nil {
		t.Fatal(err)
	}
	_, err := e.Enrich(bg(), event("awful"))
	var pe *sluice.PauseError
	if !errors.As(err, &pe) || !pe.Until.Equal(time.Date(2026, 12, 2, 15, 0, 0, 0, time.UTC)) || !strings.Contains(pe.Reason, "budget of 1 tokens per 1h0m0s is spent") {
		t.Fatalf("err %v, want a pause until 15:00", err)
	}
	if n := srv.Stats().Total; n != 1 {
		t.Errorf("%d calls, want 1: a spent budget makes none", n)
	}
	now = now.Add(40 * time.Minute)
	if _, err := e.Enrich(bg(), event("awful")); err != nil {
		t.Fatalf("the next hour: %v", err)
	}
}

// Through the pipeline: the budget pauses consumption, health says why,
// nothing is dead-lettered, and the rest is enriched once the day rolls
// over.
func TestBudgetPausesThePipelineAndResumes(t *testing.T) {
	start := time.Date(2026, 12, 2, 23, 0, 0, 0, time.UTC)
	clk := sluicetest.NewClock(start)
	srv := llmtest.NewServer()
	defer srv.Close()
	e, err := New("llmtest", Sentiment(), []string{"text"}, WithBaseURL(srv.BaseURL()), WithLogger(testutil.Quiet()),
		WithPrices(Prices{Prompt: 1e6, Completion: 1e6}), WithBudget(Budget{USD: 1, Per: 24 * time.Hour}))
	if err != nil {
		t.Fatal(err)
	}
	e.cfg.now = clk.Now
	src := sluicetest.NewSource("in", 1)
	for i := range 5 {
		src.Publish(nil, fmt.Appendf(nil, `{"text":"great %d"}`, i))
	}
	sink := sluicetest.NewSink()
	p, err := sluice.New(src, e, sink, sluice.WithClock(clk), sluice.WithConcurrency(1), sluice.WithPauseJitter(0),
		sluice.WithLogger(testutil.Quiet()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()

	// $1 a token: the first call spends the day's budget.
	if !clk.BlockUntil(1, nil) {
		t.Fatal("no pause")
	}
	at, _ := clk.NextDeadline()
	if want := time.Date(2026, 12, 3, 0, 0, 0, 0, time.UTC); !at.Equal(want) {
		t.Errorf("resumes at %v, want midnight", at)
	}
	h := p.Health(context.Background())
	if h.Status != sluice.HealthPaused || !strings.Contains(h.Reason, "budget of $1 per 24h0m0s is spent") {
		t.Errorf("health %s: %s", h.Status, h.Reason)
	}
	if n := len(sink.DeadLetters()); n != 0 {
		t.Errorf("%d dead letters", n)
	}
	// The next day's first call spends that day's budget too; each event
	// takes a day. The clock jumps to each pause's end: a pause can also
	// be a moment long, when the enricher refused a call just before
	// midnight and the runner handled that refusal just after it.
	all := make(chan struct{})
	go func() {
		_ = sink.WaitFor(context.Background(), 5)
		close(all)
	}()
	for steps := 0; clk.BlockUntil(1, all); steps++ {
		if steps > 20 {
			t.Fatalf("%d pauses and %d events enriched by %v", steps, len(sink.Messages()), clk.Now())
		}
		at, _ := clk.NextDeadline()
		clk.Advance(at.Sub(clk.Now()))
	}
	if day, want := clk.Now().Truncate(24*time.Hour), time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC); !day.Equal(want) {
		t.Errorf("the last of the 5 events was enriched on %v, want %v (one event a day from the 2nd)", day, want)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if st := p.Stats(); st.DeadLettered != 0 || st.Enriched != 5 {
		t.Errorf("stats %+v", st.Counts)
	}
	if n := srv.Stats().Completions; n != 5 {
		t.Errorf("%d model calls, want 5", n)
	}
}

func TestUsageOptionsAreChecked(t *testing.T) {
	_, err := New("m", Sentiment(), []string{"text"}, WithPrices(Prices{Prompt: -1}), WithBudget(Budget{Per: time.Second, Tokens: 1}),
		WithUsageHeader(""))
	for _, want := range []string{"WithPrices(Prompt: -1)", "shorter than a minute", `WithUsageHeader("")`} {
		if !errors.Is(err, sluice.ErrInvalidConfig) || !strings.Contains(fmt.Sprint(err), want) {
			t.Errorf("err %v lacks %q", err, want)
		}
	}
	_, err = New("m", Sentiment(), []string{"text"}, WithBudget(Budget{USD: 5, Per: time.Hour}))
	if !errors.Is(err, sluice.ErrInvalidConfig) || !strings.Contains(err.Error(), "needs prices") {
		t.Errorf("USD budget without prices: %v", err)
	}
	_, err = New("m", Sentiment(), []string{"text"}, WithBudget(Budget{Per: time.Hour}))
	if !strings.Contains(fmt.Sprint(err), "bounds nothing") {
		t.Errorf("empty budget: %v", err)
	}
}
