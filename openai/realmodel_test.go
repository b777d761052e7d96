package openai

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/internal/testutil"
	"github.com/sluicehq/sluice/sluicetest"
)

// The real-model tests run against an OpenAI-compatible server named by
// SLUICE_MODEL_URL (scripts/model.sh start prints it): llama.cpp with a
// small instruct model in CI. They skip without it, and fail under CI=true.
const (
	envModelURL    = "SLUICE_MODEL_URL"
	envModelName   = "SLUICE_MODEL"
	envModelEvents = "SLUICE_REAL_MODEL_EVENTS" // events per task (2)
	envModelModes  = "SLUICE_REAL_MODEL_MODES"  // output modes to try (json_schema)
)

// realModel returns the base URL and model name of the real server, or
// skips the test.
func realModel(tb testing.TB) (url, model string) {
	tb.Helper()
	url = os.Getenv(envModelURL)
	if url == "" {
		const help = "integration test against a real model server: set SLUICE_MODEL_URL and SLUICE_MODEL (eval \"$(scripts/model.sh start)\")"
		if os.Getenv("CI") == "true" {
			tb.Fatal(help)
		}
		tb.Skip(help)
	}
	model = os.Getenv(envModelName)
	if model == "" {
		tb.Fatalf("%s is set but %s is not: name the model to call", envModelURL, envModelName)
	}
	return url, model
}

func envInt(tb testing.TB, name string, def int) int {
	tb.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		tb.Fatalf("%s=%q: want a positive integer", name, v)
	}
	return n
}

// realTexts are the reviews and messages the real-model tests send, a mix
// of languages, sentiments, names and spam.
var realTexts = []string{
	"Terrible, broken on arrival.",
	"Great phone, the battery lasts two days.",
	"WIN A FREE IPHONE!!! Click http://prizes.example/claim now, offer ends today.",
	"Alice Martin from Acme Corp met us in Paris on Monday.",
	"The package arrived on Tuesday, as announced.",
	"I love the screen but the speaker crackles at high volume.",
	"Das Essen war kalt und der Kellner unfreundlich.",
	"Cheap meds online, no prescription needed, visit pills.example",
	"Support answered within an hour and fixed my account.",
	"The hotel near the Eiffel Tower was clean, staff were friendly.",
}

// realTasks are the tasks the real-model test runs: the four built-ins and
// a custom task with a schema of its own.
func realTasks(tb testing.TB) []Task {
	custom, err := CustomTask("review_summary",
		`Summarise this review in at most ten words and rate it from 1 to 5 stars: {{.Field "text"}}`,
		json.RawMessage(`{"type":"object","properties":{`+
			`"summary":{"type":"string","minLength":1,"maxLength":120},`+
			`"stars":{"type":"integer","minimum":1,"maximum":5}},`+
			`"required":["summary","stars"],"additionalProperties":false}`))
	if err != nil {
		tb.Fatal(err)
	}
	return []Task{Sentiment(), Entities(), Translate("French"), Spam(), custom}
}

// modelFault names what a dead letter's reason says the model got wrong,
// or "" when it names nothing of the sort.
var modelFaults = []struct {
	name string
	re   *regexp.Regexp
}{
	{"cut off at the token limit", regexp.MustCompile(`cut off at the token limit`)},
	{"not a JSON object", regexp.MustCompile(`is not a JSON object|the answer is empty|has no choices`)},
	{"breaks the schema", regexp.MustCompile(`does not match the \S+ schema: (.*)$`)},
	{"refused", regexp.MustCompile(`the model refused|content filter`)},
}

func modelFault(reason string) (kind, detail string) {
	for _, f := range modelFaults {
		if m := f.re.FindStringSubmatch(reason); m != nil {
			if len(m) > 1 {
				detail = m[1]
			}
			return f.name, detail
		}
	}
	return "", ""
}

// TestRealModel runs each task over a few events through a pipeline against
// the real model server. A small model is often wrong; the test does not
// ask it to be right, only that every event ends with a clear outcome:
// enriched with an ai_enrichment that matches the task's schema, or
// dead-lettered with a reason that says what the model got wrong (cut off,
// not JSON, which part of the schema it broke). The shares are logged.
func TestRealModel(t *testing.T) {
	url, model := realModel(t)
	n := envInt(t, envModelEvents, 2)
	modes := []OutputMode{OutputJSONSchema}
	if v := os.Getenv(envModelModes); v != "" {
		modes = nil
		for _, name := range strings.Split(v, ",") {
			m, ok := map[string]OutputMode{"auto": OutputAuto, "json_schema": OutputJSONSchema, "json_object": OutputJSONObject, "prompt_only": OutputPromptOnly}[strings.TrimSpace(name)]
			if !ok {
				t.Fatalf("%s: unknown mode %q", envModelModes, name)
			}
			modes = append(modes, m)
		}
	}
	var summary []string
	for _, mode := range modes {
		for k, task := range realTasks(t) {
			t.Run(mode.String()+"/"+task.Name, func(t *testing.T) {
				// Each task starts at another text, so that a few events per
				// task still cover them all.
				r := runRealTask(t, url, model, task, mode, n, 2*k)
				summary = append(summary, fmt.Sprintf("%-12s %-15s %s", mode, task.Name, r))
			})
		}
	}
	t.Logf("real model %s at %s, %d events per task:\n%s", model, url, n, strings.Join(summary, "\n"))
}

