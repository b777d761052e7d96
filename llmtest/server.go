// Package llmtest provides a fake OpenAI-compatible Chat Completions server
// for tests, the way net/http/httptest provides a fake client.
//
// The fake answers deterministically and in the shape of the task it is
// asked for, so that tests can assert on content: sentiment comes from
// lists of positive and negative words, entities are the capitalised names
// in the text, translations are the text tagged with the target language,
// and spam follows a list of spam words. It recognises the task from the
// json_schema name of response_format, or from a "Task: <name>" line in the
// system prompt, and answers batch requests (a "Mode: batch" line, or a
// schema name ending in "_batch") per event id.
//
// Everything that makes real model servers hard to live with can be turned
// on: latency distributions, concurrency and requests-per-second limits
// enforced with 429 and Retry-After, insufficient_quota, server errors,
// hangs, malformed or truncated output, TGI-style and HTML error bodies,
// servers that ignore or reject response_format, and a required bearer
// token. Faults can also be queued one by one with [Handler.Inject]. Random
// choices use a seeded generator, and [Handler.Stats] counts what was seen.
//
// [NewServer] starts an httptest server for tests; [NewHandler] returns the
// http.Handler alone, for a main that serves it on a real address.
package llmtest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// maxRequestBytes bounds the request bodies the fake reads.
const maxRequestBytes = 8 << 20

// Server is a fake OpenAI-compatible server listening on a loopback
// address. Point a client at [Server.BaseURL].
type Server struct {
	*httptest.Server
	*Handler
}

// NewServer starts a fake server with the given options. It panics if an
// option is invalid, like httptest.NewServer panics when it cannot listen.
// Call Close when done.
func NewServer(opts ...Option) *Server {
	h, err := NewHandler(opts...)
	if err != nil {
		panic(err)
	}
	return &Server{Server: httptest.NewServer(h), Handler: h}
}

// BaseURL returns the URL that OpenAI clients take as their base URL: the
// server's URL followed by /v1.
func (s *Server) BaseURL() string { return s.URL + "/v1" }

// Close releases hanging requests and shuts the server down, blocking until
// every request has finished.
func (s *Server) Close() {
	s.Handler.Close()
	s.Server.Close()
}

// Handler is the fake server as an [http.Handler]. It serves
// POST /v1/chat/completions, GET /v1/models (unless [WithoutModelList]) and
// GET /stats (the [Stats] as JSON), each also with or without the /v1
// prefix; any other path answers 404 unknown_url, as OpenAI does. Its methods are safe for concurrent use.
type Handler struct {
	cfg     config
	limiter *rate.Limiter

	mu     sync.Mutex
	rnd    *rand.Rand
	faults []Fault
	stats  Stats

	hung chan struct{} // closed and replaced when a request starts hanging

	inFlight  atomic.Int64
	admitted  atomic.Int64
	seq       atomic.Int64
	closeOnce sync.Once
	closed    chan struct{}
}

// NewHandler returns a fake server handler. Every invalid option is
// reported, each matching [ErrInvalidOption].
func NewHandler(opts ...Option) (*Handler, error) {
	cfg := defaultConfig()
	for _, o := range opts {
		o(&cfg)
	}
	if err := cfg.errs.Err(); err != nil {
		return nil, err
	}
	h := &Handler{
		cfg:    cfg,
		rnd:    rand.New(rand.NewPCG(cfg.seed, cfg.seed^0x9e3779b97f4a7c15)),
		closed: make(chan struct{}),
		hung:   make(chan struct{}),
	}
	h.stats.ByStatus = map[int]int64{}
	h.stats.ByFormat = map[string]int64{}
	if cfg.rps > 0 {
		b := cfg.burst
		if b == 0 {
			b = max(1, int(cfg.rps/10))
		}
		h.limiter = rate.NewLimiter(rate.Limit(cfg.rps), b)
	}
	return h, nil
}

// Close makes hanging requests return. The handler answers 503 to
// completions from then on.
func (h *Handler) Close() {
	h.closeOnce.Do(func() { close(h.closed) })
}

