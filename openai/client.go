package openai

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/sluicehq/sluice"
)

// Sentinel errors callers can branch on with errors.Is.
var (
	// ErrInvalidAnswer matches a model answer that was cut off, is not a
	// JSON object, breaks the task's schema, or is a refusal.
	ErrInvalidAnswer = errors.New("openai: invalid model answer")
	// ErrResponseTooLarge matches a response body above the configured
	// limit (see [WithMaxResponseBytes]).
	ErrResponseTooLarge = errors.New("openai: response too large")
	// ErrTimeout matches a call that got no complete answer within the
	// per-request timeout (see [WithTimeout]).
	ErrTimeout = errors.New("openai: request timed out")
)

// APIError is an error answer from the server. It is wrapped in the
// classification the pipeline acts on: a *sluice.RateLimitError, or an
// error marked sluice.Permanent or sluice.Fatal, or nothing (transient).
type APIError struct {
	// StatusCode is the HTTP status.
	StatusCode int
	// Type and Code are OpenAI's error.type and error.code, or TGI's
	// error_type, when the body has them.
	Type string
	Code string
	// Message is the server's message, shortened, or the start of a body
	// that is not JSON.
	Message string
	// RequestID is the x-request-id header, for support tickets.
	RequestID string
}

// Error implements error.
func (e *APIError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "openai: HTTP %d", e.StatusCode)
	if e.Code != "" {
		fmt.Fprintf(&b, " %s", e.Code)
	} else if e.Type != "" {
		fmt.Fprintf(&b, " %s", e.Type)
	}
	if e.Message != "" {
		fmt.Fprintf(&b, ": %s", e.Message)
	}
	if e.RequestID != "" {
		fmt.Fprintf(&b, " (request %s)", e.RequestID)
	}
	return b.String()
}

// chatRequest is the Chat Completions request body.
type chatRequest struct {
	Model          string          `json:"model"`
	Messages       []chatMessage   `json:"messages"`
	Temperature    *float64        `json:"temperature,omitempty"`
	MaxTokens      int             `json:"max_tokens,omitempty"`
	MaxCompletion  int             `json:"max_completion_tokens,omitempty"`
	ResponseFormat *responseFormat `json:"response_format,omitempty"`
}

type chatMessage struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

type responseFormat struct {
	Type       string      `json:"type"`
	JSONSchema *jsonSchema `json:"json_schema,omitempty"`
}

type jsonSchema struct {
	Name   string          `json:"name"`
	Schema json.RawMessage `json:"schema"`
	Strict bool            `json:"strict"`
}

// chatResponse is the part of a completion response the Enricher reads.
type chatResponse struct {
	Model   string `json:"model"`
	Usage   *Usage `json:"usage"`
	Choices []struct {
		Message struct {
			Content *string `json:"content"`
			Refusal *string `json:"refusal"`
		} `json:"message"`
		FinishReason string `json:"finish_reason"`
	} `json:"choices"`
}

// outcome is what a call tells the adaptive limiter.
type outcome int

const (
	outcomeNeutral  outcome = iota
	outcomeSuccess          // a 200
	outcomeOverload         // a 429, a 503 or a timeout
)

// post sends one completion request and returns the decoded response or a
// classified error.
func (e *Enricher) post(ctx context.Context, body []byte) (*chatResponse, error) {
	tok, err := e.lim.acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("openai: waiting for a call slot: %w", err)
	}
	resp, out, err := e.roundTrip(ctx, body)
	e.lim.release(tok, out)
	return resp, err
}

func (e *Enricher) roundTrip(ctx context.Context, body []byte) (*chatResponse, outcome, error) {
	if len(e.cfg.observers) == 0 {
		resp, out, _, err := e.exchange(ctx, body)
		return resp, out, err
	}
	start := time.Now()
	resp, out, status, err := e.exchange(ctx, body)
	d := time.Since(start)
	var u Usage
	if resp != nil && resp.Usage != nil {
		u = *resp.Usage
	}
	for _, o := range e.cfg.observers {
		o.ModelCall(status, d, u.PromptTokens, u.CompletionTokens)
	}
	return resp, out, err
}

