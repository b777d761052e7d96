package sluiceotel

import (
	"context"
	"slices"

	"go.opentelemetry.io/otel/propagation"

	"github.com/sluicehq/sluice"
)

// headerCarrier reads and writes trace context in message headers.
type headerCarrier struct{ hs *[]sluice.Header }

var _ propagation.TextMapCarrier = headerCarrier{}

// Get returns the first header named key.
func (c headerCarrier) Get(key string) string {
	for _, h := range *c.hs {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// Set replaces every header named key with one holding value.
func (c headerCarrier) Set(key, value string) {
	*c.hs = slices.DeleteFunc(*c.hs, func(h sluice.Header) bool { return h.Key == key })
	*c.hs = append(*c.hs, sluice.Header{Key: key, Value: []byte(value)})
}

// Keys lists the header names.
func (c headerCarrier) Keys() []string {
	ks := make([]string, len(*c.hs))
	for i, h := range *c.hs {
		ks[i] = h.Key
	}
	return ks
}

// hasTraceHeader reports whether hs holds any field the propagator reads,
// so that events without trace context skip extraction.
func hasTraceHeader(p propagation.TextMapPropagator, hs []sluice.Header) bool {
	if len(hs) == 0 {
		return false
	}
	for _, f := range p.Fields() {
		for _, h := range hs {
			if h.Key == f {
				return true
			}
		}
	}
	return false
}

// inject returns a copy of hs whose trace-context headers carry the span
// context of ctx; hs itself is not modified.
func inject(ctx context.Context, p propagation.TextMapPropagator, hs []sluice.Header) []sluice.Header {
	out := make([]sluice.Header, len(hs), len(hs)+2)
	copy(out, hs)
	for _, f := range p.Fields() {
		out = slices.DeleteFunc(out, func(h sluice.Header) bool { return h.Key == f })
	}
	p.Inject(ctx, headerCarrier{hs: &out})
	return out
}