// Fault is a one-off misbehaviour queued with [Handler.Inject]. Exactly one
// of Status, Hang, Reset, Malformed or Truncated should be set.
type Fault struct {
	// Status answers with this HTTP status. Body is sent as is, or, when
	// empty, an error body in the handler's style with Code as the OpenAI
	// error code.
	Status int
	Code   string
	Body   string
	// Header is added to the response.
	Header http.Header
	// Hang never answers; the request returns when the client gives up.
	Hang bool
	// Reset closes the connection without answering.
	Reset bool
	// Malformed answers 200 with content that is not JSON.
	Malformed bool
	// Truncated answers 200 with half the JSON and finish_reason "length".
	Truncated bool
}

// Inject queues faults; each of the next completion requests takes one, in
// order, after authentication and request validation.
func (h *Handler) Inject(faults ...Fault) {
	h.mu.Lock()
	h.faults = append(h.faults, faults...)
	h.mu.Unlock()
}

// Stats counts what the server has seen.
type Stats struct {
	// Total counts completion requests.
	Total int64 `json:"total"`
	// ByStatus counts completion responses by HTTP status. Hangs and
	// resets have no status.
	ByStatus map[int]int64 `json:"by_status"`
	// ByFormat counts completion requests by response_format type:
	// "json_schema", "json_object", or "none".
	ByFormat map[string]int64 `json:"by_format"`
	// MaxConcurrent is the most completion requests held at once,
	// including the ones refused for the concurrency limit.
	MaxConcurrent int64 `json:"max_concurrent"`
	// Completions counts 200 answers; BatchCompletions counts those that
	// answered a batch, and BatchItems the events they were asked about.
	Completions      int64 `json:"completions"`
	BatchCompletions int64 `json:"batch_completions"`
	BatchItems       int64 `json:"batch_items"`
	// Events counts the events answered: one per single completion, and
	// each event of a batch.
	Events int64 `json:"events"`
	// Hangs and Resets count injected or random hangs and resets.
	Hangs  int64 `json:"hangs"`
	Resets int64 `json:"resets"`
	// ModelLists counts GET /v1/models requests.
	ModelLists int64 `json:"model_lists"`
	// PromptTokens and CompletionTokens add up the usage the answers
	// reported.
	PromptTokens     int64 `json:"prompt_tokens"`
	CompletionTokens int64 `json:"completion_tokens"`
}

// Stats returns a snapshot of the counters.
func (h *Handler) Stats() Stats {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := h.stats
	s.ByStatus = make(map[int]int64, len(h.stats.ByStatus))
	for k, v := range h.stats.ByStatus {
		s.ByStatus[k] = v
	}
	s.ByFormat = make(map[string]int64, len(h.stats.ByFormat))
	for k, v := range h.stats.ByFormat {
		s.ByFormat[k] = v
	}
	s.Events = s.Completions - s.BatchCompletions + s.BatchItems
	return s
}

// WaitHangs blocks until at least n requests have started hanging since the
// last [Handler.ResetStats], or ctx is done. Tests use it to act while a
// call is in flight.
func (h *Handler) WaitHangs(ctx context.Context, n int64) error {
	for {
		h.mu.Lock()
		got, ch := h.stats.Hangs, h.hung
		h.mu.Unlock()
		if got >= n {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("llmtest: %d of %d hangs: %w", got, n, ctx.Err())
		}
	}
}

// ResetStats zeroes the counters.
func (h *Handler) ResetStats() {
	h.mu.Lock()
	h.stats = Stats{ByStatus: map[int]int64{}, ByFormat: map[string]int64{}}
	h.mu.Unlock()
}

func (h *Handler) count(f func(s *Stats)) {
	h.mu.Lock()
	f(&h.stats)
	h.mu.Unlock()
}

// chance draws from the seeded generator.
func (h *Handler) chance(p float64) bool {
	if p <= 0 {
		return false
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.rnd.Float64() < p
}

func (h *Handler) nextFault() (Fault, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.faults) == 0 {
		return Fault{}, false
	}
	f := h.faults[0]
	h.faults = h.faults[1:]
	return f, true
}

func (h *Handler) delay() time.Duration {
	l := h.cfg.latency
	switch l.kind {
	case 1:
		if l.b == l.a {
			return l.a
		}
		h.mu.Lock()
		defer h.mu.Unlock()
		return l.a + time.Duration(h.rnd.Int64N(int64(l.b-l.a)+1))
	case 2:
		h.mu.Lock()
		defer h.mu.Unlock()
		return max(0, time.Duration(float64(l.a)+h.rnd.NormFloat64()*float64(l.b)))
	default:
		return l.a
	}
}

