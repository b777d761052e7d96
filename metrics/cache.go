package metrics

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/enrichcache"
)

// cacheCollector reads an enrichment cache's counters when scraped.
type cacheCollector struct {
	c                                                enrichcache.Statser
	hits, misses, errs, evictions, entries, b, ratio *prometheus.Desc
}

// ExportCache registers the counters of an enrichment cache on reg:
// sluice_cache_hits_total, _misses_total, _errors_total (failed calls, each
// counted as a miss by the enricher), _evictions_total, and the gauges
// sluice_cache_entries, sluice_cache_bytes and sluice_cache_hit_ratio. It
// takes the same options as [Export] (the namespace and constant labels
// apply; buckets do not).
func ExportCache(reg prometheus.Registerer, c enrichcache.Statser, opts ...Option) error {
	if reg == nil || c == nil {
		return errors.New("metrics: ExportCache needs a prometheus.Registerer and a cache")
	}
	o := options{namespace: "sluice"}
	for _, f := range opts {
		f(&o)
	}
	d := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc(o.namespace+"_cache_"+name, help, nil, o.labels)
	}
	return reg.Register(&cacheCollector{
		c:         c,
		hits:      d("hits_total", "Enrichment cache lookups that found an answer: model calls saved."),
		misses:    d("misses_total", "Enrichment cache lookups that found none (failed lookups included)."),
		errs:      d("errors_total", "Enrichment cache calls that failed; each lookup among them cost a model call."),
		evictions: d("evictions_total", "Answers dropped from the cache to make room."),
		entries:   d("entries", "Answers the cache holds (0 for a shared cache, which does not know)."),
		b:         d("bytes", "Bytes the cache holds (0 for a shared cache, which does not know)."),
		ratio:     d("hit_ratio", "hits / (hits + misses) since start; 0 before the first lookup."),
	})
}

func (m *cacheCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{m.hits, m.misses, m.errs, m.evictions, m.entries, m.b, m.ratio} {
		ch <- d
	}
}

func (m *cacheCollector) Collect(ch chan<- prometheus.Metric) {
	s := m.c.Stats()
	for d, v := range map[*prometheus.Desc]uint64{m.hits: s.Hits, m.misses: s.Misses, m.errs: s.Errors, m.evictions: s.Evictions} {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v))
	}
	ch <- prometheus.MustNewConstMetric(m.entries, prometheus.GaugeValue, float64(s.Entries))
	ch <- prometheus.MustNewConstMetric(m.b, prometheus.GaugeValue, float64(s.Bytes))
	ch <- prometheus.MustNewConstMetric(m.ratio, prometheus.GaugeValue, s.HitRatio())
}
