package openai

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/internal/testutil"
	"github.com/sluicehq/sluice/llmtest"
)

func TestBuiltinTasks(t *testing.T) {
	tests := []struct {
		task   Task
		text   string
		result string
	}{
		{Sentiment(), "I love it, the battery is great", `{"label":"positive","score":1}`},
		{Sentiment(), "Terrible support and a broken screen, but nice box", `{"label":"negative","score":-0.33}`},
		{Sentiment(), "It arrived on Tuesday", `{"label":"neutral","score":0}`},
		{Entities(), "Yesterday Ada Lovelace flew from Paris to Acme in May.",
			`{"entities":[{"text":"Ada Lovelace","type":"other"},{"text":"Paris","type":"location"},{"text":"Acme","type":"organization"},{"text":"May","type":"date"}]}`},
		{Translate("French"), "Good morning", `{"source_language":"English","target_language":"French","translations":{"text":"[French] Good morning"}}`},
		{Spam(), "WINNER! Claim your free prize now", `{"confidence":0.9,"is_spam":true}`},
		{Spam(), "Thanks, that fixed it", `{"confidence":0.95,"is_spam":false}`},
	}
	for _, tc := range tests {
		t.Run(tc.task.Name+"/"+tc.text, func(t *testing.T) {
			e, _ := newTest(t, tc.task, nil)
			in := event(tc.text)
			out, err := e.Enrich(bg(), in)
			if err != nil {
				t.Fatal(err)
			}
			got := stored(t, out)
			if string(got.Result) != tc.result {
				t.Errorf("result = %s, want %s", got.Result, tc.result)
			}
			if got.Task != tc.task.Name || got.Model != "llmtest" {
				t.Errorf("task, model = %q, %q", got.Task, got.Model)
			}
			if h, _ := ResultHash(got.Result); got.Hash != h || !strings.HasPrefix(h, "sha256:") {
				t.Errorf("hash = %q, want %q", got.Hash, h)
			}
			// Every other byte of the event is kept.
			prefix := strings.TrimSuffix(string(in.Value), "}")
			if !strings.HasPrefix(string(out.Value), prefix+`,"ai_enrichment":{`) {
				t.Errorf("event changed outside the enrichment: %s", out.Value)
			}
		})
	}
}

// The same answer after a redelivery has the same hash.
func TestHashIsStableAcrossRedelivery(t *testing.T) {
	e, _ := newTest(t, Entities(), nil)
	in := event("Grace Hopper visited London")
	a, err := e.Enrich(bg(), in)
	if err != nil {
		t.Fatal(err)
	}
	b, err := e.Enrich(bg(), in)
	if err != nil {
		t.Fatal(err)
	}
	if ha, hb := stored(t, a).Hash, stored(t, b).Hash; ha != hb {
		t.Errorf("hashes differ: %s, %s", ha, hb)
	}
}

func TestMultipleFieldsAndKey(t *testing.T) {
	srv := llmtest.NewServer()
	defer srv.Close()
	e, err := New("llmtest", Translate("German"), []string{"title", "body.text"},
		WithBaseURL(srv.BaseURL()), WithEnrichmentKey("enriched"), WithLogger(testutil.Quiet()))
	if err != nil {
		t.Fatal(err)
	}
	in := &sluice.Message{Value: []byte(`{ "title" : "Hello",  "body": {"text": "See you"}, "n": 1.50 }`)}
	out, err := e.Enrich(bg(), in)
	if err != nil {
		t.Fatal(err)
	}
	want := `{ "title" : "Hello",  "body": {"text": "See you"}, "n": 1.50 ,"enriched":`
	if !strings.HasPrefix(string(out.Value), want) {
		t.Fatalf("got %s", out.Value)
	}
	var ev struct {
		E Enrichment `json:"enriched"`
	}
	_ = json.Unmarshal(out.Value, &ev)
	if w := `{"source_language":"English","target_language":"German","translations":{"body.text":"[German] See you","title":"[German] Hello"}}`; string(ev.E.Result) != w {
		t.Errorf("result %s, want %s", ev.E.Result, w)
	}
}