// ServeHTTP implements [http.Handler].
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := strings.TrimPrefix(r.URL.Path, "/v1")
	switch path {
	case "/chat/completions":
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			h.fail(w, http.StatusMethodNotAllowed, "invalid_request_error", "", "use POST for /v1/chat/completions", nil)
			return
		}
		h.completion(w, r)
	case "/stats":
		if r.Method != http.MethodGet {
			w.Header().Set("Allow", http.MethodGet)
			h.fail(w, http.StatusMethodNotAllowed, "invalid_request_error", "", "use GET for /stats", nil)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(h.Stats())
	case "/models":
		if h.cfg.noModelList {
			h.fail(w, http.StatusNotFound, "invalid_request_error", "unknown_url", "unknown path "+r.URL.Path, nil)
			return
		}
		if r.Method != http.MethodGet {
			w.Header().Set("Allow", http.MethodGet)
			h.fail(w, http.StatusMethodNotAllowed, "invalid_request_error", "", "use GET for /v1/models", nil)
			return
		}
		h.listModels(w, r)
	default:
		h.fail(w, http.StatusNotFound, "invalid_request_error", "unknown_url", "unknown path "+r.URL.Path, nil)
	}
}

func (h *Handler) listModels(w http.ResponseWriter, r *http.Request) {
	h.count(func(s *Stats) { s.ModelLists++ })
	if !h.authorized(r) {
		h.fail(w, http.StatusUnauthorized, "invalid_request_error", "invalid_api_key", "Incorrect API key provided.", nil)
		return
	}
	type model struct {
		ID      string `json:"id"`
		Object  string `json:"object"`
		Created int64  `json:"created"`
		OwnedBy string `json:"owned_by"`
	}
	list := struct {
		Object string  `json:"object"`
		Data   []model `json:"data"`
	}{Object: "list", Data: []model{}}
	for _, m := range h.cfg.models {
		list.Data = append(list.Data, model{ID: m, Object: "model", OwnedBy: "llmtest"})
	}
	writeJSON(w, http.StatusOK, list)
}

// rejectedField returns the first field of body that WithRejectedField
// names.
func (h *Handler) rejectedField(body []byte) (string, bool) {
	if len(h.cfg.rejectFields) == 0 {
		return "", false
	}
	var fields map[string]json.RawMessage
	if json.Unmarshal(body, &fields) != nil {
		return "", false
	}
	for _, f := range h.cfg.rejectFields {
		if _, ok := fields[f]; ok {
			return f, true
		}
	}
	return "", false
}

func (h *Handler) authorized(r *http.Request) bool {
	if h.cfg.apiKey == "" {
		return true
	}
	return r.Header.Get("Authorization") == "Bearer "+h.cfg.apiKey
}

// request is the part of a chat completion request the fake reads.
type request struct {
	Model    string `json:"model"`
	Messages []struct {
		Role    string          `json:"role"`
		Content json.RawMessage `json:"content"`
	} `json:"messages"`
	ResponseFormat *struct {
		Type       string `json:"type"`
		JSONSchema *struct {
			Name   string          `json:"name"`
			Schema json.RawMessage `json:"schema"`
			Strict bool            `json:"strict"`
		} `json:"json_schema"`
	} `json:"response_format"`
}