// realResult is what one task's run came to.
type realResult struct {
	events, enriched, dead int
	faults                 map[string]int
	elapsed                time.Duration
}

func (r realResult) String() string {
	var fs []string
	for k, v := range r.faults {
		fs = append(fs, fmt.Sprintf("%s %d", k, v))
	}
	slices.Sort(fs)
	s := fmt.Sprintf("enriched %d/%d (%.0f %%), dead-lettered %d (%.0f %%), %.1fs per event",
		r.enriched, r.events, 100*float64(r.enriched)/float64(r.events), r.dead, 100*float64(r.dead)/float64(r.events),
		r.elapsed.Seconds()/float64(r.events))
	if len(fs) > 0 {
		s += ": " + strings.Join(fs, ", ")
	}
	return s
}

func runRealTask(t *testing.T, url, model string, task Task, mode OutputMode, n, first int) realResult {
	e, err := New(model, task, []string{"text"},
		WithBaseURL(url),
		WithOutputMode(mode),
		WithTemperature(0),
		WithMaxTokens(128),
		WithTimeout(3*time.Minute),
		WithLogger(testutil.Quiet()))
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	src := sluicetest.NewSource("reviews", 2)
	for i := range n {
		v, _ := json.Marshal(map[string]any{"id": i, "text": realTexts[(first+i)%len(realTexts)]})
		src.Publish(nil, v)
	}
	sink := sluicetest.NewSink()
	p, err := sluice.New(src, e, sink,
		sluice.WithConcurrency(2),
		sluice.WithBackoff(10*time.Millisecond, 100*time.Millisecond),
		sluice.WithLogger(testutil.Quiet()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- p.Run(ctx) }()
	wctx, wcancel := context.WithTimeout(context.Background(), 10*time.Minute)
	waitErr := sink.WaitFor(wctx, n)
	wcancel()
	elapsed := time.Since(start)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if waitErr != nil {
		t.Fatalf("%d of %d events finished: %v", len(sink.Messages())+len(sink.DeadLetters()), n, waitErr)
	}

	r := realResult{events: n, faults: map[string]int{}, elapsed: elapsed}
	for _, m := range sink.Messages() {
		r.enriched++
		var doc struct {
			Enrichment *Enrichment `json:"ai_enrichment"`
		}
		if err := json.Unmarshal(m.Value, &doc); err != nil || doc.Enrichment == nil {
			t.Errorf("enriched event without ai_enrichment: %s", m.Value)
			continue
		}
		if doc.Enrichment.Task != task.Name || doc.Enrichment.Model == "" {
			t.Errorf("ai_enrichment names task %q, model %q; want %q and the model", doc.Enrichment.Task, doc.Enrichment.Model, task.Name)
		}
		if err := e.schema.Validate(doc.Enrichment.Result); err != nil {
			t.Errorf("stored result breaks the %s schema: %v: %s", task.Name, err, doc.Enrichment.Result)
		}
		t.Logf("enriched: %s", doc.Enrichment.Result)
	}
	for _, d := range sink.DeadLetters() {
		r.dead++
		kind, detail := modelFault(d.Reason)
		if kind == "" || !errors.Is(d.Err, sluice.ErrPermanent) || !errors.Is(d.Err, ErrInvalidAnswer) {
			t.Errorf("dead letter whose reason names nothing the model got wrong (%v): %s", d.Err, d.Reason)
			continue
		}
		if d.Attempts != 1 {
			t.Errorf("a bad answer was retried by the pipeline (%d attempts); it is asked again once inside the enricher, then permanent", d.Attempts)
		}
		if detail != "" {
			kind += " (" + detail + ")"
		}
		r.faults[kind]++
		t.Logf("dead-lettered: %s", d.Reason)
	}
	if r.enriched+r.dead != n {
		t.Errorf("%d enriched + %d dead-lettered, want %d events", r.enriched, r.dead, n)
	}
	t.Logf("%s %s: %s", mode, task.Name, r)
	return r
}

// TestRealModelServer checks what the real server does that the fake
// mirrors (llmtest.WithQueue): it lists the model, and it queues calls beyond
// its slots instead of answering 429, so that twice as many calls as the
// server has slots all succeed.
func TestRealModelServer(t *testing.T) {
	url, model := realModel(t)
	resp, err := http.Get(url + "/models")
	if err != nil {
		t.Fatal(err)
	}
	var list struct {
		Data []struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	err = json.NewDecoder(resp.Body).Decode(&list)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /models: %d, %v", resp.StatusCode, err)
	}
	var ids []string
	for _, m := range list.Data {
		ids = append(ids, m.ID)
	}
	if !slices.Contains(ids, model) {
		t.Errorf("GET /models lists %q, not %q", ids, model)
	}

	const calls = 8
	body := fmt.Appendf(nil, `{"model":%q,"max_tokens":4,"messages":[{"role":"user","content":"Say yes."}]}`, model)
	statuses := make(chan int, calls)
	for range calls {
		go func() {
			resp, err := http.Post(url+"/chat/completions", "application/json", bytes.NewReader(body))
			if err != nil {
				t.Error(err)
				statuses <- 0
				return
			}
			resp.Body.Close()
			statuses <- resp.StatusCode
		}()
	}
	for range calls {
		if s := <-statuses; s != http.StatusOK {
			t.Errorf("a call beyond the server's slots got status %d; a queueing server answers 200 later", s)
		}
	}
}
