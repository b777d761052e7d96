package openai

import (
	"time"

	"github.com/sluicehq/sluice"
)

var _ sluice.HealthReporter = (*Enricher)(nil)

// modelHealth is the Enricher's part of the health document.
type modelHealth struct {
	Model            string        `json:"model"`
	Task             string        `json:"task"`
	OutputMode       string        `json:"output_mode"`
	TokenField       string        `json:"token_field"`
	ConcurrencyLimit int           `json:"concurrency_limit,omitempty"`
	Cache            *cacheHealth  `json:"cache,omitempty"`
	Usage            usageHealth   `json:"usage"`
	Budget           *budgetHealth `json:"budget,omitempty"`
}

type usageHealth struct {
	Calls            int64    `json:"calls"`
	Events           int64    `json:"events"`
	PromptTokens     int64    `json:"prompt_tokens"`
	CachedTokens     int64    `json:"cached_tokens"`
	CompletionTokens int64    `json:"completion_tokens"`
	TokensPerEvent   float64  `json:"tokens_per_event"`
	CostUSD          *float64 `json:"cost_usd,omitempty"`
	CostPerEventUSD  *float64 `json:"cost_per_event_usd,omitempty"`
}

type budgetHealth struct {
	Per        string   `json:"per"`
	Tokens     int64    `json:"tokens,omitempty"`
	USD        float64  `json:"usd,omitempty"`
	UsedTokens int64    `json:"used_tokens"`
	UsedUSD    *float64 `json:"used_usd,omitempty"`
	ResetsAt   string   `json:"resets_at,omitempty"`
}

type cacheHealth struct {
	Hits      uint64  `json:"hits"`
	Misses    uint64  `json:"misses"`
	Errors    uint64  `json:"errors"`
	Evictions uint64  `json:"evictions"`
	Entries   int64   `json:"entries"`
	Bytes     int64   `json:"bytes"`
	HitRatio  float64 `json:"hit_ratio"`
}

// HealthReport implements [sluice.HealthReporter]: under "model", the model,
// task, output mode and token field in use, concurrency limit, the tokens used in total and
// per event (and their cost, with [WithPrices]), the [Budget]'s period and
// what was spent in it, and, with [WithCache], the cache's counters.
func (e *Enricher) HealthReport() (string, any) {
	h := modelHealth{Model: e.model, Task: e.task.Name, OutputMode: e.OutputMode().String(), TokenField: e.TokenField().String(), ConcurrencyLimit: e.ConcurrencyLimit()}
	total, spent, period := e.meter.snapshot()
	h.Usage = usageHealth{Calls: total.Calls, Events: total.Events, PromptTokens: total.PromptTokens,
		CachedTokens: total.CachedTokens, CompletionTokens: total.CompletionTokens}
	if total.Events > 0 {
		h.Usage.TokensPerEvent = float64(total.Total()) / float64(total.Events)
	}
	if e.cfg.prices != nil {
		cost := total.CostUSD
		h.Usage.CostUSD = &cost
		if total.Events > 0 {
			per := cost / float64(total.Events)
			h.Usage.CostPerEventUSD = &per
		}
	}
	if b := e.cfg.budget; b != nil {
		h.Budget = &budgetHealth{Per: b.Per.String(), Tokens: b.Tokens, USD: b.USD, UsedTokens: spent.Total()}
		if e.cfg.prices != nil {
			used := spent.CostUSD
			h.Budget.UsedUSD = &used
		}
		if !period.IsZero() {
			h.Budget.ResetsAt = period.Add(b.Per).UTC().Format(time.RFC3339)
		}
	}
	if s, ok := e.CacheStats(); ok {
		h.Cache = &cacheHealth{Hits: s.Hits, Misses: s.Misses, Errors: s.Errors, Evictions: s.Evictions,
			Entries: s.Entries, Bytes: s.Bytes, HitRatio: s.HitRatio()}
	}
	return "model", h
}
