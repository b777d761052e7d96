package openai

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/llmtest"
)

// TestClassification drives every row of the error table through the fake
// server and checks what the pipeline would do, the wait of rate limits,
// and that the Enricher made exactly one call (no hidden retries).
func TestClassification(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	hdr := func(kv ...string) http.Header {
		h := http.Header{}
		for i := 0; i < len(kv); i += 2 {
			h.Set(kv[i], kv[i+1])
		}
		return h
	}
	tests := []struct {
		name    string
		srv     []llmtest.Option
		fault   *llmtest.Fault
		opts    []Option
		want    string
		wait    time.Duration
		inError string
		target  error
		warm    bool // make one successful call first
	}{
		{name: "429 retry-after-ms", fault: &llmtest.Fault{Status: 429, Code: "rate_limit_exceeded", Header: hdr("retry-after-ms", "1500", "retry-after", "2", "x-ratelimit-reset-requests", "6m0s", "x-ratelimit-remaining-requests", "0")},
			want: "ratelimit", wait: 1500 * time.Millisecond},
		{name: "429 retry-after seconds", fault: &llmtest.Fault{Status: 429, Code: "rate_limit_exceeded", Header: hdr("retry-after", "2", "x-ratelimit-reset-requests", "6m0s")},
			want: "ratelimit", wait: 2 * time.Second},
		{name: "429 retry-after HTTP date", fault: &llmtest.Fault{Status: 429, Code: "rate_limit_exceeded", Header: hdr("retry-after", now.Add(7*time.Second).Format(http.TimeFormat))},
			want: "ratelimit", wait: 7 * time.Second},
		{name: "429 x-ratelimit-reset-requests", fault: &llmtest.Fault{Status: 429, Code: "rate_limit_exceeded", Header: hdr("x-ratelimit-reset-requests", "6m0s", "x-ratelimit-remaining-requests", "0", "x-ratelimit-reset-tokens", "1s")},
			want: "ratelimit", wait: 6 * time.Minute},
		{name: "429 x-ratelimit-reset-tokens", fault: &llmtest.Fault{Status: 429, Code: "rate_limit_exceeded", Header: hdr("x-ratelimit-reset-tokens", "20ms", "x-ratelimit-remaining-tokens", "0", "x-ratelimit-reset-requests", "1s", "x-ratelimit-remaining-requests", "12")},
			want: "ratelimit", wait: 20 * time.Millisecond},
		{name: "429 without a wait", fault: &llmtest.Fault{Status: 429, Code: "rate_limit_exceeded"}, want: "ratelimit"},
		{name: "429 from the server's own RPS limit", srv: []llmtest.Option{llmtest.WithRPS(0.5, 1)}, warm: true,
			want: "ratelimit", wait: 2 * time.Second},
		{name: "429 insufficient_quota", srv: []llmtest.Option{llmtest.WithInsufficientQuota()}, want: "fatal", inError: "no quota left"},
		{name: "429 TGI overloaded", srv: []llmtest.Option{llmtest.WithErrorStyle(llmtest.StyleTGI)},
			fault: &llmtest.Fault{Status: 429, Body: `{"error":"Model is overloaded","error_type":"overloaded"}`}, want: "ratelimit", inError: "Model is overloaded"},
		{name: "429 HTML from a proxy", fault: &llmtest.Fault{Status: 429, Body: "<html><body><h1>429 Too Many Requests</h1></body></html>", Header: hdr("retry-after", "3")},
			want: "ratelimit", wait: 3 * time.Second, inError: "429 Too Many Requests"},
		{name: "503 Ollama queue full", fault: &llmtest.Fault{Status: 503, Body: `{"error":"server busy, please try again.  maximum pending requests exceeded"}`},
			want: "transient", inError: "server busy"},
		{name: "503 with Retry-After", fault: &llmtest.Fault{Status: 503, Body: `{"error":"Model is overloaded","error_type":"overloaded"}`, Header: hdr("retry-after", "4")},
			want: "ratelimit", wait: 4 * time.Second},
		{name: "503 HTML", srv: []llmtest.Option{llmtest.WithErrorStyle(llmtest.StyleHTML), llmtest.WithErrorRate(1), llmtest.WithErrorStatus(503)},
			want: "transient", inError: "503 Service Unavailable"},
		{name: "500", srv: []llmtest.Option{llmtest.WithErrorRate(1)}, want: "transient", inError: "HTTP 500"},
		{name: "502 HTML", fault: &llmtest.Fault{Status: 502, Body: "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"},
			want: "transient", inError: "502 Bad Gateway"},
		{name: "timeout", srv: []llmtest.Option{llmtest.WithHangRate(1)}, opts: []Option{WithTimeout(50 * time.Millisecond)},
			want: "transient", target: ErrTimeout},
		{name: "connection reset", fault: &llmtest.Fault{Reset: true}, want: "transient"},
		{name: "400", fault: &llmtest.Fault{Status: 400, Code: "context_length_exceeded", Body: `{"error":{"message":"This model's maximum context length is 8192 tokens.","type":"invalid_request_error","code":"context_length_exceeded"}}`},
			want: "permanent", inError: "context_length_exceeded"},
		{name: "404 unknown model", srv: []llmtest.Option{llmtest.WithModels("other")}, want: "config", inError: `model_not_found`},
		{name: "422 TGI validation", fault: &llmtest.Fault{Status: 422, Body: `{"error":"Input validation error: inputs tokens + max_new_tokens must be <= 4096","error_type":"validation"}`},
			want: "permanent", inError: "Input validation error"},
		{name: "401", srv: []llmtest.Option{llmtest.WithAPIKey("right")}, opts: []Option{WithAPIKey("wrong-key")},
			want: "fatal", inError: "refused the API key (HTTP 401)"},
		{name: "403", fault: &llmtest.Fault{Status: 403, Body: `{"error":{"message":"You are not allowed to sample from this model","type":"invalid_request_error","code":"model_not_allowed"}}`},
			want: "fatal", inError: "HTTP 403"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			opts := append([]Option{withClock(func() time.Time { return now })}, tc.opts...)
			e, srv := newTest(t, Sentiment(), tc.srv, opts...)
			var warmed time.Time
			if tc.warm {
				warmed = time.Now()
				if _, err := e.Enrich(bg(), event("warm up")); err != nil {
					t.Fatal(err)
				}
				srv.ResetStats()
			}
			if tc.fault != nil {
				srv.Inject(*tc.fault)
			}
			_, err := e.Enrich(bg(), event("great"))
			if got := class(err); got != tc.want {
				t.Fatalf("class = %s, want %s (err: %v)", got, tc.want, err)
			}
			var rl *sluice.RateLimitError
			// The server's own limit reports the wait to the millisecond:
			// its full period less the time since the warm-up call took
			// the token, which is at most the time since it started.
			slack := 5 * time.Millisecond
			if tc.warm {
				slack += time.Since(warmed)
			}
			if errors.As(err, &rl) && (rl.RetryAfter < tc.wait-slack || rl.RetryAfter > tc.wait) {
				t.Errorf("RetryAfter = %s, want %s less at most %s", rl.RetryAfter, tc.wait, slack)
			}
			if tc.inError != "" && !strings.Contains(err.Error(), tc.inError) {
				t.Errorf("error %q does not contain %q", err, tc.inError)
			}
			if tc.target != nil && !errors.Is(err, tc.target) {
				t.Errorf("error %v does not match %v", err, tc.target)
			}
			var ae *APIError
			if tc.want != "transient" && !errors.As(err, &ae) {
				t.Errorf("error %v carries no *APIError", err)
			}
			if n := srv.Stats().Total; n != 1 {
				t.Errorf("server saw %d calls, want 1", n)
			}
		})
	}
}