func (h *Handler) completion(w http.ResponseWriter, r *http.Request) {
	n := h.inFlight.Add(1)
	defer h.inFlight.Add(-1)
	h.count(func(s *Stats) {
		s.Total++
		s.MaxConcurrent = max(s.MaxConcurrent, n)
	})
	select {
	case <-h.closed:
		h.fail(w, http.StatusServiceUnavailable, "server_error", "", "server is shutting down", nil)
		return
	default:
	}
	if !h.authorized(r) {
		h.fail(w, http.StatusUnauthorized, "invalid_request_error", "invalid_api_key",
			"Incorrect API key provided. You can find your API key in your account settings.", nil)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxRequestBytes+1))
	if err != nil {
		return // the client went away
	}
	var req request
	if len(body) > maxRequestBytes {
		h.fail(w, http.StatusRequestEntityTooLarge, "invalid_request_error", "", "request body too large", nil)
		return
	}
	if err := json.Unmarshal(body, &req); err != nil {
		h.fail(w, http.StatusBadRequest, "invalid_request_error", "", "We could not parse the JSON body of your request: "+err.Error(), nil)
		return
	}
	if req.Model == "" || len(req.Messages) == 0 {
		h.fail(w, http.StatusBadRequest, "invalid_request_error", "", "model and messages are required", nil)
		return
	}
	if f, ok := h.rejectedField(body); ok {
		if f == "max_tokens" {
			h.fail(w, http.StatusBadRequest, "invalid_request_error", "unsupported_parameter",
				"Unsupported parameter: 'max_tokens' is not supported with this model. Use 'max_completion_tokens' instead.", nil)
		} else {
			h.fail(w, http.StatusBadRequest, "invalid_request_error", "", "Unrecognized request argument supplied: "+f, nil)
		}
		return
	}
	format := "none"
	if req.ResponseFormat != nil {
		format = req.ResponseFormat.Type
	}
	h.count(func(s *Stats) { s.ByFormat[format]++ })
	if !h.cfg.anyModel && !contains(h.cfg.models, req.Model) {
		h.fail(w, http.StatusNotFound, "invalid_request_error", "model_not_found",
			fmt.Sprintf("The model `%s` does not exist or you do not have access to it.", req.Model), nil)
		return
	}
	switch {
	case format == "json_schema" && (h.cfg.schemaMode == SchemaRejectJSONSchema || h.cfg.schemaMode == SchemaRejectAll),
		format == "json_object" && h.cfg.schemaMode == SchemaRejectAll:
		h.fail(w, http.StatusBadRequest, "invalid_request_error", "",
			fmt.Sprintf("response_format type %q is not supported by this server", format), nil)
		return
	}
	if h.cfg.quota {
		h.fail(w, http.StatusTooManyRequests, "insufficient_quota", "insufficient_quota",
			"You exceeded your current quota, please check your plan and billing details.", nil)
		return
	}
	fault, injected := h.nextFault()
	if injected && fault.Status != 0 {
		h.injected(w, fault)
		return
	}
	if h.limiter != nil {
		now := time.Now()
		res := h.limiter.ReserveN(now, 1)
		if d := res.DelayFrom(now); d > 0 {
			res.CancelAt(now)
			h.rateLimited(w, d, fmt.Sprintf("Rate limit reached for requests: limit %g per second. Please try again in %dms.", h.cfg.rps, ceilMS(d)))
			return
		}
	}
	if c := h.cfg.maxConcurrency; c > 0 {
		if a := h.admitted.Add(1); a > int64(c) {
			h.admitted.Add(-1)
			h.rateLimited(w, 100*time.Millisecond, fmt.Sprintf("Too many concurrent requests: limit %d.", c))
			return
		}
		defer h.admitted.Add(-1)
	}
	switch {
	case injected && fault.Hang, h.chance(h.cfg.hangRate):
		h.mu.Lock()
		h.stats.Hangs++
		close(h.hung)
		h.hung = make(chan struct{})
		h.mu.Unlock()
		select {
		case <-r.Context().Done():
		case <-h.closed:
		}
		return
	case injected && fault.Reset:
		h.count(func(s *Stats) { s.Resets++ })
		if hj, ok := w.(http.Hijacker); ok {
			if conn, _, err := hj.Hijack(); err == nil {
				conn.Close()
				return
			}
		}
		panic(http.ErrAbortHandler)
	case h.chance(h.cfg.errorRate):
		h.fail(w, h.cfg.errorStatus, "server_error", "", "The server had an error while processing your request. Sorry about that!", nil)
		return
	}
	if d := h.delay() + time.Duration(h.events(&req))*h.cfg.perEvent; d > 0 {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		case <-h.closed:
			t.Stop()
		}
	}
	malformed := (injected && fault.Malformed) || h.chance(h.cfg.malformedRate)
	truncated := (injected && fault.Truncated) || h.chance(h.cfg.truncateRate)
	h.answer(w, &req, format, malformed, truncated, fault.Header)
}

// events is how many events a completion request asks about: the ids of a
// batch, or one. It is counted only when the per-event latency needs it.
func (h *Handler) events(req *request) int {
	if h.cfg.perEvent == 0 {
		return 0
	}
	var system, user string
	for _, m := range req.Messages {
		switch m.Role {
		case "system", "developer":
			system += contentText(m.Content) + "\n"
		case "user":
			user = contentText(m.Content)
		}
	}
	var name string
	if rf := req.ResponseFormat; rf != nil && rf.JSONSchema != nil {
		name = rf.JSONSchema.Name
	}
	if _, batch := detectTask(name, system); batch {
		var ins map[string]json.RawMessage
		if json.Unmarshal([]byte(user), &ins) == nil {
			return len(ins)
		}
	}
	return 1
}