func TestStructuredOutputFallback(t *testing.T) {
	tests := []struct {
		name     string
		mode     llmtest.SchemaMode
		want     OutputMode
		formats  map[string]int64 // on the first event
		formats2 map[string]int64 // after a second event
	}{
		{"honoured", llmtest.SchemaHonor, OutputJSONSchema, map[string]int64{"json_schema": 1}, map[string]int64{"json_schema": 2}},
		{"ignored", llmtest.SchemaIgnore, OutputJSONSchema, map[string]int64{"json_schema": 1}, map[string]int64{"json_schema": 2}},
		{"json_schema rejected", llmtest.SchemaRejectJSONSchema, OutputJSONObject,
			map[string]int64{"json_schema": 1, "json_object": 1}, map[string]int64{"json_schema": 1, "json_object": 2}},
		{"all rejected", llmtest.SchemaRejectAll, OutputPromptOnly,
			map[string]int64{"json_schema": 1, "json_object": 1, "none": 1}, map[string]int64{"json_schema": 1, "json_object": 1, "none": 2}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e, srv := newTest(t, Sentiment(), []llmtest.Option{llmtest.WithSchemaMode(tc.mode)})
			out, err := e.Enrich(bg(), event("great"))
			if err != nil {
				t.Fatal(err)
			}
			if r := stored(t, out).Result; string(r) != `{"label":"positive","score":1}` {
				t.Errorf("result %s", r)
			}
			if e.OutputMode() != tc.want {
				t.Errorf("mode %s, want %s", e.OutputMode(), tc.want)
			}
			if got := srv.Stats().ByFormat; fmt.Sprint(got) != fmt.Sprint(tc.formats) {
				t.Errorf("formats %v, want %v", got, tc.formats)
			}
			if _, err := e.Enrich(bg(), event("bad")); err != nil {
				t.Fatal(err)
			}
			if got := srv.Stats().ByFormat; fmt.Sprint(got) != fmt.Sprint(tc.formats2) {
				t.Errorf("formats after a second event %v, want %v: the fallback is not remembered", got, tc.formats2)
			}
		})
	}
}

// Without OutputAuto, a rejected response_format is a permanent failure,
// marked as a misconfiguration (every event would get it).
func TestFixedOutputModeDoesNotFallBack(t *testing.T) {
	e, srv := newTest(t, Sentiment(), []llmtest.Option{llmtest.WithSchemaMode(llmtest.SchemaRejectJSONSchema)}, WithOutputMode(OutputJSONSchema))
	_, err := e.Enrich(bg(), event("great"))
	if class(err) != "config" || !errors.Is(err, sluice.ErrPermanent) || !strings.Contains(err.Error(), "json_schema") {
		t.Fatalf("err = %v", err)
	}
	if n := srv.Stats().Total; n != 1 {
		t.Errorf("%d calls", n)
	}
}

func TestInvalidAnswersRetryOnceThenPermanent(t *testing.T) {
	bad := map[string]llmtest.Fault{
		"non-JSON":  {Malformed: true},
		"truncated": {Truncated: true},
		"schema":    {Status: 200, Body: completion(`{"label":"great","score":3}`, "stop")},
		"missing":   {Status: 200, Body: completion(`{"label":"positive"}`, "stop")},
		"extra":     {Status: 200, Body: completion(`{"label":"positive","score":1,"why":"x"}`, "stop")},
		"refusal":   {Status: 200, Body: `{"choices":[{"message":{"content":null,"refusal":"I can't help with that."},"finish_reason":"stop"}]}`},
		"no choice": {Status: 200, Body: `{"choices":[]}`},
	}
	reasons := map[string]string{
		"non-JSON":  "not a JSON object",
		"truncated": `finish_reason \"length\"`,
		"schema":    `$.label: \"great\" is not one of`,
		"missing":   `required property \"score\" is missing`,
		"extra":     `property \"why\" is not allowed`,
		"refusal":   "refused",
		"no choice": "no choices",
	}
	for name, f := range bad {
		t.Run(name+"/once", func(t *testing.T) {
			e, srv := newTest(t, Sentiment(), nil)
			srv.Inject(f)
			out, err := e.Enrich(bg(), event("great"))
			if err != nil {
				t.Fatalf("one bad answer should be retried: %v", err)
			}
			if r := stored(t, out).Result; string(r) != `{"label":"positive","score":1}` {
				t.Errorf("result %s", r)
			}
			if n := srv.Stats().Total; n != 2 {
				t.Errorf("%d calls, want 2", n)
			}
		})
		t.Run(name+"/twice", func(t *testing.T) {
			e, srv := newTest(t, Sentiment(), nil)
			srv.Inject(f, f)
			_, err := e.Enrich(bg(), event("great"))
			if class(err) != "permanent" || !errors.Is(err, ErrInvalidAnswer) {
				t.Fatalf("want a permanent ErrInvalidAnswer, got %v", err)
			}
			if !strings.Contains(fmt.Sprintf("%q", err.Error()), reasons[name]) {
				t.Errorf("reason %q does not quote %s", err, reasons[name])
			}
			if n := srv.Stats().Total; n != 2 {
				t.Errorf("%d calls, want 2", n)
			}
		})
	}
}

