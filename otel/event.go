package sluiceotel

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/sluicehq/sluice"
)

// Attribute keys of Sluice's own, where the conventions have none.
const (
	// AttrDeliveries is how often the broker delivered the event.
	AttrDeliveries = attribute.Key("sluice.deliveries")
	// AttrAttempt is the pipeline's enrichment attempt (1 for the first).
	AttrAttempt = attribute.Key("sluice.attempt")
	// AttrOutcome is "enriched" or "dead_letter" on a write span.
	AttrOutcome = attribute.Key("sluice.outcome")
	// AttrFailureReason is the dead letter's failure_reason.
	AttrFailureReason = attribute.Key("sluice.failure_reason")
	// AttrTask is the model task's name.
	AttrTask = attribute.Key("sluice.task")
	// AttrBackoff and AttrPause are the wait before a retry or the pause
	// of consumption, in seconds.
	AttrBackoff = attribute.Key("sluice.backoff_s")
	AttrPause   = attribute.Key("sluice.pause_s")
	// AttrRetryAfter is the wait a 429 or 503 asked for, in seconds.
	AttrRetryAfter = attribute.Key("sluice.retry_after_s")
)

// Span event names.
const (
	EventRetry       = "sluice.retry"
	EventPause       = "sluice.pause"
	EventRateLimited = "rate_limited"
	EventBatchCall   = "sluice.batch_call"
)

// eventKey keys an event's state in its context.
type eventKey struct{}

// event is the tracing state of one recorded event.
type event struct {
	span    trace.Span // the process span
	attempt atomic.Int32
	calls   atomic.Int32 // model calls made for it so far

	mu     sync.Mutex
	write  trace.Span // the write under way, if any
	dead   bool       // the write is a dead letter's
	reason string     // its failure reason
}

func eventOf(ctx context.Context) *event {
	ev, _ := ctx.Value(eventKey{}).(*event)
	return ev
}

// systemFor is messaging.system for an event from o.
func (t *Tracer) systemFor(o sluice.Origin) string {
	switch {
	case t.system != "":
		return t.system
	case o.ID != "":
		return "redis"
	default:
		return "kafka"
	}
}

// EventReceived implements [sluice.EventTracer]: it starts the event's
// "process" span, a child of the producer's context found in its headers.
func (t *Tracer) EventReceived(ctx context.Context, m *sluice.Message) context.Context {
	if t.off {
		return ctx
	}
	o := m.Origin
	name := "process"
	if o.Topic != "" {
		name = "process " + o.Topic
	}
	_, span := t.tracer.Start(t.Extract(ctx, m), name, trace.WithSpanKind(trace.SpanKindConsumer))
	if !span.IsRecording() {
		// Not sampled: nothing to record, and the event's records keep
		// the producer's trace context.
		return ctx
	}
	attrs := make([]attribute.KeyValue, 0, 10)
	attrs = append(attrs,
		semconv.MessagingSystemKey.String(t.systemFor(o)),
		semconv.MessagingOperationTypeProcess,
		semconv.MessagingOperationName("process"),
		semconv.MessagingDestinationName(o.Topic),
		semconv.MessagingMessageBodySize(len(m.Value)),
	)
	if o.ID != "" {
		attrs = append(attrs, semconv.MessagingMessageID(o.ID))
	} else {
		attrs = append(attrs,
			semconv.MessagingDestinationPartitionID(strconv.FormatInt(int64(o.Partition), 10)),
			semconv.MessagingKafkaOffset(int(o.Offset)))
	}
	if t.group != "" {
		attrs = append(attrs, semconv.MessagingConsumerGroupName(t.group))
	}
	if m.Deliveries > 0 {
		attrs = append(attrs, AttrDeliveries.Int(m.Deliveries))
	}
	span.SetAttributes(attrs...)
	ev := &event{span: span}
	ev.attempt.Store(1)
	return context.WithValue(trace.ContextWithSpan(ctx, span), eventKey{}, ev)
}