func TestRetryAfterForms(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		kv   []string
		want time.Duration
	}{
		{"none", nil, 0},
		{"ms", []string{"retry-after-ms", "250"}, 250 * time.Millisecond},
		{"fractional ms", []string{"retry-after-ms", "0.5"}, 500 * time.Microsecond},
		{"ms beats seconds", []string{"retry-after-ms", "10", "retry-after", "5"}, 10 * time.Millisecond},
		{"bad ms falls through", []string{"retry-after-ms", "soon", "retry-after", "5"}, 5 * time.Second},
		{"seconds", []string{"retry-after", "30"}, 30 * time.Second},
		{"fractional seconds", []string{"retry-after", "1.5"}, 1500 * time.Millisecond},
		{"zero seconds", []string{"retry-after", "0"}, 0},
		{"negative seconds", []string{"retry-after", "-3"}, 0},
		{"HTTP date", []string{"retry-after", "Sun, 01 Mar 2026 12:00:09 GMT"}, 9 * time.Second},
		{"RFC 850 date", []string{"retry-after", "Sunday, 01-Mar-26 12:01:00 GMT"}, time.Minute},
		{"HTTP date in the past", []string{"retry-after", "Sun, 01 Mar 2026 11:00:00 GMT"}, 0},
		{"garbage", []string{"retry-after", "later"}, 0},
		{"seconds beat reset", []string{"retry-after", "2", "x-ratelimit-reset-requests", "6m0s"}, 2 * time.Second},
		{"reset requests", []string{"x-ratelimit-reset-requests", "6m0s"}, 6 * time.Minute},
		{"reset tokens", []string{"x-ratelimit-reset-tokens", "20ms"}, 20 * time.Millisecond},
		{"reset compound", []string{"x-ratelimit-reset-requests", "1m30.5s"}, 90500 * time.Millisecond},
		{"reset bare seconds", []string{"x-ratelimit-reset-tokens", "3"}, 3 * time.Second},
		{"both resets: the longer", []string{"x-ratelimit-reset-requests", "1s", "x-ratelimit-reset-tokens", "20ms"}, time.Second},
		{"both resets: the exhausted one", []string{"x-ratelimit-reset-requests", "1s", "x-ratelimit-reset-tokens", "20ms", "x-ratelimit-remaining-tokens", "0"}, 20 * time.Millisecond},
		{"bad reset", []string{"x-ratelimit-reset-requests", "6 minutes"}, 0},
		{"HTTP date in year 9999 is clamped", []string{"retry-after", "Fri, 31 Dec 9999 23:59:59 GMT"}, MaxRetryAfter},
		{"huge seconds are clamped", []string{"retry-after", "999999999"}, MaxRetryAfter},
		{"huge ms are clamped", []string{"retry-after-ms", "999999999999"}, MaxRetryAfter},
		{"huge reset is clamped", []string{"x-ratelimit-reset-requests", "2000000h"}, MaxRetryAfter},
		{"huge bare reset is clamped", []string{"x-ratelimit-reset-tokens", "1e300"}, MaxRetryAfter},
		{"NaN seconds", []string{"retry-after", "NaN"}, 0},
		{"Inf ms", []string{"retry-after-ms", "+Inf", "retry-after", "4"}, 4 * time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			for i := 0; i < len(tc.kv); i += 2 {
				h.Set(tc.kv[i], tc.kv[i+1])
			}
			if got := RetryAfter(h, now); got != tc.want {
				t.Errorf("RetryAfter = %s, want %s", got, tc.want)
			}
		})
	}
}

// A batch call that hits a 429 reports the rate limit for each event, and
// a fatal error for each event too.
func TestBatchErrorsArePerEvent(t *testing.T) {
	for _, tc := range []struct {
		fault llmtest.Fault
		want  string
	}{
		{llmtest.Fault{Status: 429, Code: "rate_limit_exceeded"}, "ratelimit"},
		{llmtest.Fault{Status: 429, Code: "insufficient_quota"}, "fatal"},
		{llmtest.Fault{Status: 500}, "transient"},
	} {
		e, srv := newTest(t, Sentiment(), nil)
		srv.Inject(tc.fault)
		res := e.EnrichBatch(bg(), []*sluice.Message{event("good"), event("bad"), event("fine")})
		for i, r := range res {
			if got := class(r.Err); got != tc.want {
				t.Errorf("%d %s: event %d: class %s, want %s (%v)", tc.fault.Status, tc.fault.Code, i, got, tc.want, r.Err)
			}
		}
		if n := srv.Stats().Total; n != 1 {
			t.Errorf("server saw %d calls, want 1", n)
		}
	}
}