func TestResponseTooLarge(t *testing.T) {
	e, srv := newTest(t, Sentiment(), nil, WithMaxResponseBytes(2048))
	huge := completion(`{"label":"positive","score":1,"pad":"`+strings.Repeat("x", 4096)+`"}`, "stop")
	srv.Inject(llmtest.Fault{Status: 200, Body: huge}, llmtest.Fault{Status: 200, Body: huge})
	_, err := e.Enrich(bg(), event("great"))
	if class(err) != "permanent" || !errors.Is(err, ErrResponseTooLarge) {
		t.Fatalf("err = %v", err)
	}
}

func TestBatchOneCall(t *testing.T) {
	e, srv := newTest(t, Sentiment(), nil)
	texts := []string{"great", "awful", "meh", "love it", "hate it"}
	var in []*sluice.Message
	for _, s := range texts {
		in = append(in, event(s))
	}
	res := e.EnrichBatch(bg(), in)
	want := []string{"positive", "negative", "neutral", "positive", "negative"}
	for i, r := range res {
		if r.Err != nil {
			t.Fatalf("event %d: %v", i, r.Err)
		}
		var got struct{ Label string }
		_ = json.Unmarshal(stored(t, r.Msg).Result, &got)
		if got.Label != want[i] {
			t.Errorf("event %d (%q): %s, want %s", i, texts[i], got.Label, want[i])
		}
	}
	st := srv.Stats()
	if st.Total != 1 || st.BatchCompletions != 1 || st.BatchItems != 5 {
		t.Errorf("stats %+v: want one batch call for 5 events", st)
	}
}

func TestBatchPartialAnswers(t *testing.T) {
	e, srv := newTest(t, Spam(), []llmtest.Option{llmtest.WithOmitIDs("e2", "e4")})
	var in []*sluice.Message
	for i := range 5 {
		in = append(in, event(fmt.Sprintf("message %d: free prize, click now", i)))
	}
	res := e.EnrichBatch(bg(), in)
	for i, r := range res {
		if r.Err != nil {
			t.Fatalf("event %d: %v", i, r.Err)
		}
		if got := string(stored(t, r.Msg).Result); got != `{"confidence":0.9,"is_spam":true}` {
			t.Errorf("event %d: %s", i, got)
		}
		if !strings.Contains(string(r.Msg.Value), fmt.Sprintf("message %d:", i)) {
			t.Errorf("result %d belongs to another event: %s", i, r.Msg.Value)
		}
	}
	st := srv.Stats()
	if st.BatchCompletions != 1 || st.Completions != 3 {
		t.Errorf("stats %+v: want 1 batch call and the 2 missing events re-sent singly", st)
	}
}