// exchange sends one request and reads its answer; status is the HTTP
// status, or 0 without a response.
func (e *Enricher) exchange(ctx context.Context, body []byte) (*chatResponse, outcome, int, error) {
	rctx, cancel := context.WithTimeout(ctx, e.cfg.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, e.endpoint, bytes.NewReader(body))
	if err != nil {
		return nil, outcomeNeutral, 0, sluice.Fatal(fmt.Errorf("openai: building request: %w", err))
	}
	e.authorize(req)
	req.Header.Set("Content-Type", "application/json")
	resp, err := e.http.Do(req)
	if err != nil {
		return nil, e.transportOutcome(ctx, rctx), 0, e.transportError(ctx, rctx, err)
	}
	status := resp.StatusCode
	defer resp.Body.Close()
	limit := e.cfg.maxBody
	if resp.StatusCode != http.StatusOK {
		limit = min(limit, 64<<10)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, e.transportOutcome(ctx, rctx), status, e.transportError(ctx, rctx, err)
	}
	if resp.StatusCode != http.StatusOK {
		err := e.classify(resp.StatusCode, resp.Header, data)
		out := outcomeNeutral
		if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
			out = outcomeOverload
		}
		return nil, out, status, err
	}
	if int64(len(data)) > limit {
		return nil, outcomeSuccess, status, fmt.Errorf("%w: %w: the body exceeds %d bytes", ErrInvalidAnswer, ErrResponseTooLarge, limit)
	}
	var cr chatResponse
	if err := json.Unmarshal(data, &cr); err != nil {
		// A 200 that is not a completion: a misbehaving proxy or server.
		return nil, outcomeSuccess, status, fmt.Errorf("openai: HTTP 200 with a body that is not a chat completion (%v): %s", err, e.snippet(data))
	}
	return &cr, outcomeSuccess, status, nil
}

// authorize adds the configured headers and the key to req.
func (e *Enricher) authorize(req *http.Request) {
	for k, vs := range e.cfg.headers {
		req.Header[k] = vs
	}
	req.Header.Set("Accept", "application/json")
	if !e.cfg.apiKey.empty() {
		req.Header.Set("Authorization", "Bearer "+e.cfg.apiKey.value())
	}
}

func (e *Enricher) transportOutcome(ctx, rctx context.Context) outcome {
	if ctx.Err() == nil && errors.Is(rctx.Err(), context.DeadlineExceeded) {
		return outcomeOverload
	}
	return outcomeNeutral
}

// transportError classifies a failure to get a response: the caller's
// cancellation, our timeout, or a network error. All are transient.
func (e *Enricher) transportError(ctx, rctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("openai: call cancelled: %w", context.Cause(ctx))
	}
	if errors.Is(rctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("%w after %s: %w", ErrTimeout, e.cfg.timeout, err)
	}
	return fmt.Errorf("openai: calling the model: %s", e.cfg.apiKey.scrub(err.Error()))
}

// errorBody covers OpenAI's error shape and TGI's.
type errorBody struct {
	Error     json.RawMessage `json:"error"`
	ErrorType string          `json:"error_type"`
	Message   string          `json:"message"`
}

