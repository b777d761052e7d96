package openai

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/sluicehq/sluice"
)

// Usage is the tokens of a model call, or an event's share of them, as the
// API's "usage" field reports them.
type Usage struct {
	// PromptTokens counts the input tokens, CachedTokens among them those
	// the provider served from its prompt cache (billed lower).
	PromptTokens int64 `json:"prompt_tokens"`
	CachedTokens int64 `json:"cached_tokens,omitempty"`
	// CompletionTokens counts the output tokens.
	CompletionTokens int64 `json:"completion_tokens"`
}

// UnmarshalJSON reads the API's usage object, with cached tokens under
// prompt_tokens_details.
func (u *Usage) UnmarshalJSON(b []byte) error {
	var raw struct {
		Prompt     int64 `json:"prompt_tokens"`
		Completion int64 `json:"completion_tokens"`
		Details    *struct {
			Cached int64 `json:"cached_tokens"`
		} `json:"prompt_tokens_details"`
		Cached int64 `json:"cached_tokens"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	*u = Usage{PromptTokens: max(raw.Prompt, 0), CompletionTokens: max(raw.Completion, 0), CachedTokens: max(raw.Cached, 0)}
	if raw.Details != nil {
		u.CachedTokens = max(raw.Details.Cached, 0)
	}
	u.CachedTokens = min(u.CachedTokens, u.PromptTokens)
	return nil
}

func (u *Usage) add(v Usage) {
	u.PromptTokens += v.PromptTokens
	u.CachedTokens += v.CachedTokens
	u.CompletionTokens += v.CompletionTokens
}

// Total is prompt plus completion tokens.
func (u Usage) Total() int64 { return u.PromptTokens + u.CompletionTokens }

// split divides a batched call's usage among n events: each gets an equal
// share, and the first events the remainders.
func (u Usage) split(n int) []Usage {
	out := make([]Usage, n)
	share := func(total int64, set func(*Usage, int64)) {
		q, r := total/int64(n), total%int64(n)
		for i := range out {
			v := q
			if int64(i) < r {
				v++
			}
			set(&out[i], v)
		}
	}
	share(u.PromptTokens, func(x *Usage, v int64) { x.PromptTokens = v })
	share(u.CachedTokens, func(x *Usage, v int64) { x.CachedTokens = v })
	share(u.CompletionTokens, func(x *Usage, v int64) { x.CompletionTokens = v })
	return out
}

// Prices are what the model costs, in US dollars per million tokens.
type Prices struct {
	Prompt float64
	// CachedPrompt is the price of cached input tokens; 0 means Prompt.
	CachedPrompt float64
	Completion   float64
}

// Cost is the price of u in US dollars.
func (p Prices) Cost(u Usage) float64 {
	cached := p.CachedPrompt
	if cached == 0 {
		cached = p.Prompt
	}
	return (float64(u.PromptTokens-u.CachedTokens)*p.Prompt + float64(u.CachedTokens)*cached + float64(u.CompletionTokens)*p.Completion) / 1e6
}

// Budget bounds what the model may cost per period: Tokens (prompt plus
// completion) and, with [WithPrices], USD. Either may be 0 for no bound.
// Periods are aligned on the clock (a Per of one hour runs from each full
// hour, 24h from midnight UTC). Once a period's budget is spent, the
// Enricher asks the pipeline to pause until the next period starts (a
// [sluice.PauseError]): nothing is dead-lettered or acked for it, and calls
// already in flight may overshoot the budget by their own usage.
type Budget struct {
	Tokens int64
	USD    float64
	Per    time.Duration
}

// UsageTotals are an Enricher's model usage since it was made.
type UsageTotals struct {
	Usage
	// Calls counts the answered calls, Events the events whose answers the
	// model gave (a cache hit is not one).
	Calls, Events int64
	// CostUSD is the cost at [WithPrices], or 0 without.
	CostUSD float64 `json:"cost_usd"`
}

// meter counts usage, cost and the budget's period. Its methods are safe
// for concurrent use.
type meter struct {
	prices *Prices
	budget *Budget
	now    func() time.Time

	mu     sync.Mutex
	totals UsageTotals
	period time.Time // start of the budget's current period
	spent  UsageTotals
}

// call records one answered call of n events.
func (m *meter) call(u Usage, n int) {
	cost := 0.0
	if m.prices != nil {
		cost = m.prices.Cost(u)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, t := range []*UsageTotals{&m.totals, &m.spent} {
		t.add(u)
		t.Calls++
		t.Events += int64(n)
		t.CostUSD += cost
	}
}

// check returns a [sluice.PauseError] when the budget of the current period
// is spent.
func (m *meter) check() error {
	if m.budget == nil {
		return nil
	}
	now := m.now()
	start := now.Truncate(m.budget.Per)
	m.mu.Lock()
	defer m.mu.Unlock()
	if !start.Equal(m.period) {
		m.period, m.spent = start, UsageTotals{}
	}
	b := m.budget
	var what string
	switch {
	case b.Tokens > 0 && m.spent.Total() >= b.Tokens:
		what = fmt.Sprintf("the model budget of %d tokens per %s is spent (%d used)", b.Tokens, b.Per, m.spent.Total())
	case b.USD > 0 && m.spent.CostUSD >= b.USD:
		what = fmt.Sprintf("the model budget of $%s per %s is spent ($%s used)", usd(b.USD), b.Per, usd(m.spent.CostUSD))
	default:
		return nil
	}
	return &sluice.PauseError{Until: start.Add(b.Per), Reason: what}
}

func (m *meter) snapshot() (UsageTotals, UsageTotals, time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.totals, m.spent, m.period
}

func usd(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }

// eventUsage collects one event's share of usage while Enrich runs.
type eventUsage struct {
	mu sync.Mutex
	u  Usage
}

type eventUsageKey struct{}

// addEventUsage adds u to the usage of the event ctx belongs to, if
// Enrich is counting it.
func addEventUsage(ctx context.Context, u Usage) {
	if eu, ok := ctx.Value(eventUsageKey{}).(*eventUsage); ok {
		eu.mu.Lock()
		eu.u.add(u)
		eu.mu.Unlock()
	}
}

// withUsageHeader returns out with the usage header added.
func (e *Enricher) withUsageHeader(out *sluice.Message, u Usage) *sluice.Message {
	v := map[string]any{"prompt_tokens": u.PromptTokens, "completion_tokens": u.CompletionTokens}
	if u.CachedTokens > 0 {
		v["cached_tokens"] = u.CachedTokens
	}
	if e.cfg.prices != nil {
		v["cost_usd"] = math.Round(e.cfg.prices.Cost(u)*1e9) / 1e9
	}
	b, _ := json.Marshal(v)
	c := *out
	c.Headers = append(slices.Clip(out.Headers), sluice.Header{Key: e.cfg.usageHeader, Value: b})
	return &c
}

// Usage returns the model usage since the Enricher was made.
func (e *Enricher) Usage() UsageTotals {
	t, _, _ := e.meter.snapshot()
	return t
}