func TestBatchInvalidItemsAndBadEvents(t *testing.T) {
	e, srv := newTest(t, Sentiment(), nil)
	// e1 breaks the schema; e3 is missing; e2 is fine.
	srv.Inject(llmtest.Fault{Status: 200, Body: completion(`{"e1":{"label":"good","score":1},"e2":{"label":"negative","score":-1}}`, "stop")})
	in := []*sluice.Message{event("great"), event("awful"), {Value: []byte(`{"other":1}`)}, event("nice")}
	res := e.EnrichBatch(bg(), in)
	if class(res[2].Err) != "permanent" || !strings.Contains(res[2].Err.Error(), `"text" is missing`) {
		t.Errorf("event without the field: %v", res[2].Err)
	}
	for i, want := range map[int]string{0: `{"label":"positive","score":1}`, 1: `{"label":"negative","score":-1}`, 3: `{"label":"positive","score":1}`} {
		if res[i].Err != nil {
			t.Fatalf("event %d: %v", i, res[i].Err)
		}
		if got := string(stored(t, res[i].Msg).Result); got != want {
			t.Errorf("event %d: %s, want %s", i, got, want)
		}
	}
	if st := srv.Stats(); st.Total != 3 {
		t.Errorf("%d calls, want 1 batch + 2 singles", st.Total)
	}
}

// An id answered twice is ambiguous: which answer is the event's? The event
// is asked for again on its own, instead of taking the last one.
func TestBatchIDAnsweredTwice(t *testing.T) {
	e, srv := newTest(t, Sentiment(), nil)
	srv.Inject(llmtest.Fault{Status: 200, Body: completion(`{"e1":{"label":"negative","score":-1},"e2":{"label":"negative","score":-1},"e1":{"label":"mixed","score":0}}`, "stop")})
	res := e.EnrichBatch(bg(), []*sluice.Message{event("great"), event("awful")})
	for i, want := range []string{`{"label":"positive","score":1}`, `{"label":"negative","score":-1}`} {
		if res[i].Err != nil {
			t.Fatalf("event %d: %v", i, res[i].Err)
		}
		if got := string(stored(t, res[i].Msg).Result); got != want {
			t.Errorf("event %d: %s, want %s", i, got, want)
		}
	}
	if st := srv.Stats(); st.Total != 2 {
		t.Errorf("%d calls, want 1 batch + 1 single for the id answered twice", st.Total)
	}
}

func TestBatchUnusableAnswerGoesSingly(t *testing.T) {
	for name, f := range map[string]llmtest.Fault{
		"malformed": {Malformed: true},
		"truncated": {Truncated: true},
		"400":       {Status: 400, Code: "context_length_exceeded"},
	} {
		t.Run(name, func(t *testing.T) {
			e, srv := newTest(t, Sentiment(), nil, WithMaxBatch(2))
			srv.Inject(f)
			in := []*sluice.Message{event("great"), event("awful"), event("ok")}
			res := e.EnrichBatch(bg(), in)
			for i, r := range res {
				if r.Err != nil {
					t.Fatalf("event %d: %v", i, r.Err)
				}
			}
			// Chunks of 2 and 1: the first chunk fails and goes singly (2), the last is single.
			if st := srv.Stats(); st.Total != 4 {
				t.Errorf("stats %+v", st)
			}
		})
	}
}

