package llmtest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/llmtest"
)

type reply struct {
	status int
	header http.Header
	body   string
}

func post(t *testing.T, url string, body any, hdr ...string) reply {
	t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest(http.MethodPost, url+"/v1/chat/completions", bytes.NewReader(b))
	for i := 0; i < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return reply{resp.StatusCode, resp.Header, string(data)}
}

func chat(system, user string, format any) map[string]any {
	m := map[string]any{
		"model": "m",
		"messages": []any{
			map[string]any{"role": "system", "content": system},
			map[string]any{"role": "user", "content": user},
		},
	}
	if format != nil {
		m["response_format"] = format
	}
	return m
}

func content(t *testing.T, r reply) (string, string) {
	t.Helper()
	var c struct {
		Choices []struct {
			Message      struct{ Content string }
			FinishReason string `json:"finish_reason"`
		}
	}
	if err := json.Unmarshal([]byte(r.body), &c); err != nil || len(c.Choices) != 1 {
		t.Fatalf("not a completion (%d): %s", r.status, r.body)
	}
	return c.Choices[0].Message.Content, c.Choices[0].FinishReason
}

func TestTaskDetectionAndAnswers(t *testing.T) {
	srv := llmtest.NewServer()
	defer srv.Close()
	schema := func(name string) any {
		return map[string]any{"type": "json_schema", "json_schema": map[string]any{"name": name, "schema": map[string]any{"type": "object"}, "strict": false}}
	}
	for _, tc := range []struct {
		system, user string
		format       any
		want         string
	}{
		{"Task: sentiment", `{"text":"I love this"}`, map[string]any{"type": "json_object"}, `{"label":"positive","score":1}`},
		{"x", `{"text":"awful and broken"}`, schema("sentiment"), `{"label":"negative","score":-1}`},
		{"Task: spam", `{"text":"free casino prize"}`, map[string]any{"type": "json_object"}, `{"confidence":0.9,"is_spam":true}`},
		{"Task: translate\nTarget language: Spanish", `{"a":"hi"}`, map[string]any{"type": "json_object"},
			`{"source_language":"English","target_language":"Spanish","translation":"[Spanish] hi","translations":{"a":"[Spanish] hi"}}`},
		{"Task: entities", `{"text":"We met in Berlin."}`, map[string]any{"type": "json_object"}, `{"entities":[{"text":"Berlin","type":"location"}]}`},
		{"Task: sentiment\nMode: batch", `{"e1":{"t":"great"},"e2":{"t":"bad"}}`, map[string]any{"type": "json_object"},
			`{"e1":{"label":"positive","score":1},"e2":{"label":"negative","score":-1}}`},
		{"Task: custom\nJSON schema: {\"type\":\"object\",\"properties\":{\"n\":{\"type\":\"integer\",\"minimum\":2},\"k\":{\"type\":\"string\",\"enum\":[\"x\",\"y\"]}}}",
			`"whatever"`, map[string]any{"type": "json_object"}, `{"k":"x","n":2}`},
	} {
		got, finish := content(t, post(t, srv.URL, chat(tc.system, tc.user, tc.format)))
		if got != tc.want || finish != "stop" {
			t.Errorf("%q %s: got %s (%s), want %s", tc.system, tc.user, got, finish, tc.want)
		}
	}
	// Without response_format the JSON comes fenced in prose.
	got, _ := content(t, post(t, srv.URL, chat("Task: sentiment", `{"t":"nice"}`, nil)))
	if !strings.Contains(got, "```json\n{\"label\":\"positive\",\"score\":1}\n```") {
		t.Errorf("prompt-only answer: %q", got)
	}
	st := srv.Stats()
	if st.Completions != 8 || st.BatchCompletions != 1 || st.BatchItems != 2 || st.ByFormat["none"] != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestRateLimitHeaders(t *testing.T) {
	srv := llmtest.NewServer(llmtest.WithRPS(10, 2))
	defer srv.Close()
	var last reply
	for range 3 {
		last = post(t, srv.URL, chat("Task: spam", `{"t":"x"}`, nil))
	}
	if last.status != 429 || !strings.Contains(last.body, "rate_limit_exceeded") {
		t.Fatalf("third call: %d %s", last.status, last.body)
	}
	ms := last.header.Get("Retry-After-Ms")
	if ms == "" || last.header.Get("Retry-After") != "1" || last.header.Get("X-Ratelimit-Remaining-Requests") != "0" {
		t.Errorf("headers %v", last.header)
	}
	if d, err := time.ParseDuration(last.header.Get("X-Ratelimit-Reset-Requests")); err != nil || d <= 0 || d > 100*time.Millisecond {
		t.Errorf("reset %q", last.header.Get("X-Ratelimit-Reset-Requests"))
	}
}

func TestConcurrencyLimit(t *testing.T) {
	hs := llmtest.NewServer(llmtest.WithMaxConcurrency(1))
	defer hs.Close()
	hs.Inject(llmtest.Fault{Hang: true})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		b, _ := json.Marshal(chat("Task: spam", `{"t":"x"}`, nil))
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, hs.URL+"/v1/chat/completions", bytes.NewReader(b))
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
	})
	// Wait until the hanging call holds the only slot.
	if err := hs.WaitHangs(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	r := post(t, hs.URL, chat("Task: spam", `{"t":"x"}`, nil))
	if r.status != 429 || r.header.Get("Retry-After-Ms") == "" {
		t.Errorf("second concurrent call: %d %v", r.status, r.header)
	}
	cancel()
	wg.Wait()
	if st := hs.Stats(); st.MaxConcurrent != 2 || st.ByStatus[429] != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestAuthModelsAndStyles(t *testing.T) {
	srv := llmtest.NewServer(llmtest.WithAPIKey("k"), llmtest.WithModels("a", "b"))
	defer srv.Close()
	if r := post(t, srv.URL, chat("Task: spam", "x", nil)); r.status != 401 || !strings.Contains(r.body, "invalid_api_key") {
		t.Errorf("no key: %d %s", r.status, r.body)
	}
	if r := post(t, srv.URL, chat("Task: spam", "x", nil), "Authorization", "Bearer k"); r.status != 404 || !strings.Contains(r.body, "model_not_found") {
		t.Errorf("unknown model: %d %s", r.status, r.body)
	}
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/v1/models", nil)
	req.Header.Set("Authorization", "Bearer k")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"id":"a"`) || !strings.Contains(string(body), `"id":"b"`) {
		t.Errorf("models: %d %s", resp.StatusCode, body)
	}

	tgi := llmtest.NewServer(llmtest.WithErrorStyle(llmtest.StyleTGI), llmtest.WithInsufficientQuota())
	defer tgi.Close()
	if r := post(t, tgi.URL, chat("x", "x", nil)); r.status != 429 || r.body != "{\"error\":\"Model is overloaded\",\"error_type\":\"overloaded\"}\n" {
		t.Errorf("TGI: %d %q", r.status, r.body)
	}
	html := llmtest.NewServer(llmtest.WithErrorStyle(llmtest.StyleHTML), llmtest.WithErrorRate(1), llmtest.WithErrorStatus(502))
	defer html.Close()
	if r := post(t, html.URL, chat("x", "x", nil)); r.status != 502 || !strings.Contains(r.body, "<h1>502 Bad Gateway</h1>") {
		t.Errorf("HTML: %d %q", r.status, r.body)
	}
	rej := llmtest.NewServer(llmtest.WithSchemaMode(llmtest.SchemaRejectJSONSchema))
	defer rej.Close()
	js := map[string]any{"type": "json_schema", "json_schema": map[string]any{"name": "spam", "schema": map[string]any{}}}
	if r := post(t, rej.URL, chat("x", "x", js)); r.status != 400 || !strings.Contains(r.body, "json_schema") {
		t.Errorf("reject: %d %s", r.status, r.body)
	}
}

func TestSeededRatesRepeat(t *testing.T) {
	run := func() []int {
		srv := llmtest.NewServer(llmtest.WithErrorRate(0.3), llmtest.WithMalformedRate(0.3), llmtest.WithSeed(42))
		defer srv.Close()
		var out []int
		for range 20 {
			r := post(t, srv.URL, chat("Task: spam", `{"t":"x"}`, map[string]any{"type": "json_object"}))
			code := r.status
			if code == 200 && !strings.HasPrefix(r.body, `{"choices"`) && !strings.Contains(r.body, `"is_spam"`) {
				code = 299 // malformed
			}
			out = append(out, code)
		}
		return out
	}
	a, b := run(), run()
	if !equal(a, b) {
		t.Errorf("runs differ:\n%v\n%v", a, b)
	}
}

func TestCloseReleasesHangs(t *testing.T) {
	srv := llmtest.NewServer(llmtest.WithHangRate(1))
	done := make(chan struct{})
	go func() {
		defer close(done)
		b, _ := json.Marshal(chat("x", "x", nil))
		resp, err := http.Post(srv.URL+"/v1/chat/completions", "application/json", bytes.NewReader(b))
		if err == nil {
			resp.Body.Close()
		}
	}()
	if err := srv.WaitHangs(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	srv.Close() // must not block on the hanging request
	<-done
}

func TestInvalidOptions(t *testing.T) {
	_, err := llmtest.NewHandler(llmtest.WithErrorRate(2), llmtest.WithLatency(llmtest.Uniform(2, 1)),
		llmtest.WithRPS(-1, 0), llmtest.WithErrorStatus(404), llmtest.WithModels())
	if !errors.Is(err, sluice.ErrInvalidConfig) {
		t.Fatalf("err = %v", err)
	}
	for _, want := range []string{"WithErrorRate(2)", "WithLatency(Uniform(2ns, 1ns))", "WithRPS(-1, 0)", "llmtest: WithErrorStatus(404): the status is not 5xx; pass a status from 500 to 599", "WithModels"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not name %s: %v", want, err)
		}
	}
}

func equal(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestStatsEndpoint(t *testing.T) {
	srv := llmtest.NewServer()
	defer srv.Close()
	body := `{"model":"m","messages":[{"role":"system","content":"Task: sentiment"},{"role":"user","content":"{\"text\":\"great\"}"}]}`
	resp, err := http.Post(srv.BaseURL()+"/chat/completions", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	for _, path := range []string{"/stats", "/v1/stats"} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		var st map[string]any
		err = json.NewDecoder(resp.Body).Decode(&st)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("%s: %d %v", path, resp.StatusCode, err)
		}
		if st["completions"] != 1.0 || st["events"] != 1.0 {
			t.Errorf("%s: %v, want 1 completion and 1 event", path, st)
		}
	}
}

// Real servers refuse fields they do not take: a reasoning model refuses
// max_tokens, an older server max_completion_tokens; a wrong path is 404
// unknown_url; a server may offer no model list.
func TestRejectedFieldsUnknownURLAndNoModelList(t *testing.T) {
	srv := llmtest.NewServer(llmtest.WithRejectedField("max_tokens"), llmtest.WithoutModelList())
	defer srv.Close()
	with := func(field string) map[string]any {
		m := chat("Task: spam", "x", nil)
		m[field] = 16
		return m
	}
	if r := post(t, srv.URL, with("max_tokens")); r.status != 400 || !strings.Contains(r.body, "unsupported_parameter") || !strings.Contains(r.body, "Use 'max_completion_tokens' instead") {
		t.Errorf("max_tokens: %d %s", r.status, r.body)
	}
	if r := post(t, srv.URL, with("max_completion_tokens")); r.status != 200 {
		t.Errorf("max_completion_tokens: %d %s", r.status, r.body)
	}
	old := llmtest.NewServer(llmtest.WithRejectedField("max_completion_tokens"))
	defer old.Close()
	if r := post(t, old.URL, with("max_completion_tokens")); r.status != 400 || !strings.Contains(r.body, "Unrecognized request argument supplied: max_completion_tokens") {
		t.Errorf("old server: %d %s", r.status, r.body)
	}
	for _, path := range []string{"/v1/models", "/v2/chat/completions"} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 404 || !strings.Contains(string(body), "unknown_url") {
			t.Errorf("%s: %d %s", path, resp.StatusCode, body)
		}
	}
	if _, err := llmtest.NewHandler(llmtest.WithRejectedField("")); !errors.Is(err, sluice.ErrInvalidConfig) {
		t.Errorf("empty field: %v", err)
	}
}
