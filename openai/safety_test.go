package openai

import (
	"context"
	"errors"
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

// Refusals that every event of a wrong setup gets are marked as a
// misconfiguration with a class the breaker counts; refusals that blame
// the event stay plain permanent failures.
func TestSetupRefusalsAreMisconfigurations(t *testing.T) {
	openaiErr := func(msg, typ, code string) string {
		return `{"error":{"message":"` + msg + `","type":"` + typ + `","param":null,"code":"` + code + `"}}`
	}
	tests := []struct {
		name    string
		srv     []llmtest.Option
		fault   *llmtest.Fault
		opts    []Option
		path    string // replaces /v1 in the base URL
		want    string
		class   string
		inError []string
	}{
		{name: "typo in the URL", path: "/v2", want: "config", class: "HTTP 404 unknown_url",
			inError: []string{"unknown path /v2/chat/completions", "check the base URL"}},
		{name: "unknown model", srv: []llmtest.Option{llmtest.WithModels("gpt-x")}, want: "config", class: "HTTP 404 model_not_found",
			inError: []string{"The model `llmtest` does not exist", `check the model name "llmtest"`}},
		{name: "405 from a proxy", fault: &llmtest.Fault{Status: 405, Body: "<html><h1>405 Not Allowed</h1></html>"}, want: "config", class: "HTTP 405",
			inError: []string{"405 Not Allowed", "check the base URL"}},
		{name: "reasoning model refuses max_tokens", srv: []llmtest.Option{llmtest.WithRejectedField("max_tokens")}, opts: []Option{WithTokenField(TokenFieldMaxTokens)},
			want: "config", class: "HTTP 400 unsupported_parameter", inError: []string{"Use 'max_completion_tokens' instead"}},
		{name: "schema the server rejects", opts: []Option{WithOutputMode(OutputJSONSchema)}, srv: []llmtest.Option{llmtest.WithSchemaMode(llmtest.SchemaRejectJSONSchema)},
			want: "config", class: "HTTP 400 invalid_request_error", inError: []string{"json_schema"}},
		{name: "422 without detail", fault: &llmtest.Fault{Status: 422, Body: `{"detail":"unprocessable"}`}, want: "config", class: "HTTP 422"},
		{name: "context length", fault: &llmtest.Fault{Status: 400, Body: openaiErr("This model's maximum context length is 8192 tokens.", "invalid_request_error", "context_length_exceeded")},
			want: "permanent"},
		{name: "vLLM context length without a code", fault: &llmtest.Fault{Status: 400, Body: `{"object":"error","message":"This model's maximum context length is 4096 tokens. However, you requested 5000 tokens.","type":"BadRequestError","code":400}`},
			want: "permanent"},
		{name: "content filter", fault: &llmtest.Fault{Status: 400, Body: openaiErr("The response was filtered due to the prompt triggering content management policy.", "invalid_request_error", "content_filter")},
			want: "permanent"},
		{name: "TGI input validation", fault: &llmtest.Fault{Status: 422, Body: `{"error":"Input validation error: inputs tokens + max_new_tokens must be <= 4096","error_type":"validation"}`},
			want: "permanent"},
		{name: "413 oversized event", fault: &llmtest.Fault{Status: 413, Body: `request body too large`}, want: "permanent"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e, srv := newTest(t, Sentiment(), tc.srv, tc.opts...)
			if tc.path != "" {
				var err error
				e, err = New("llmtest", Sentiment(), []string{"text"}, append([]Option{WithBaseURL(srv.URL + tc.path), WithLogger(testutil.Quiet())}, tc.opts...)...)
				if err != nil {
					t.Fatal(err)
				}
			}
			if tc.fault != nil {
				srv.Inject(*tc.fault)
			}
			_, err := e.Enrich(bg(), event("great"))
			if got := class(err); got != tc.want {
				t.Fatalf("class = %s, want %s (err: %v)", got, tc.want, err)
			}
			var mis *sluice.MisconfiguredError
			if errors.As(err, &mis) && mis.Class != tc.class {
				t.Errorf("breaker class = %q, want %q", mis.Class, tc.class)
			}
			for _, s := range tc.inError {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not contain %q", err, s)
				}
			}
			var ae *APIError
			if !errors.As(err, &ae) {
				t.Errorf("error %v carries no *APIError", err)
			}
		})
	}
}