// classify turns an error response into the error the pipeline acts on.
// The status decides; the body only adds detail, when it can be read.
func (e *Enricher) classify(status int, h http.Header, body []byte) error {
	ae := &APIError{StatusCode: status, RequestID: h.Get("X-Request-Id")}
	var eb errorBody
	if json.Unmarshal(body, &eb) == nil {
		var oe struct {
			Message string          `json:"message"`
			Type    string          `json:"type"`
			Code    json.RawMessage `json:"code"`
		}
		var s string
		switch {
		case json.Unmarshal(eb.Error, &oe) == nil && (oe.Message != "" || oe.Type != ""):
			ae.Message, ae.Type = oe.Message, oe.Type
			var code string
			if json.Unmarshal(oe.Code, &code) == nil {
				ae.Code = code
			} else if n := bytes.TrimSpace(oe.Code); len(n) > 0 && string(n) != "null" {
				ae.Code = string(n)
			}
		case json.Unmarshal(eb.Error, &s) == nil:
			ae.Message, ae.Type = s, eb.ErrorType
		default:
			ae.Message = eb.Message
		}
	}
	if ae.Message == "" && ae.Type == "" {
		ae.Message = e.snippet(body)
	}
	ae.Message = truncate(oneLine(e.cfg.apiKey.scrub(ae.Message)), 300)

	switch {
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		// The server's message may quote part of the key: leave it out.
		where := "the API key"
		if e.cfg.apiKeyEnv != "" {
			where = "the API key in $" + e.cfg.apiKeyEnv
		} else if e.cfg.apiKey.empty() {
			where = "the credentials (no API key is configured)"
		}
		ae.Message = ""
		return sluice.Fatal(fmt.Errorf("openai: the server at %s refused %s (HTTP %d): check it is valid and allowed to use model %q: %w",
			redactURL(e.cfg.baseURL), where, status, e.model, ae))
	case status == http.StatusTooManyRequests:
		if ae.Code == "insufficient_quota" || ae.Type == "insufficient_quota" {
			return sluice.Fatal(fmt.Errorf("openai: the account has no quota left (429 insufficient_quota); add credit or raise the limit, then restart: %w", ae))
		}
		return &sluice.RateLimitError{RetryAfter: RetryAfter(h, e.cfg.now()), Err: ae}
	case status == http.StatusServiceUnavailable:
		// An overloaded server (Ollama's full queue, TGI): back off, and
		// pause the pipeline when it says for how long.
		if ra := RetryAfter(h, e.cfg.now()); ra > 0 {
			return &sluice.RateLimitError{RetryAfter: ra, Err: ae}
		}
		return fmt.Errorf("openai: server overloaded: %w", ae)
	case status >= 500, status == http.StatusRequestTimeout, status == http.StatusConflict:
		return fmt.Errorf("openai: server error: %w", ae)
	case configStatus(status) && !eventSpecific(ae):
		// The request is refused for what every request carries (the URL,
		// the model, a parameter, the schema), not for this event's text:
		// the breaker stops the pipeline when it keeps happening.
		return sluice.Misconfigured(ae.class(), fmt.Errorf("openai: request refused (%s): %w", e.hint(ae), ae))
	default:
		return sluice.Permanent(fmt.Errorf("openai: request refused: %w", ae))
	}
}

// configStatus reports whether a 4xx status usually says the request's
// setup is wrong: 400 (a parameter or the schema), 404 (the URL or the
// model), 405 (the URL), 422 (a parameter, for some servers).
func configStatus(status int) bool {
	switch status {
	case http.StatusBadRequest, http.StatusNotFound, http.StatusMethodNotAllowed, http.StatusUnprocessableEntity:
		return true
	}
	return false
}

// eventCodes are error codes that blame the event's own content.
var eventCodes = map[string]bool{
	"context_length_exceeded":  true,
	"string_above_max_length":  true,
	"content_filter":           true,
	"content_policy_violation": true,
	"invalid_prompt":           true,
}

// eventHint finds messages that blame the event's content: its length, or
// a content filter.
var eventHint = regexp.MustCompile(`(?i)context length|context window|maximum context|too long|too many tokens|input validation|content.?(filter|policy|management)|safety system|flagged`)

// eventSpecific reports whether a refusal blames the event rather than the
// setup.
func eventSpecific(ae *APIError) bool {
	return eventCodes[ae.Code] || eventHint.MatchString(ae.Message)
}

// class is the breaker's name for a refusal: the status and the error's
// code or type, which every event of a wrong setup shares.
func (ae *APIError) class() string {
	switch {
	case ae.Code != "":
		return fmt.Sprintf("HTTP %d %s", ae.StatusCode, ae.Code)
	case ae.Type != "":
		return fmt.Sprintf("HTTP %d %s", ae.StatusCode, ae.Type)
	}
	return fmt.Sprintf("HTTP %d", ae.StatusCode)
}

