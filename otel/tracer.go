package sluiceotel

import (
	"context"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/internal/optcheck"
	"github.com/sluicehq/sluice/openai"
)

// ScopeName is the instrumentation scope of the spans a [Tracer] records.
const ScopeName = "github.com/sluicehq/sluice/otel"

// Tracer records the spans of events going through a pipeline and of the
// model calls made for them. Build one with [New]; its methods are safe for
// concurrent use.
type Tracer struct {
	tracer   trace.Tracer
	prop     propagation.TextMapPropagator
	group    string
	system   string
	output   string
	dead     string
	provider string
	off      bool // the provider is the no-op one: nothing to do
}

var (
	_ sluice.Observer     = (*Tracer)(nil)
	_ sluice.EventTracer  = (*Tracer)(nil)
	_ openai.CallObserver = (*Tracer)(nil)
	_ openai.CallTracer   = (*Tracer)(nil)
)

// Option configures a [Tracer]. [New] reports every bad option at once,
// each matching [sluice.ErrInvalidConfig].
type Option func(*config)

type config struct {
	tp       trace.TracerProvider
	prop     propagation.TextMapPropagator
	group    string
	system   string
	output   string
	dead     string
	provider string
	errs     optcheck.Errors
}

// New returns a Tracer. Without [WithTracerProvider] it records with the
// global provider (otel.GetTracerProvider), which is a no-op until the
// program sets one.
func New(opts ...Option) (*Tracer, error) {
	c := config{
		prop:     propagation.TraceContext{},
		provider: "openai",
		errs:     optcheck.New("sluiceotel", sluice.ErrInvalidConfig),
	}
	for _, o := range opts {
		if o != nil {
			o(&c)
		}
	}
	if err := c.errs.Err(); err != nil {
		return nil, err
	}
	if c.tp == nil {
		c.tp = otel.GetTracerProvider()
	}
	_, off := c.tp.(noop.TracerProvider)
	return &Tracer{
		off:      off,
		tracer:   c.tp.Tracer(ScopeName),
		prop:     c.prop,
		group:    c.group,
		system:   c.system,
		output:   c.output,
		dead:     c.dead,
		provider: c.provider,
	}, nil
}

// WithTracerProvider sets the provider spans are recorded with.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(c *config) {
		if tp == nil {
			c.errs.Reject("WithTracerProvider(nil)", "the provider is nil", "leave the option out for the global provider")
			return
		}
		c.tp = tp
	}
}

// WithPropagator sets how trace context is read from and written to
// record headers. The default is the W3C Trace Context (traceparent and
// tracestate); pass propagation.NewCompositeTextMapPropagator to add
// baggage.
func WithPropagator(p propagation.TextMapPropagator) Option {
	return func(c *config) {
		if p == nil {
			c.errs.Reject("WithPropagator(nil)", "the propagator is nil", "leave the option out for W3C Trace Context")
			return
		}
		c.prop = p
	}
}

// WithConsumerGroup names the consumer group (Kafka) or group (Redis
// Streams) the pipeline reads with, for messaging.consumer.group.name.
func WithConsumerGroup(name string) Option {
	return func(c *config) {
		if name == "" {
			c.errs.Reject(`WithConsumerGroup("")`, "the group name is empty", "leave the option out when there is no group")
			return
		}
		c.group = name
	}
}

// WithMessagingSystem sets messaging.system. By default it is "kafka" for
// events with offsets and "redis" for events with entry IDs.
func WithMessagingSystem(name string) Option {
	return func(c *config) {
		if name == "" {
			c.errs.Reject(`WithMessagingSystem("")`, "the name is empty", "leave the option out to tell kafka from redis by the event's origin")
			return
		}
		c.system = name
	}
}

// WithDestinations names the topics or streams the enriched outputs and
// the dead letters are written to, for the write spans' names and
// messaging.destination.name. Either may be empty when unknown.
func WithDestinations(output, deadLetter string) Option {
	return func(c *config) { c.output, c.dead = output, deadLetter }
}

// WithProviderName sets gen_ai.provider.name of model-call spans. The
// default is "openai", the API the calls speak.
func WithProviderName(name string) Option {
	return func(c *config) {
		if name == "" {
			c.errs.Reject(`WithProviderName("")`, "the name is empty", "leave the option out for openai")
			return
		}
		c.provider = name
	}
}

// EventDone implements [sluice.Observer]; the Tracer records outcomes on
// the event's span instead.
func (t *Tracer) EventDone(sluice.Outcome, time.Duration) {}

// RateLimited implements [sluice.Observer]; the Tracer records pauses on
// the spans of the events they hold back.
func (t *Tracer) RateLimited(time.Duration) {}

// ModelCall implements [openai.CallObserver]; the Tracer records calls
// through [openai.CallTracer] instead.
func (t *Tracer) ModelCall(int, time.Duration, int64, int64) {}

// Extract returns ctx with the remote span context found in m's headers,
// if any: what the pipeline's spans for m are children of.
func (t *Tracer) Extract(ctx context.Context, m *sluice.Message) context.Context {
	if !hasTraceHeader(t.prop, m.Headers) {
		return ctx
	}
	return t.prop.Extract(ctx, headerCarrier{hs: &m.Headers})
}