// The token cap goes in max_completion_tokens, which reasoning models
// need; a server that refuses that field gets max_tokens from then on,
// after one refused call; a pinned field never moves.
func TestTokenField(t *testing.T) {
	t.Run("reasoning model", func(t *testing.T) {
		e, srv := newTest(t, Sentiment(), []llmtest.Option{llmtest.WithRejectedField("max_tokens")})
		for range 3 {
			if _, err := e.Enrich(bg(), event("great")); err != nil {
				t.Fatal(err)
			}
		}
		if st := srv.Stats(); st.Total != 3 || st.ByStatus[400] != 0 {
			t.Errorf("stats %+v", st)
		}
		if e.TokenField() != TokenFieldMaxCompletionTokens {
			t.Errorf("token field %s", e.TokenField())
		}
	})
	t.Run("older server", func(t *testing.T) {
		var logs logBuffer
		e, srv := newTest(t, Sentiment(), []llmtest.Option{llmtest.WithRejectedField("max_completion_tokens")},
			WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
		for range 3 {
			if _, err := e.Enrich(bg(), event("great")); err != nil {
				t.Fatal(err)
			}
		}
		if st := srv.Stats(); st.Total != 4 || st.ByStatus[400] != 1 {
			t.Errorf("one refused call, then max_tokens: stats %+v", st)
		}
		if e.TokenField() != TokenFieldMaxTokens {
			t.Errorf("token field %s", e.TokenField())
		}
		if !strings.Contains(logs.String(), "sending max_tokens from now on") {
			t.Errorf("no warning: %s", logs.String())
		}
		if _, h := e.HealthReport(); h.(modelHealth).TokenField != "max_tokens" {
			t.Errorf("health %+v", h)
		}
	})
	t.Run("pinned", func(t *testing.T) {
		e, srv := newTest(t, Sentiment(), []llmtest.Option{llmtest.WithRejectedField("max_completion_tokens")},
			WithTokenField(TokenFieldMaxCompletionTokens))
		_, err := e.Enrich(bg(), event("great"))
		if class(err) != "config" || !strings.Contains(err.Error(), "Unrecognized request argument supplied: max_completion_tokens") {
			t.Errorf("err %v", err)
		}
		if st := srv.Stats(); st.Total != 1 {
			t.Errorf("stats %+v", st)
		}
	})
	t.Run("bad option", func(t *testing.T) {
		_, err := New("m", Sentiment(), []string{"text"}, WithTokenField(7), WithCallObserver(nil))
		if !errors.Is(err, sluice.ErrInvalidConfig) || !strings.Contains(err.Error(), "WithTokenField(7)") || !strings.Contains(err.Error(), "WithCallObserver(nil)") {
			t.Errorf("err %v", err)
		}
	})
}

// Check tells a setup that works from each way it can be wrong, with an
// error an operator can act on, before any event is read.
func TestCheck(t *testing.T) {
	type want struct {
		class   string // ok, fatal, config, unavailable
		inError []string
	}
	tests := []struct {
		name  string
		srv   []llmtest.Option
		model string
		opts  []Option
		path  string
		fault *llmtest.Fault
		want  want
	}{
		{name: "all good", want: want{class: "ok"}},
		{name: "typo in the URL", path: "/v2", want: want{class: "config", inError: []string{"HTTP 404 unknown_url", "check the base URL"}}},
		{name: "unknown model, listed", srv: []llmtest.Option{llmtest.WithModels("gpt-a", "gpt-b")}, model: "gpt-c",
			want: want{class: "config", inError: []string{`checking model "gpt-c"`, "the server does not list the model (it lists gpt-a, gpt-b)", "model_not_found"}}},
		{name: "unknown model, no list", srv: []llmtest.Option{llmtest.WithModels("gpt-a"), llmtest.WithoutModelList()}, model: "gpt-c",
			want: want{class: "config", inError: []string{"model_not_found", `check the model name "gpt-c"`}}},
		{name: "unlisted model the server serves", model: "any-name", want: want{class: "ok"}},
		{name: "no list", srv: []llmtest.Option{llmtest.WithoutModelList()}, want: want{class: "ok"}},
		{name: "refused key", srv: []llmtest.Option{llmtest.WithAPIKey("right")}, opts: []Option{WithAPIKey("wrong-key")},
			want: want{class: "fatal", inError: []string{"refused the API key (HTTP 401)"}}},
		{name: "reasoning model and max_tokens", srv: []llmtest.Option{llmtest.WithRejectedField("max_tokens")}, opts: []Option{WithTokenField(TokenFieldMaxTokens)},
			want: want{class: "config", inError: []string{"unsupported_parameter"}}},
		{name: "older server", srv: []llmtest.Option{llmtest.WithRejectedField("max_completion_tokens")}, want: want{class: "ok"}},
		{name: "schema refused", srv: []llmtest.Option{llmtest.WithSchemaMode(llmtest.SchemaRejectJSONSchema)}, opts: []Option{WithOutputMode(OutputJSONSchema)},
			want: want{class: "config", inError: []string{"json_schema"}}},
		{name: "schema refused, auto falls back", srv: []llmtest.Option{llmtest.WithSchemaMode(llmtest.SchemaRejectJSONSchema)}, want: want{class: "ok"}},
		{name: "server error", fault: &llmtest.Fault{Status: 500}, want: want{class: "unavailable", inError: []string{"did not answer properly", "HTTP 500"}}},
		{name: "the probe's cap refused as reached", fault: &llmtest.Fault{Status: 400, Body: `{"error":{"message":"Could not finish the message because max_tokens or model output limit was reached. Please try again with higher max_tokens.","type":"invalid_request_error","param":null,"code":null}}`},
			want: want{class: "ok"}},
		{name: "rate limited", fault: &llmtest.Fault{Status: 429, Code: "rate_limit_exceeded"}, want: want{class: "ok"}},
		{name: "no quota", srv: []llmtest.Option{llmtest.WithInsufficientQuota()}, want: want{class: "fatal", inError: []string{"no quota left"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := llmtest.NewServer(tc.srv...)
			defer srv.Close()
			model := tc.model
			if model == "" {
				model = "llmtest"
			}
			base := srv.BaseURL()
			if tc.path != "" {
				base = srv.URL + tc.path
			}
			e, err := New(model, Sentiment(), []string{"text"}, append([]Option{WithBaseURL(base), WithLogger(testutil.Quiet())}, tc.opts...)...)
			if err != nil {
				t.Fatal(err)
			}
			if tc.fault != nil {
				srv.Inject(*tc.fault)
			}
			if err := e.Ready(bg()); err != nil {
				t.Errorf("ready before any check: %v", err)
			}
			err = e.Check(bg())
			got := "ok"
			switch {
			case err == nil:
			case errors.Is(err, sluice.ErrFatal):
				got = "fatal"
			case errors.Is(err, sluice.ErrMisconfigured):
				got = "config"
			default:
				got = "unavailable"
			}
			if got != tc.want.class {
				t.Fatalf("class %s, want %s (err: %v)", got, tc.want.class, err)
			}
			for _, s := range tc.want.inError {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not contain %q", err, s)
				}
			}
			if rerr := e.Ready(bg()); !errors.Is(rerr, err) && rerr != err {
				t.Errorf("Ready = %v, want the check's %v", rerr, err)
			}
			if n := srv.Stats().Events; n != 0 && got != "ok" {
				t.Errorf("the check answered %d events", n)
			}
		})
	}

	t.Run("nothing listens", func(t *testing.T) {
		srv := llmtest.NewServer()
		base := srv.BaseURL()
		srv.Close()
		e, err := New("llmtest", Sentiment(), []string{"text"}, WithBaseURL(base), WithLogger(testutil.Quiet()), WithTimeout(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		err = e.Check(bg())
		if err == nil || errors.Is(err, sluice.ErrFatal) || errors.Is(err, sluice.ErrMisconfigured) || !strings.Contains(err.Error(), "the URL does not answer") {
			t.Errorf("err %v", err)
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		e, _ := newTest(t, Sentiment(), nil)
		ctx, cancel := context.WithCancel(bg())
		cancel()
		if err := e.Check(ctx); err == nil || errors.Is(err, sluice.ErrMisconfigured) {
			t.Errorf("err %v", err)
		}
	})
}

// callLog is a CallObserver that keeps every call.
type callLog struct {
	mu    sync.Mutex
	calls []observed
}

type observed struct {
	status             int
	latency            time.Duration
	prompt, completion int64
}

func (l *callLog) ModelCall(status int, latency time.Duration, prompt, completion int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls = append(l.calls, observed{status, latency, prompt, completion})
}

// Every completion request reaches the observers: status, latency and the
// tokens of the usage field; no response is status 0.
func TestCallObserver(t *testing.T) {
	var a, b callLog
	e, srv := newTest(t, Sentiment(), []llmtest.Option{llmtest.WithLatency(llmtest.Fixed(5 * time.Millisecond))},
		WithCallObserver(&a), WithCallObserver(&b), WithTimeout(time.Second))
	if _, err := e.Enrich(bg(), event("great")); err != nil {
		t.Fatal(err)
	}
	srv.Inject(llmtest.Fault{Status: 500}, llmtest.Fault{Hang: true})
	_, _ = e.Enrich(bg(), event("great"))
	_, _ = e.Enrich(bg(), event("great"))
	if len(a.calls) != 3 || len(b.calls) != 3 {
		t.Fatalf("calls %+v %+v", a.calls, b.calls)
	}
	st := srv.Stats()
	ok := a.calls[0]
	if ok.status != http.StatusOK || ok.latency < 5*time.Millisecond || ok.prompt != st.PromptTokens || ok.completion != st.CompletionTokens || ok.prompt == 0 {
		t.Errorf("200: %+v, server %d/%d", ok, st.PromptTokens, st.CompletionTokens)
	}
	if c := a.calls[1]; c.status != 500 || c.prompt != 0 {
		t.Errorf("500: %+v", c)
	}
	if c := a.calls[2]; c.status != 0 || c.latency < time.Second {
		t.Errorf("timeout: %+v", c)
	}
}

// A server whose model list is not JSON (a proxy's HTML page) and whose
// completions path is wrong: the list is ignored and the completion names
// the cause; the key never shows in the error.
func TestCheckWithAStrangeServer(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/models", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("<html><body>Welcome to nginx!</body></html>"))
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte("<html><head><title>404 Not Found</title></head><body>key sk-secret-123 not found</body></html>"))
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	e, err := New("m", Sentiment(), []string{"text"}, WithBaseURL(srv.URL+"/v1"), WithAPIKey("sk-secret-123"), WithLogger(testutil.Quiet()))
	if err != nil {
		t.Fatal(err)
	}
	err = e.Check(bg())
	if !errors.Is(err, sluice.ErrMisconfigured) || !strings.Contains(err.Error(), "404 Not Found") || !strings.Contains(err.Error(), "check the base URL") {
		t.Errorf("err %v", err)
	}
	if strings.Contains(err.Error(), "does not list") || strings.Contains(err.Error(), "sk-secret-123") {
		t.Errorf("err %v", err)
	}
}
