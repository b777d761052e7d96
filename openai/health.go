package openai

import "github.com/sluicehq/sluice"

var _ sluice.HealthReporter = (*Enricher)(nil)

// modelHealth is the Enricher's part of the health document.
type modelHealth struct {
	Model            string       `json:"model"`
	Task             string       `json:"task"`
	OutputMode       string       `json:"output_mode"`
	ConcurrencyLimit int          `json:"concurrency_limit,omitempty"`
	Cache            *cacheHealth `json:"cache,omitempty"`
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
// task, output mode in use, concurrency limit and, with [WithCache], the
// cache's counters.
func (e *Enricher) HealthReport() (string, any) {
	h := modelHealth{Model: e.model, Task: e.task.Name, OutputMode: e.OutputMode().String(), ConcurrencyLimit: e.ConcurrencyLimit()}
	if s, ok := e.CacheStats(); ok {
		h.Cache = &cacheHealth{Hits: s.Hits, Misses: s.Misses, Errors: s.Errors, Evictions: s.Evictions,
			Entries: s.Entries, Bytes: s.Bytes, HitRatio: s.HitRatio()}
	}
	return "model", h
}
