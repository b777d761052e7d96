package openai

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/llmtest"
)

type ctxMark struct{}

// recObserver is a CallObserver and CallTracer that records every call
// it is told about.
type recObserver struct {
	mu    sync.Mutex
	calls []recCall
}

type recCall struct {
	call   Call
	res    CallResult
	marked bool // CallEnded got the context CallStarted returned
	parent any  // the ctxMark value of the context the call was made under
}

func (o *recObserver) ModelCall(int, time.Duration, int64, int64) {}

func (o *recObserver) CallStarted(ctx context.Context, c *Call) context.Context {
	return context.WithValue(ctx, ctxMark{}, c)
}

func (o *recObserver) CallEnded(ctx context.Context, c *Call, r *CallResult) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.calls = append(o.calls, recCall{call: *c, res: *r, marked: ctx.Value(ctxMark{}) == c, parent: ctx.Value(parentMark{})})
}

type parentMark struct{}

func TestCallTracerSeesEveryRequest(t *testing.T) {
	obs := &recObserver{}
	e, srv := newTest(t, Sentiment(), nil, WithCallObserver(obs))
	srv.Inject(
		llmtest.Fault{Status: http.StatusTooManyRequests, Code: "rate_limit_exceeded", Header: http.Header{"Retry-After-Ms": {"1500"}}},
		llmtest.Fault{Status: http.StatusInternalServerError},
	)
	in := event("great")
	ctx := context.WithValue(bg(), parentMark{}, "event")
	for range 2 {
		if _, err := e.Enrich(ctx, in); err == nil {
			t.Fatal("a fault did not fail the call")
		}
	}
	if _, err := e.Enrich(ctx, in); err != nil {
		t.Fatal(err)
	}
	if len(obs.calls) != 3 {
		t.Fatalf("%d calls observed, want 3", len(obs.calls))
	}
	for i, c := range obs.calls {
		if !c.marked || c.parent != "event" || c.call.Model != "llmtest" || c.call.Task != "sentiment" ||
			c.call.Batch || len(c.call.Events) != 1 || c.call.Events[0] != in {
			t.Errorf("call %d: %+v", i, c)
		}
	}
	var rl *sluice.RateLimitError
	if r := obs.calls[0].res; r.StatusCode != 429 || r.RetryAfter != 1500*time.Millisecond || !errors.As(r.Err, &rl) || r.UsageKnown {
		t.Errorf("429 call: %+v", r)
	}
	if r := obs.calls[1].res; r.StatusCode != 500 || r.Err == nil {
		t.Errorf("500 call: %+v", r)
	}
	if r := obs.calls[2].res; r.StatusCode != 200 || r.Err != nil || !r.UsageKnown || r.Usage.PromptTokens == 0 || r.ResponseModel == "" {
		t.Errorf("successful call: %+v", r)
	}
}

// A batch call names every event it serves, and the events it sends
// again one by one are called under each event's own context.
func TestCallTracerBatch(t *testing.T) {
	obs := &recObserver{}
	e, srv := newTest(t, Sentiment(), nil, WithCallObserver(obs))
	srv.Inject(llmtest.Fault{Malformed: true}) // the batch answer is unusable: one by one
	var ins []*sluice.Message
	for _, text := range []string{"great", "awful", "fine"} {
		m := event(text)
		ins = append(ins, m.WithContext(context.WithValue(bg(), parentMark{}, text)))
	}
	for i, r := range e.EnrichBatch(bg(), ins) {
		if r.Err != nil {
			t.Fatalf("event %d: %v", i, r.Err)
		}
	}
	if len(obs.calls) != 4 {
		t.Fatalf("%d calls, want a batch and 3 single calls", len(obs.calls))
	}
	b := obs.calls[0]
	if !b.call.Batch || len(b.call.Events) != 3 || b.parent != nil {
		t.Errorf("batch call: %+v", b)
	}
	for i, c := range obs.calls[1:] {
		if c.call.Batch || c.parent != string(ins[i].Value[len(`{"text":"`):len(ins[i].Value)-2]) {
			t.Errorf("single call %d made under %v: %+v", i, c.parent, c.call)
		}
	}
}
