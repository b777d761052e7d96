package openai

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/testutil"
	"github.com/sluicehq/sluice/llmtest"
)

// Behaviours of real model servers (seen on llama.cpp with a small model,
// see TestRealModel), replayed on the fake so that the fast tests cover
// them.

// A small model asked for "a JSON object" (json_object) makes one up:
// well-formed, in the wrong shape. It is asked again once, then
// dead-lettered with a reason naming the schema rule it broke.
func TestOffSchemaAnswerIsNamed(t *testing.T) {
	e, srv := newTest(t, Sentiment(), []llmtest.Option{llmtest.WithOffSchemaRate(1)}, WithOutputMode(OutputJSONObject))
	_, err := e.Enrich(bg(), event("Terrible, broken on arrival"))
	if class(err) != "permanent" {
		t.Fatalf("off-schema answers: %v (%s), want permanent", err, class(err))
	}
	for _, want := range []string{"does not match the sentiment schema", `required property "label" is missing`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("reason %q does not say %q", err, want)
		}
	}
	if st := srv.Stats(); st.Completions != 2 {
		t.Errorf("%d calls, want the answer asked for twice", st.Completions)
	}

	// Under json_schema, llama.cpp's grammar keeps the shape, not the
	// bounds: the reason names the number.
	e, _ = newTest(t, Spam(), []llmtest.Option{llmtest.WithOffSchemaRate(1)})
	_, err = e.Enrich(bg(), event("hello"))
	if class(err) != "permanent" || !strings.Contains(err.Error(), "$.confidence: 200 is above the maximum 1") {
		t.Errorf("out-of-bounds answers: %v (%s), want permanent naming $.confidence", err, class(err))
	}

	// Once is not fatal: the second answer is used.
	e, srv = newTest(t, Sentiment(), nil, WithOutputMode(OutputJSONObject))
	srv.Inject(llmtest.Fault{OffSchema: true})
	out, err := e.Enrich(bg(), event("I love it"))
	if err != nil || stored(t, out).Task != "sentiment" {
		t.Fatalf("after one off-schema answer: %v", err)
	}
}

// llama.cpp, vLLM and Ollama queue calls beyond their slots instead of
// answering 429: a pipeline with more workers than slots gets every event
// enriched, with no rate-limit pause, only waiting.
func TestQueueingServer(t *testing.T) {
	e, srv := newTest(t, Spam(), []llmtest.Option{llmtest.WithQueue(2), llmtest.WithLatency(llmtest.Fixed(2 * time.Millisecond))})
	r := runPipeline(t, e, 64, 8, 1)
	st := srv.Stats()
	if r.enriched != 64 || r.dead != 0 || st.ByStatus[429] != 0 || r.stats.RateLimited != 0 {
		t.Errorf("enriched %d, dead %d, 429s %d, rate-limited %d; want 64 enriched and no 429",
			r.enriched, r.dead, st.ByStatus[429], r.stats.RateLimited)
	}
	if st.MaxQueued == 0 {
		t.Errorf("no call waited in the queue (max concurrent %d): the test does not exercise queueing", st.MaxConcurrent)
	}
	// The queue counts against the request timeout, as on a real server: a
	// timeout shorter than the wait is a transient failure, not a 429.
	holder, srv := newTest(t, Spam(), []llmtest.Option{llmtest.WithQueue(1)})
	e, err := New("llmtest", Spam(), []string{"text"}, WithBaseURL(srv.BaseURL()), WithTimeout(50*time.Millisecond), WithLogger(testutil.Quiet()))
	if err != nil {
		t.Fatal(err)
	}
	srv.Inject(llmtest.Fault{Hang: true})
	ctx, cancel := context.WithCancel(bg())
	held := make(chan struct{})
	defer func() { cancel(); <-held }()
	go func() { defer close(held); _, _ = holder.Enrich(ctx, event("hold the slot")) }()
	if err := srv.WaitHangs(bg(), 1); err != nil {
		t.Fatal(err)
	}
	_, err = e.Enrich(bg(), event("wait behind it"))
	if class(err) != "transient" || !strings.Contains(err.Error(), "timed out") {
		t.Errorf("a call that timed out in the queue: %v (%s), want a transient timeout", err, class(err))
	}
	if st := srv.Stats(); st.MaxQueued != 1 || st.ByStatus[429] != 0 {
		t.Errorf("stats %+v, want one call queued and no 429", st)
	}
}

// llama.cpp answers under the name of the model it serves, whatever the
// request named: the enrichment records the model that answered.
func TestServedModelIsRecorded(t *testing.T) {
	e, _ := newTest(t, Sentiment(), []llmtest.Option{llmtest.WithServedModel("SmolLM2-135M-Instruct")})
	out, err := e.Enrich(bg(), event("I love it"))
	if err != nil {
		t.Fatal(err)
	}
	if got := stored(t, out).Model; got != "SmolLM2-135M-Instruct" {
		t.Errorf("ai_enrichment.model %q, want the model the server reported", got)
	}
}
