package sluice

import (
	"context"
	"time"
)

// EventTracer is an optional capability of an [Observer] (see
// [WithObserver]) that follows each event through the pipeline, for
// distributed tracing. The module github.com/sluicehq/sluice/otel
// implements it with OpenTelemetry; the pipeline itself depends on no
// tracing library, and without an EventTracer it does no tracing work.
//
// Each method gets the event's context: the one EventReceived returned.
// Methods are called from the pipeline's goroutines, never twice at once
// for the same event, and must not block. The message passed is the
// pipeline's and must be treated as read-only.
type EventTracer interface {
	// EventReceived is called once for each event the source yields,
	// before anything else happens to it. ctx is the pipeline's context
	// for enrichment; EventReceived returns it with the tracer's values
	// added (for example a span), and must not return a context that is
	// cancelled sooner. The pipeline keeps it with the event (see
	// [Message.Context]) and passes it to the enricher.
	//
	// Returning ctx itself says that the tracer has nothing to follow for
	// this event (it is not sampled, or tracing is off): when every
	// tracer does, the pipeline makes no other call for the event, so an
	// event that is not traced costs next to nothing.
	EventReceived(ctx context.Context, m *Message) context.Context
	// EventRetry is called when an enrichment attempt failed with a
	// transient error and the event will be tried again after backoff.
	// attempt counts the attempts so far, rate-limited ones excepted.
	EventRetry(ctx context.Context, m *Message, attempt int, err error, backoff time.Duration)
	// EventPaused is called when the event's attempt was refused for a
	// rate limit (or the enricher asked for a pause, see [PauseError]):
	// consumption pauses for d and the event is tried again after it,
	// without spending a retry. err is the refusal.
	EventPaused(ctx context.Context, m *Message, d time.Duration, err error)
	// EventWriting is called once before the event's record is written:
	// its enriched output (out, dead false), or its dead letter (out is
	// nil, dead true, reason is the failure_reason). hs are the headers
	// the record would carry; EventWriting returns the headers to write
	// instead (hs itself, or a new slice, for example with the trace
	// context replaced), and must not modify hs. An output the sink
	// rejects for good is then written as a dead letter, with a second
	// call.
	EventWriting(ctx context.Context, in, out *Message, hs []Header, dead bool, reason string) []Header
	// EventFinished is called once when the event leaves the pipeline:
	// its output or dead letter written and the event acked (acked true),
	// or left unacked for the broker to deliver again (at shutdown, or
	// when a write or an ack could not be completed). err is the event's
	// latest failure, if any.
	EventFinished(ctx context.Context, m *Message, acked bool, err error)
}

// Context returns the message's context: the one an [EventTracer] gave
// the event when the pipeline received it, or context.Background(). A
// [BatchEnricher], whose call serves many events, finds each event's
// context here (for example to link its model call to the events).
func (m *Message) Context() context.Context {
	if m.ctx == nil {
		return context.Background()
	}
	return m.ctx
}

// WithContext returns a shallow copy of m whose context is ctx, like
// [Message.WithValue]. ctx must not be nil.
func (m *Message) WithContext(ctx context.Context) *Message {
	if ctx == nil {
		panic("sluice: Message.WithContext(nil)")
	}
	out := *m
	out.ctx = ctx
	return &out
}

// tracers returns the observers that are also EventTracers.
func tracers(obs []Observer) []EventTracer {
	var ts []EventTracer
	for _, o := range obs {
		if t, ok := o.(EventTracer); ok {
			ts = append(ts, t)
		}
	}
	return ts
}

// traceReceived gives the event its context from every tracer, in order,
// and marks it traced unless every tracer left the context as it was.
func (r *runner) traceReceived(it *item) {
	ctx := r.workCtx
	for _, t := range r.tracers {
		ctx = t.EventReceived(ctx, it.in)
	}
	// workCtx is a pointer, so the comparison cannot panic.
	if ctx != r.workCtx {
		it.in.ctx = ctx
		it.traced = true
	}
}

// enrichCtx is the context an enrichment of m runs under.
func (r *runner) enrichCtx(m *Message) context.Context {
	if m.ctx != nil {
		return m.ctx
	}
	return r.workCtx
}

// traceWriting lets the tracers set the headers of the event's record.
func (r *runner) traceWriting(it *item, hs []Header, dead bool) []Header {
	for _, t := range r.tracers {
		out := it.out
		if dead {
			out = nil
		}
		hs = t.EventWriting(it.in.Context(), it.in, out, hs, dead, it.reason)
	}
	return hs
}

// traceFinished tells the tracers that the event left the pipeline.
func (r *runner) traceFinished(it *item) {
	for _, t := range r.tracers {
		t.EventFinished(it.in.Context(), it.in, it.acked, it.err)
	}
}