// EventRetry implements [sluice.EventTracer]: a "sluice.retry" event on
// the process span.
func (t *Tracer) EventRetry(ctx context.Context, _ *sluice.Message, attempt int, err error, backoff time.Duration) {
	ev := eventOf(ctx)
	if ev == nil {
		return
	}
	ev.attempt.Store(int32(attempt + 1))
	ev.span.AddEvent(EventRetry, trace.WithAttributes(
		AttrAttempt.Int(attempt),
		AttrBackoff.Float64(backoff.Seconds()),
		semconv.ErrorTypeKey.String(errorType(err, 0)),
		semconv.ExceptionMessage(err.Error()),
	))
}

// EventPaused implements [sluice.EventTracer]: a "sluice.pause" event on
// the process span.
func (t *Tracer) EventPaused(ctx context.Context, _ *sluice.Message, d time.Duration, err error) {
	ev := eventOf(ctx)
	if ev == nil {
		return
	}
	attrs := []attribute.KeyValue{AttrPause.Float64(d.Seconds())}
	if err != nil {
		attrs = append(attrs, semconv.ExceptionMessage(err.Error()))
	}
	ev.span.AddEvent(EventPause, trace.WithAttributes(attrs...))
}

// EventWriting implements [sluice.EventTracer]: it starts the "send" span
// of the output or the dead letter, and returns hs with its trace context.
func (t *Tracer) EventWriting(ctx context.Context, in, _ *sluice.Message, hs []sluice.Header, dead bool, reason string) []sluice.Header {
	ev := eventOf(ctx)
	if ev == nil {
		return hs
	}
	dest, outcome := t.output, "enriched"
	if dead {
		dest, outcome = t.dead, "dead_letter"
	}
	name := "send"
	if dest != "" {
		name = "send " + dest
	}
	attrs := []attribute.KeyValue{
		semconv.MessagingSystemKey.String(t.systemFor(in.Origin)),
		semconv.MessagingOperationTypeSend,
		semconv.MessagingOperationName("send"),
		AttrOutcome.String(outcome),
	}
	if dest != "" {
		attrs = append(attrs, semconv.MessagingDestinationName(dest))
	}
	if dead {
		attrs = append(attrs, AttrFailureReason.String(reason))
	}
	wctx, span := t.tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindProducer), trace.WithAttributes(attrs...))
	if dead {
		span.SetStatus(codes.Error, reason)
	}
	ev.mu.Lock()
	if prev := ev.write; prev != nil {
		prev.SetStatus(codes.Error, "the sink rejected the output for good: "+reason)
		prev.End()
	}
	ev.write, ev.dead, ev.reason = span, dead, reason
	ev.mu.Unlock()
	return inject(wctx, t.prop, hs)
}

// EventFinished implements [sluice.EventTracer]: it ends the write span
// and the process span, with the event's outcome.
func (t *Tracer) EventFinished(ctx context.Context, _ *sluice.Message, acked bool, err error) {
	ev := eventOf(ctx)
	if ev == nil {
		return
	}
	ev.mu.Lock()
	w, dead, reason := ev.write, ev.dead, ev.reason
	ev.write = nil
	ev.mu.Unlock()
	const left = "left unacked for the broker to deliver again"
	if w != nil {
		if !acked {
			w.SetStatus(codes.Error, "written but "+left)
		}
		w.End()
	}
	s := ev.span
	switch {
	case !acked:
		msg := left
		if err != nil {
			msg += ": " + err.Error()
		}
		s.SetStatus(codes.Error, msg)
	case dead:
		// Dead-lettered: the event was not enriched.
		s.SetAttributes(semconv.ErrorTypeKey.String(errorType(err, 0)), AttrFailureReason.String(reason))
		s.SetStatus(codes.Error, reason)
	}
	s.End()
}
