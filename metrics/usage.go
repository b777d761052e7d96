package metrics

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Usage is what a model client has used since it started, as read at each
// scrape by [ExportUsage]. openai.Enricher.Usage gives these figures.
type Usage struct {
	// Events counts the events whose answers the model gave (cache hits
	// excluded); a batched call counts each of its events.
	Events int64
	// CachedPromptTokens counts the prompt tokens the API served from its
	// prompt cache (part of the prompt tokens, usually billed lower).
	CachedPromptTokens int64
	// CostUSD is the cost at the client's prices, in US dollars.
	CostUSD float64
}

// usageCollector reads a model client's usage when scraped.
type usageCollector struct {
	read                func() Usage
	events, cached, usd *prometheus.Desc
	priced              bool
}

// ExportUsage registers on reg what a model client has used, read from
// read at each scrape: sluice_model_events_total (events the model
// answered), sluice_model_cached_prompt_tokens_total and, when priced is
// true, sluice_model_cost_usd_total. With the prompt and completion token
// counters of [NewModelCalls] they give tokens and cost per event, for
// example rate(sluice_model_cost_usd_total[5m]) /
// rate(sluice_model_events_total[5m]). It takes the same options as
// [Export] (the namespace and constant labels apply; buckets do not).
func ExportUsage(reg prometheus.Registerer, read func() Usage, priced bool, opts ...Option) error {
	if reg == nil || read == nil {
		return errors.New("metrics: ExportUsage needs a prometheus.Registerer and a function that reads the usage")
	}
	o := options{namespace: "sluice"}
	for _, f := range opts {
		f(&o)
	}
	d := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc(o.namespace+"_model_"+name, help, nil, o.labels)
	}
	return reg.Register(&usageCollector{
		read:   read,
		priced: priced,
		events: d("events_total", "Events whose answers the model gave (cache hits excluded); each event of a batched call counts."),
		cached: d("cached_prompt_tokens_total", "Prompt tokens the model's API served from its prompt cache (included in the prompt tokens)."),
		usd:    d("cost_usd_total", "What the model calls cost at the configured prices, in US dollars."),
	})
}

func (c *usageCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.events
	ch <- c.cached
	if c.priced {
		ch <- c.usd
	}
}

func (c *usageCollector) Collect(ch chan<- prometheus.Metric) {
	u := c.read()
	ch <- prometheus.MustNewConstMetric(c.events, prometheus.CounterValue, float64(u.Events))
	ch <- prometheus.MustNewConstMetric(c.cached, prometheus.CounterValue, float64(u.CachedPromptTokens))
	if c.priced {
		ch <- prometheus.MustNewConstMetric(c.usd, prometheus.CounterValue, u.CostUSD)
	}
}
