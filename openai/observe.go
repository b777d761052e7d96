package openai

import (
	"context"
	"errors"
	"time"

	"github.com/sluicehq/sluice"
)

// Call describes one request to the model, for a [CallTracer].
type Call struct {
	// Model is the model asked for, and Task the task's name.
	Model string
	Task  string
	// Events are the events the call answers: one for [Enricher.Enrich],
	// several for a batch call of [Enricher.EnrichBatch]. Each one's
	// [sluice.Message.Context] is the context the pipeline gave it.
	Events []*sluice.Message
	// Batch reports whether the call asks about several events at once.
	Batch bool
}

// CallResult is how a call to the model ended.
type CallResult struct {
	// StatusCode is the HTTP status, or 0 when no response came (a
	// network error, a timeout, a cancellation).
	StatusCode int
	// ResponseModel is the model that answered, when the server said.
	ResponseModel string
	// Usage is the call's tokens, when UsageKnown (the server sent them).
	Usage      Usage
	UsageKnown bool
	// RetryAfter is the pause a 429 or 503 asked for, or 0.
	RetryAfter time.Duration
	// Err is the call's error as the enricher classified it (an invalid
	// answer included), or nil.
	Err error
}

// CallTracer is an optional capability of a [CallObserver] (see
// [WithCallObserver]) that follows each request with the context of the
// events it serves, for tracing (the module github.com/sluicehq/sluice/otel
// implements it). Its methods run on the enricher's callers' goroutines,
// many at once, and must not block.
type CallTracer interface {
	// CallStarted is called before a request is sent. ctx is the
	// caller's context: an event's context for a call of one event, the
	// batch's for a batch call. It returns the context the request is
	// sent under and that CallEnded gets: ctx, or ctx with values added,
	// never cancelled sooner.
	CallStarted(ctx context.Context, c *Call) context.Context
	// CallEnded is called once the request's answer is read and checked,
	// or it failed.
	CallEnded(ctx context.Context, c *Call, r *CallResult)
}

// callTracers returns the observers that are also CallTracers.
func callTracers(obs []CallObserver) []CallTracer {
	var ts []CallTracer
	for _, o := range obs {
		if t, ok := o.(CallTracer); ok {
			ts = append(ts, t)
		}
	}
	return ts
}

// startCall tells the tracers, if any, that a request for c is about to
// be sent, and returns the context to send it under.
func (e *Enricher) startCall(ctx context.Context, c *call) (context.Context, *Call) {
	if len(e.tracers) == 0 {
		return ctx, nil
	}
	info := &Call{Model: e.model, Task: e.task.Name, Events: c.msgs, Batch: c.batch}
	for _, t := range e.tracers {
		ctx = t.CallStarted(ctx, info)
	}
	return ctx, info
}

// endCall tells the tracers how the request ended.
func (e *Enricher) endCall(ctx context.Context, info *Call, resp *chatResponse, err error) {
	if info == nil {
		return
	}
	r := &CallResult{Err: err}
	var ae *APIError
	switch {
	case errors.As(err, &ae):
		r.StatusCode = ae.StatusCode
	case resp != nil:
		r.StatusCode = 200
	}
	if resp != nil {
		r.ResponseModel = resp.Model
		if resp.Usage != nil {
			r.Usage, r.UsageKnown = *resp.Usage, true
		}
	}
	var rl *sluice.RateLimitError
	if errors.As(err, &rl) {
		r.RetryAfter = rl.RetryAfter
	}
	for _, t := range e.tracers {
		t.CallEnded(ctx, info, r)
	}
}

// eventContext is ctx with the values of m's context (the one the
// pipeline gave the event), so that a call made for one event of a batch
// is traced as that event's, while ctx still cancels it.
func eventContext(ctx context.Context, m *sluice.Message) context.Context {
	mc := m.Context()
	if mc == context.Background() {
		return ctx
	}
	return valuesFrom{Context: ctx, vals: mc}
}

// valuesFrom is a context cancelled with its embedded context that looks
// values up in vals first.
type valuesFrom struct {
	context.Context
	vals context.Context
}

func (v valuesFrom) Value(key any) any {
	if x := v.vals.Value(key); x != nil {
		return x
	}
	return v.Context.Value(key)
}