func (h *Handler) answer(w http.ResponseWriter, req *request, format string, malformed, truncated bool, extra http.Header) {
	var system, user string
	for _, m := range req.Messages {
		text := contentText(m.Content)
		switch m.Role {
		case "system", "developer":
			system += text + "\n"
		case "user":
			user = text // the last user message is the input
		}
	}
	var schemaName string
	var schema json.RawMessage
	if rf := req.ResponseFormat; rf != nil && rf.JSONSchema != nil {
		schemaName, schema = rf.JSONSchema.Name, rf.JSONSchema.Schema
	}
	if schema == nil {
		if s, ok := line(system, "JSON schema:"); ok {
			schema = json.RawMessage(s)
		}
	}
	task, batch := detectTask(schemaName, system)
	lang := "English"
	if l, ok := line(system, "Target language:"); ok && l != "" {
		lang = l
	}
	var result any
	items := 0
	if batch {
		var ins map[string]json.RawMessage
		_ = json.Unmarshal([]byte(user), &ins)
		out := make(map[string]any, len(ins))
		itemSchema := batchItemSchema(schema)
		for id, in := range ins {
			items++
			if h.cfg.omitIDs[id] || h.chance(h.cfg.omitRate) {
				continue
			}
			out[id] = answerFor(task, in, lang, itemSchema)
		}
		result = out
	} else {
		result = answerFor(task, json.RawMessage(user), lang, schema)
	}
	content, _ := json.Marshal(result)
	text := string(content)
	finish := "stop"
	switch {
	case malformed:
		text = "I'm sorry, but I can't produce that in the requested format right now."
	case truncated:
		text = text[:len(text)/2]
		finish = "length"
	case h.cfg.schemaMode == SchemaIgnore || format == "none":
		text = "Sure! Here is the result:\n\n```json\n" + text + "\n```\n\nLet me know if you need anything else."
	}
	id := h.seq.Add(1)
	resp := map[string]any{
		"id":      "chatcmpl-llmtest-" + strconv.FormatInt(id, 10),
		"object":  "chat.completion",
		"created": time.Now().Unix(),
		"model":   req.Model,
		"choices": []any{map[string]any{
			"index":         0,
			"message":       map[string]any{"role": "assistant", "content": text},
			"finish_reason": finish,
		}},
		"usage": map[string]int{
			"prompt_tokens":     (len(system) + len(user)) / 4,
			"completion_tokens": len(text) / 4,
			"total_tokens":      (len(system)+len(user))/4 + len(text)/4,
		},
	}
	for k, vs := range extra {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	h.rateHeaders(w.Header(), 0)
	h.count(func(s *Stats) {
		s.Completions++
		s.PromptTokens += int64((len(system) + len(user)) / 4)
		s.CompletionTokens += int64(len(text) / 4)
		if batch {
			s.BatchCompletions++
			s.BatchItems += int64(items)
		}
	})
	h.write(w, http.StatusOK, resp)
}

// line returns the rest of the first line of text that starts with
// prefix, trimmed, and whether there is one.
func line(text, prefix string) (string, bool) {
	for text != "" {
		var l string
		l, text, _ = strings.Cut(text, "\n")
		if rest, ok := strings.CutPrefix(l, prefix); ok {
			return strings.TrimSpace(rest), true
		}
	}
	return "", false
}

// detectTask finds the task from the json_schema name, or else from the
// system prompt's "Task:" and "Mode: batch" lines.
func detectTask(schemaName, system string) (task string, batch bool) {
	mode, _ := line(system, "Mode:")
	batch = mode == "batch"
	if schemaName != "" {
		if t, ok := strings.CutSuffix(schemaName, "_batch"); ok {
			return t, true
		}
		return schemaName, batch
	}
	task, _ = line(system, "Task:")
	return task, batch
}

// batchItemSchema returns the schema of one event's answer from a batch
// schema whose properties are the event ids.
func batchItemSchema(schema json.RawMessage) json.RawMessage {
	var s struct {
		Properties map[string]json.RawMessage `json:"properties"`
	}
	if json.Unmarshal(schema, &s) != nil {
		return nil
	}
	for _, v := range s.Properties {
		return v
	}
	return nil
}

func contentText(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var parts []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	_ = json.Unmarshal(raw, &parts)
	var b strings.Builder
	for _, p := range parts {
		if p.Type == "text" {
			b.WriteString(p.Text)
		}
	}
	return b.String()
}

func (h *Handler) injected(w http.ResponseWriter, f Fault) {
	for k, vs := range f.Header {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	if f.Body != "" {
		if w.Header().Get("Content-Type") == "" {
			if strings.HasPrefix(strings.TrimSpace(f.Body), "<") {
				w.Header().Set("Content-Type", "text/html; charset=utf-8")
			} else {
				w.Header().Set("Content-Type", "application/json")
			}
		}
		h.count(func(s *Stats) { s.ByStatus[f.Status]++ })
		w.WriteHeader(f.Status)
		_, _ = io.WriteString(w, f.Body)
		return
	}
	typ := "invalid_request_error"
	switch {
	case f.Status == http.StatusTooManyRequests:
		typ = "requests"
		if f.Code == "insufficient_quota" {
			typ = "insufficient_quota"
		}
	case f.Status >= 500:
		typ = "server_error"
	}
	h.fail(w, f.Status, typ, f.Code, fmt.Sprintf("injected %d %s", f.Status, f.Code), nil)
}

// rateLimited answers 429 rate_limit_exceeded telling the client to wait d.
func (h *Handler) rateLimited(w http.ResponseWriter, d time.Duration, msg string) {
	hd := http.Header{}
	if h.cfg.style != StyleTGI {
		hd.Set("Retry-After-Ms", strconv.FormatInt(ceilMS(d), 10))
		hd.Set("Retry-After", strconv.FormatInt(int64(math.Ceil(d.Seconds())), 10))
		h.rateHeaders(hd, d)
	}
	h.fail(w, http.StatusTooManyRequests, "requests", "rate_limit_exceeded", msg, hd)
}

// rateHeaders adds OpenAI's x-ratelimit-* headers for the request limit.
// The reset is the time until the next request will be allowed.
func (h *Handler) rateHeaders(hd http.Header, wait time.Duration) {
	if h.limiter == nil || h.cfg.style == StyleTGI {
		return
	}
	tokens := h.limiter.TokensAt(time.Now())
	hd.Set("X-Ratelimit-Limit-Requests", strconv.Itoa(h.limiter.Burst()))
	hd.Set("X-Ratelimit-Remaining-Requests", strconv.Itoa(max(0, int(tokens))))
	if wait <= 0 && tokens < 1 {
		wait = time.Duration((1 - tokens) / h.cfg.rps * float64(time.Second))
	}
	hd.Set("X-Ratelimit-Reset-Requests", (time.Duration(ceilMS(wait)) * time.Millisecond).String())
}

func ceilMS(d time.Duration) int64 {
	return int64((d + time.Millisecond - 1) / time.Millisecond)
}

// fail sends an error in the configured style.
func (h *Handler) fail(w http.ResponseWriter, status int, typ, code, msg string, hd http.Header) {
	for k, vs := range hd {
		w.Header()[k] = vs
	}
	h.count(func(s *Stats) { s.ByStatus[status]++ })
	switch h.cfg.style {
	case StyleTGI:
		et := "validation"
		switch {
		case status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable:
			et = "overloaded"
			msg = "Model is overloaded"
		case status >= 500:
			et = "generation"
		}
		writeJSON(w, status, map[string]string{"error": msg, "error_type": et})
	case StyleHTML:
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(status)
		fmt.Fprintf(w, "<html>\r\n<head><title>%d %s</title></head>\r\n<body>\r\n<center><h1>%d %s</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n",
			status, http.StatusText(status), status, http.StatusText(status))
	default:
		var c any
		if code != "" {
			c = code
		}
		writeJSON(w, status, map[string]any{"error": map[string]any{
			"message": msg, "type": typ, "param": nil, "code": c,
		}})
	}
}

func (h *Handler) write(w http.ResponseWriter, status int, v any) {
	h.count(func(s *Stats) { s.ByStatus[status]++ })
	writeJSON(w, status, v)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