// hint says what to check for a refusal that blames the setup.
func (e *Enricher) hint(ae *APIError) string {
	notFound := ae.StatusCode == http.StatusNotFound
	switch {
	case notFound && (ae.Code == "model_not_found" || strings.Contains(strings.ToLower(ae.Message), "model")):
		return fmt.Sprintf("check the model name %q", e.model)
	case notFound || ae.StatusCode == http.StatusMethodNotAllowed:
		return fmt.Sprintf("check the base URL %s: POST %s must be the chat completions endpoint", redactURL(e.cfg.baseURL), redactURL(e.endpoint))
	}
	return "the server rejects a parameter every request carries; check the model, the output mode and the token field"
}

// snippet quotes the start of a body that is not an OpenAI error, with
// HTML tags dropped.
func (e *Enricher) snippet(body []byte) string {
	s := string(body)
	if i := strings.Index(s, "<"); i >= 0 && strings.Contains(s, ">") {
		var b strings.Builder
		in := false
		for _, r := range s {
			switch {
			case r == '<':
				in = true
			case r == '>':
				in = false
				b.WriteByte(' ')
			case !in:
				b.WriteRune(r)
			}
		}
		s = b.String()
	}
	s = oneLine(e.cfg.apiKey.scrub(s))
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "?")
	}
	if s == "" {
		return "(empty body)"
	}
	return truncate(s, 200)
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// RetryAfter returns how long a 429 or 503 response asks the client to
// wait, or 0 when it does not say. It reads, in order: retry-after-ms
// (milliseconds), retry-after (seconds, or an HTTP date relative to now),
// and x-ratelimit-reset-requests / x-ratelimit-reset-tokens (Go durations
// such as "6m0s", "1s" or "20ms"; the one whose remaining count is 0, or
// the longer). Values above [MaxRetryAfter] (an HTTP date in year 9999, an
// absurd number) are clamped to it; the pipeline's rate-limit deadline
// then decides how long it really waits.
func RetryAfter(h http.Header, now time.Time) time.Duration {
	if v := strings.TrimSpace(h.Get("Retry-After-Ms")); v != "" {
		if d, ok := scaled(v, time.Millisecond); ok {
			return d
		}
	}
	if v := strings.TrimSpace(h.Get("Retry-After")); v != "" {
		if d, ok := scaled(v, time.Second); ok {
			return d
		} else if t, err := http.ParseTime(v); err == nil {
			if d := t.Sub(now); d > 0 { // Sub saturates; no overflow
				return min(d, MaxRetryAfter)
			}
		}
	}
	reqs := resetDuration(h.Get("X-Ratelimit-Reset-Requests"))
	toks := resetDuration(h.Get("X-Ratelimit-Reset-Tokens"))
	switch {
	case strings.TrimSpace(h.Get("X-Ratelimit-Remaining-Requests")) == "0" && reqs > 0:
		return reqs
	case strings.TrimSpace(h.Get("X-Ratelimit-Remaining-Tokens")) == "0" && toks > 0:
		return toks
	}
	return max(reqs, toks)
}

// MaxRetryAfter is the longest wait [RetryAfter] reports.
const MaxRetryAfter = 24 * time.Hour

// scaled parses a positive decimal number of units, clamped to
// [MaxRetryAfter]. It reports false for text that is not a positive
// finite number.
func scaled(v string, unit time.Duration) (time.Duration, bool) {
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || !(f > 0) || math.IsInf(f, 0) {
		return 0, false
	}
	if f >= float64(MaxRetryAfter/unit) {
		return MaxRetryAfter, true
	}
	return time.Duration(f * float64(unit)), true
}

// resetDuration parses an x-ratelimit-reset-* value: a Go duration, or a
// bare number of seconds, clamped to [MaxRetryAfter].
func resetDuration(v string) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if d, err := time.ParseDuration(v); err == nil && d > 0 {
		return min(d, MaxRetryAfter)
	}
	if d, ok := scaled(v, time.Second); ok {
		return d
	}
	return 0
}