func TestSecretNeverLeaks(t *testing.T) {
	const key = "sk-test-SECRET-0123456789abcdef"
	t.Setenv("SLUICE_TEST_OPENAI_KEY", key)
	var logs logBuffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	newEnricher := func(srv *llmtest.Server) *Enricher {
		e, err := New("llmtest", Sentiment(), []string{"text"}, WithBaseURL(srv.BaseURL()),
			WithAPIKeyEnv("SLUICE_TEST_OPENAI_KEY"), WithLogger(log), WithHeader("X-Org", key))
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	srv := llmtest.NewServer(llmtest.WithAPIKey(key))
	defer srv.Close()
	e := newEnricher(srv)
	var errs []string
	// Servers that quote the key back, in errors of every class.
	faults := []llmtest.Fault{
		{Status: 401, Body: `{"error":{"message":"Incorrect API key provided: ` + key + `","type":"invalid_request_error","code":"invalid_api_key"}}`},
		{Status: 500, Body: `{"error":{"message":"upstream rejected key ` + key + `","type":"server_error"}}`},
		{Status: 400, Body: `<html>bad key ` + key + `</html>`},
		{Status: 429, Body: `{"error":"key ` + key + ` is overloaded","error_type":"overloaded"}`},
		{Status: 400, Body: `{"error":{"message":"response_format is not supported for key ` + key + `"}}`},
		{Status: 200, Body: completion("not json "+key, "stop")},
		{Status: 200, Body: completion("not json "+key, "stop")},
	}
	srv.Inject(faults...)
	for range 5 { // the fifth makes three calls: a fallback and two bad answers
		_, err := e.Enrich(bg(), event("great"))
		if err == nil {
			t.Fatal("want an error")
		}
		errs = append(errs, err.Error(), fmt.Sprintf("%+v", err), fmt.Sprintf("%#v", err))
	}
	if n := srv.Stats().Total; n != int64(len(faults)) {
		t.Fatalf("%d calls, want %d", n, len(faults))
	}
	// A server that does not take the key.
	other := llmtest.NewServer(llmtest.WithAPIKey("a-different-key"))
	defer other.Close()
	_, err := newEnricher(other).Enrich(bg(), event("great"))
	if class(err) != "fatal" || !strings.Contains(err.Error(), "$SLUICE_TEST_OPENAI_KEY") {
		t.Errorf("401: %v", err)
	}
	errs = append(errs, err.Error())
	log.Info("enricher", "enricher", e, "task", e.Task())
	dump := strings.Join(errs, "\n") + logs.String() + fmt.Sprintf("%v %+v %#v", e, e, e)
	if strings.Contains(dump, key) || strings.Contains(dump, "0123456789abcdef") {
		t.Fatalf("the key leaked:\n%s", dump)
	}
	if !strings.Contains(logs.String(), "falling back") {
		t.Errorf("expected debug and warn logs to have been captured:\n%s", logs.String())
	}
}

func TestCancellationMidRequest(t *testing.T) {
	h, err := llmtest.NewHandler(llmtest.WithHangRate(1))
	if err != nil {
		t.Fatal(err)
	}
	arrived := make(chan struct{})
	var once sync.Once
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		once.Do(func() { close(arrived) })
		h.ServeHTTP(w, r)
	}))
	defer srv.Close()
	defer h.Close()
	e, err := New("llmtest", Sentiment(), []string{"text"}, WithBaseURL(srv.URL+"/v1"), WithLogger(testutil.Quiet()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(bg())
	done := make(chan error, 1)
	go func() {
		_, err := e.Enrich(ctx, event("great"))
		done <- err
	}()
	<-arrived
	cancel()
	err = <-done
	if !errors.Is(err, context.Canceled) || class(err) != "transient" {
		t.Fatalf("err = %v, want a transient error matching context.Canceled", err)
	}
}

func TestMaxConcurrencyCap(t *testing.T) {
	e, srv := newTest(t, Sentiment(), []llmtest.Option{llmtest.WithLatency(llmtest.Fixed(10 * time.Millisecond))}, WithMaxConcurrency(3))
	var wg sync.WaitGroup
	for range 12 {
		wg.Go(func() {
			if _, err := e.Enrich(bg(), event("great")); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if st := srv.Stats(); st.MaxConcurrent > 3 || st.Completions != 12 {
		t.Errorf("stats %+v: want at most 3 at once", st)
	}
}

func TestAdaptiveConcurrencyCutsOnOverload(t *testing.T) {
	e, srv := newTest(t, Sentiment(), nil, WithMaxConcurrency(16), WithAdaptiveConcurrency())
	if got := e.ConcurrencyLimit(); got != 16 {
		t.Fatalf("limit %d, want 16", got)
	}
	srv.Inject(llmtest.Fault{Status: 503})
	if _, err := e.Enrich(bg(), event("great")); class(err) != "transient" {
		t.Fatalf("503: %v", err)
	}
	if got := e.ConcurrencyLimit(); got != 8 {
		t.Fatalf("limit after a 503: %d, want 8", got)
	}
	srv.Inject(llmtest.Fault{Status: 429, Code: "rate_limit_exceeded"})
	_, _ = e.Enrich(bg(), event("great"))
	if got := e.ConcurrencyLimit(); got != 4 {
		t.Fatalf("limit after a 429: %d, want 4", got)
	}
	for range 40 {
		if _, err := e.Enrich(bg(), event("great")); err != nil {
			t.Fatal(err)
		}
	}
	if got := e.ConcurrencyLimit(); got <= 4 {
		t.Errorf("limit after 40 successes: %d, want it to grow", got)
	}
}

func TestAdaptiveLimiterCutsOncePerEpoch(t *testing.T) {
	l := newLimiter(32, true)
	var toks []token
	for range 10 {
		tk, err := l.acquire(bg())
		if err != nil {
			t.Fatal(err)
		}
		toks = append(toks, tk)
	}
	for _, tk := range toks { // a burst of overloads from calls sent under one limit
		l.release(tk, outcomeOverload)
	}
	if got := l.current(); got != 16 {
		t.Errorf("limit %d after one burst, want 16", got)
	}
	for range 64 {
		tk, _ := l.acquire(bg())
		l.release(tk, outcomeOverload)
	}
	if got := l.current(); got != 1 {
		t.Errorf("limit %d, want the floor of 1", got)
	}
	// At the limit, acquire blocks until a release or ctx.
	tk, _ := l.acquire(bg())
	ctx, cancel := context.WithCancel(bg())
	cancel()
	if _, err := l.acquire(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("acquire at the limit: %v", err)
	}
	l.release(tk, outcomeSuccess)
	if newLimiter(0, false) != nil {
		t.Error("no max should mean no limiter")
	}
}

func TestNewValidation(t *testing.T) {
	_, err := New("", Task{Name: "bad name!", Schema: json.RawMessage(`{"type":"string"}`)}, []string{"a", "a", ".b"},
		WithTimeout(-1), WithBaseURL("ftp://x"), WithMaxTokens(0), WithTemperature(3), WithAdaptiveConcurrency(),
		WithAPIKeyEnv("SLUICE_SURELY_UNSET_VARIABLE"), WithLogger(nil))
	if !errors.Is(err, sluice.ErrInvalidConfig) {
		t.Fatalf("err = %v", err)
	}
	for _, want := range []string{"openai: model: the model name is empty; ", "openai: WithTimeout(-1ns): the timeout is not positive; ", "WithLogger(nil)", "WithBaseURL", "WithMaxTokens(0)", "WithTemperature(3)",
		"WithAdaptiveConcurrency", "SLUICE_SURELY_UNSET_VARIABLE", `"a" is listed twice`, `".b" is malformed`, "name must be", "needs Instructions", "top level must be of type object"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %q:\n%v", want, err)
		}
	}
	if _, err := CustomTask("t", "{{.Nope", json.RawMessage(`{"type":"object"}`)); !errors.Is(err, sluice.ErrInvalidConfig) {
		t.Errorf("bad template: %v", err)
	}
	if _, err := CustomTask("t", "x", json.RawMessage(`{"type":"object","oneOf":[]}`)); err == nil || !strings.Contains(err.Error(), `$.oneOf: minItems`) {
		t.Errorf("malformed schema: %v", err)
	}
}

// A custom task's template that fails for an event is that event's
// permanent failure.
func TestCustomTaskTemplateError(t *testing.T) {
	task, err := CustomTask("t", `{{index .Fields 3}}`, json.RawMessage(`{"type":"object","properties":{},"required":[],"additionalProperties":false}`))
	if err != nil {
		t.Fatal(err)
	}
	e, srv := newTest(t, task, nil)
	_, err = e.Enrich(bg(), event("x"))
	if class(err) != "permanent" || !strings.Contains(err.Error(), "prompt template") {
		t.Errorf("err = %v", err)
	}
	if srv.Stats().Total != 0 {
		t.Error("no call should be made")
	}
}

// The pipeline runs the Enricher end to end, and dead-letters only the
// events the model cannot answer.
func TestPipelineDeadLettersOnlyBadAnswers(t *testing.T) {
	e, srv := newTest(t, Sentiment(), []llmtest.Option{llmtest.WithMalformedRate(0.3), llmtest.WithErrorRate(0.1), llmtest.WithSeed(7)})
	_ = srv
	res := runPipeline(t, e, 200, 8, 1)
	if res.enriched+res.dead != 200 {
		t.Fatalf("enriched %d + dead %d != 200", res.enriched, res.dead)
	}
	for _, d := range res.letters {
		if !strings.Contains(d.Reason, "answered badly twice") && !strings.Contains(d.Reason, "gave up after") {
			t.Errorf("unexpected dead letter: %s", d.Reason)
		}
	}
}
