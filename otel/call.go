package sluiceotel

import (
	"context"
	"errors"
	"strconv"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/openai"
)

// callKey keys a model call's span in the call's context.
type callKey struct{}

// CallStarted implements [openai.CallTracer]: it starts the call's
// "chat <model>" span, a child of the event's span, or for a batch call a
// new trace linked to every event's span.
func (t *Tracer) CallStarted(ctx context.Context, c *openai.Call) context.Context {
	if t.off {
		return ctx
	}
	opts := []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindClient)}
	var evs []*event
	var attrs []attribute.KeyValue
	if c.Batch {
		links := make([]trace.Link, 0, len(c.Events))
		for _, m := range c.Events {
			mctx := m.Context()
			if sc := trace.SpanContextFromContext(mctx); sc.IsValid() {
				links = append(links, trace.Link{SpanContext: sc})
			}
			if ev := eventOf(mctx); ev != nil {
				evs = append(evs, ev)
			}
		}
		if len(evs) == 0 {
			return ctx // no event of the batch is recorded
		}
		attrs = append(attrs, semconv.MessagingBatchMessageCount(len(c.Events)))
		opts = append(opts, trace.WithNewRoot(), trace.WithLinks(links...))
	} else {
		ev := eventOf(ctx)
		if ev == nil {
			return ctx
		}
		attrs = append(attrs,
			semconv.HTTPRequestResendCount(int(ev.calls.Add(1)-1)),
			AttrAttempt.Int(int(ev.attempt.Load())))
	}
	attrs = append(attrs,
		semconv.GenAIOperationNameChat,
		semconv.GenAIProviderNameKey.String(t.provider),
		semconv.GenAIRequestModel(c.Model),
		AttrTask.String(c.Task))
	opts = append(opts, trace.WithAttributes(attrs...))
	cctx, span := t.tracer.Start(ctx, "chat "+c.Model, opts...)
	if !span.IsRecording() {
		return ctx
	}
	if len(evs) > 0 {
		sc := span.SpanContext()
		for _, ev := range evs {
			ev.calls.Add(1)
			ev.span.AddEvent(EventBatchCall, trace.WithAttributes(
				attribute.String("trace_id", sc.TraceID().String()),
				attribute.String("span_id", sc.SpanID().String()),
				semconv.MessagingBatchMessageCount(len(c.Events))))
		}
	}
	return context.WithValue(cctx, callKey{}, span)
}

// CallEnded implements [openai.CallTracer]: it records the call's
// status, the model that answered and the tokens, a "rate_limited" event
// for a 429 or a 503 with a Retry-After, and ends the span.
func (t *Tracer) CallEnded(ctx context.Context, _ *openai.Call, r *openai.CallResult) {
	span, _ := ctx.Value(callKey{}).(trace.Span)
	if span == nil {
		return
	}
	if r.StatusCode > 0 {
		span.SetAttributes(semconv.HTTPResponseStatusCode(r.StatusCode))
	}
	if r.ResponseModel != "" {
		span.SetAttributes(semconv.GenAIResponseModel(r.ResponseModel))
	}
	if r.UsageKnown {
		span.SetAttributes(
			semconv.GenAIUsageInputTokens(int(r.Usage.PromptTokens)),
			semconv.GenAIUsageOutputTokens(int(r.Usage.CompletionTokens)),
			semconv.GenAIUsageCacheReadInputTokens(int(r.Usage.CachedTokens)))
	}
	var rl *sluice.RateLimitError
	if r.StatusCode == 429 || errors.As(r.Err, &rl) {
		span.AddEvent(EventRateLimited, trace.WithAttributes(
			AttrRetryAfter.Float64(r.RetryAfter.Seconds()),
			semconv.HTTPResponseStatusCode(r.StatusCode)))
	}
	if r.Err != nil {
		span.SetAttributes(semconv.ErrorTypeKey.String(errorType(r.Err, r.StatusCode)))
		span.SetStatus(codes.Error, r.Err.Error())
	}
	span.End()
}

// errorType is error.type for err: the HTTP status of an error answer, or
// how the pipeline treats the error.
func errorType(err error, status int) string {
	var rl *sluice.RateLimitError
	var pe *sluice.PauseError
	switch {
	case status >= 400:
		return strconv.Itoa(status)
	case err == nil:
		return ""
	case errors.Is(err, openai.ErrInvalidAnswer):
		return "invalid_answer"
	case errors.Is(err, openai.ErrTimeout):
		return "timeout"
	case errors.As(err, &rl):
		return "rate_limited"
	case errors.As(err, &pe):
		return "paused"
	case errors.Is(err, sluice.ErrFatal):
		return "fatal"
	case errors.Is(err, sluice.ErrPermanent):
		return "permanent"
	default:
		return "transient"
	}
}
