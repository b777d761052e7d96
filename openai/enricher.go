package openai

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/jsonenrich"
)

// Enricher is a [sluice.Enricher] and [sluice.BatchEnricher] that asks a
// chat-completion model to carry out a [Task] on each JSON event's text
// fields, and stores the validated answer as an [Enrichment] under the
// enrichment key. It follows [jsonenrich.Enricher]: text fields are dot
// paths, and every byte of the event outside the enrichment key is kept.
// Its methods are safe for concurrent use.
type Enricher struct {
	cfg      *config // a pointer, so that printing an Enricher shows no header values
	model    string
	task     Task
	paths    []string
	schema   *Schema
	strict   bool
	json     *jsonenrich.Enricher
	http     *http.Client
	endpoint string
	lim      *limiter
	log      *slog.Logger
	mode     atomic.Int32 // OutputMode in use; moves down under OutputAuto
	tokens   atomic.Int32 // TokenField in use, never TokenFieldAuto; moves to max_tokens under TokenFieldAuto
	prompts  [2][2]string // system prompts by [batch][schema in prompt]
	cache    *cacheState  // nil without WithCache
	tracers  []CallTracer // the call observers that trace
	meter    *meter

	checked atomic.Pointer[checkResult] // the latest Check's outcome
}

var (
	_ sluice.Enricher      = (*Enricher)(nil)
	_ sluice.BatchEnricher = (*Enricher)(nil)
)

// New returns an Enricher that sends task to model for the text at each of
// textFields (dot paths such as "review.body", see jsonenrich.Extract). It
// reports every bad argument and option at once, each matching
// sluice.ErrInvalidConfig.
func New(model string, task Task, textFields []string, opts ...Option) (*Enricher, error) {
	cfg := defaultConfig()
	for _, o := range opts {
		if o != nil {
			o(&cfg)
		}
	}
	e := &Enricher{cfg: &cfg, model: model, task: task, paths: slices.Clone(textFields)}
	if model == "" {
		cfg.reject("model", "the model name is empty", "pass the model to call, such as gpt-4o-mini")
	}
	if cfg.adaptive && cfg.maxConc == 0 {
		cfg.reject("WithAdaptiveConcurrency()", "it has no ceiling", "add WithMaxConcurrency(n)")
	}
	seen := map[string]bool{}
	for _, p := range textFields {
		if seen[p] {
			cfg.reject("textFields", fmt.Sprintf("%q is listed twice", p), "list each field once")
		}
		seen[p] = true
	}
	var errs []error
	if err := cfg.errs.Err(); err != nil {
		errs = append(errs, err)
	}
	s, err := task.compile(textFields)
	if err != nil {
		errs = append(errs, err)
	}
	e.schema = s
	je, err := jsonenrich.New(e.paths, e.answer, jsonenrich.WithKey(cfg.key))
	if err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	e.json = je
	e.strict = s.Strict()
	for b := range 2 {
		for p := range 2 {
			e.prompts[b][p] = task.systemPrompt(s, b == 1, p == 1)
		}
	}
	e.endpoint = cfg.baseURL + "/chat/completions"
	if cfg.cache != nil {
		e.cache = &cacheState{c: cfg.cache}
	}
	if cfg.budget != nil && cfg.budget.USD > 0 && cfg.prices == nil {
		errs = append(errs, fmt.Errorf("openai: WithBudget(USD: %v): a budget in dollars needs prices; add WithPrices: %w", cfg.budget.USD, sluice.ErrInvalidConfig))
		return nil, errors.Join(errs...)
	}
	e.meter = &meter{prices: cfg.prices, budget: cfg.budget, now: func() time.Time { return e.cfg.now() }}
	e.lim = newLimiter(cfg.maxConc, cfg.adaptive)
	e.tracers = callTracers(cfg.observers)
	e.log = cfg.logger
	if e.log == nil {
		e.log = slog.Default()
	}
	e.http = cfg.httpClient
	if e.http == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		conns := max(DefaultMaxConnections, cfg.maxConc)
		t.MaxIdleConns = conns
		t.MaxIdleConnsPerHost = conns
		t.IdleConnTimeout = 90 * time.Second
		e.http = &http.Client{Transport: t}
	}
	mode := cfg.output
	if mode == OutputAuto {
		mode = OutputJSONSchema
	}
	e.mode.Store(int32(mode))
	tf := cfg.tokenField
	if tf == TokenFieldAuto {
		tf = TokenFieldMaxCompletionTokens
	}
	e.tokens.Store(int32(tf))
	return e, nil
}

// Model returns the configured model name.
func (e *Enricher) Model() string { return e.model }

// Task returns the task.
func (e *Enricher) Task() Task { return e.task }

// OutputMode returns how structured output is requested now: under
// [OutputAuto] it moves from json_schema to json_object to prompt-only as
// the server rejects them.
func (e *Enricher) OutputMode() OutputMode { return OutputMode(e.mode.Load()) }

// TokenField returns the field the token cap is sent in now: under
// [TokenFieldAuto] it moves from max_completion_tokens to max_tokens when
// the server rejects the former.
func (e *Enricher) TokenField() TokenField { return TokenField(e.tokens.Load()) }

// ConcurrencyLimit returns the current limit on calls in flight, which the
// adaptive mode moves, or 0 when there is none.
func (e *Enricher) ConcurrencyLimit() int { return e.lim.current() }

// Close closes idle connections. The Enricher stays usable.
func (e *Enricher) Close() error {
	e.http.CloseIdleConnections()
	return nil
}

// Enrich implements [sluice.Enricher]. A cut-off, non-JSON or
// schema-breaking answer is asked again once and then fails with
// sluice.Permanent; HTTP errors are classified as described in the package
// documentation.
func (e *Enricher) Enrich(ctx context.Context, in *sluice.Message) (*sluice.Message, error) {
	if e.cfg.usageHeader == "" {
		return e.json.Enrich(ctx, in)
	}
	eu := &eventUsage{}
	out, err := e.json.Enrich(context.WithValue(ctx, eventUsageKey{}, eu), in)
	if err != nil {
		return nil, err
	}
	return e.withUsageHeader(out, eu.u), nil
}

// call is one request's shape.
type call struct {
	name      string
	schema    json.RawMessage
	batch     bool
	events    int // the events the call answers
	user      json.RawMessage
	maxTokens int
	msgs      []*sluice.Message // the events, for a CallTracer
}

// answer is the jsonenrich.ModelFunc behind Enrich.
func (e *Enricher) answer(ctx context.Context, fields []jsonenrich.Field, in *sluice.Message) (json.RawMessage, error) {
	user, err := e.task.input(fields)
	if err != nil {
		return nil, err
	}
	var key string
	if e.cache != nil {
		key = e.cacheKey(user)
		if enr, ok := e.cached(ctx, key); ok {
			return enr, nil
		}
	}
	c := call{name: e.task.Name, schema: e.schema.JSON(), events: 1, user: user, maxTokens: e.cfg.maxTokens}
	if e.tracers != nil {
		c.msgs = []*sluice.Message{in}
	}
	var last error
	for attempt := 1; attempt <= 2; attempt++ {
		ans, model, u, err := e.ask(ctx, c)
		addEventUsage(ctx, u)
		if err == nil {
			if verr := e.schema.Validate(ans); verr != nil {
				err = invalid("the answer does not match the %s schema: %v", e.task.Name, verr)
			} else {
				enr, err := e.enrichment(model, ans)
				if err == nil && e.cache != nil {
					e.store(ctx, key, enr)
				}
				return enr, err
			}
		}
		if !errors.Is(err, ErrInvalidAnswer) {
			return nil, err
		}
		last = err
		e.log.Debug("openai: invalid model answer", "task", e.task.Name, "attempt", attempt, "err", err)
	}
	return nil, sluice.Permanent(fmt.Errorf("openai: task %s: the model answered badly twice; last time: %w", e.task.Name, last))
}

// enrichment builds the stored JSON for a validated answer.
func (e *Enricher) enrichment(model string, ans json.RawMessage) (json.RawMessage, error) {
	canon, err := Canonical(ans)
	if err != nil {
		return nil, sluice.Permanent(invalid("%v", err))
	}
	hash := hashCanonical(canon)
	if model == "" {
		model = e.model
	}
	return marshal(Enrichment{Task: e.task.Name, Model: model, Result: canon, Hash: hash})
}

// ask sends one call and returns the answer object and the call's usage.
// Under OutputAuto it falls back to a simpler output mode when the server
// rejects response_format, and asks again. With a [Budget] that is spent it
// returns a [sluice.PauseError] without calling.
func (e *Enricher) ask(ctx context.Context, c call) (json.RawMessage, string, Usage, error) {
	for {
		if err := e.meter.check(); err != nil {
			return nil, "", Usage{}, err
		}
		mode, field := e.OutputMode(), e.TokenField()
		body, err := e.body(c, mode, field)
		if err != nil {
			return nil, "", Usage{}, sluice.Permanent(err)
		}
		cctx, info := e.startCall(ctx, &c)
		resp, err := e.post(cctx, body)
		if err != nil {
			e.endCall(cctx, info, nil, err)
			if e.fellBack(field, err) {
				continue
			}
			if e.cfg.output == OutputAuto && mode != OutputPromptOnly && formatRejected(err) {
				next := mode + 1
				if e.mode.CompareAndSwap(int32(mode), int32(next)) {
					e.log.Warn("openai: the server rejected response_format; falling back", "from", mode.String(), "to", next.String(), "err", err)
				}
				continue
			}
			return nil, "", Usage{}, err
		}
		var u Usage
		if resp.Usage != nil {
			u = *resp.Usage
		}
		e.meter.call(u, c.events)
		ans, err := readAnswer(resp)
		if err != nil {
			// The answer is quoted in the error; keep the key out of it.
			msg := strings.TrimPrefix(err.Error(), ErrInvalidAnswer.Error()+": ")
			err = invalid("%s", e.cfg.apiKey.scrub(msg))
		}
		e.endCall(cctx, info, resp, err)
		return ans, resp.Model, u, err
	}
}

// fellBack moves, under TokenFieldAuto, from max_completion_tokens to
// max_tokens when err is the server's rejection of the former sent as
// field, and reports whether the call should be sent again.
func (e *Enricher) fellBack(field TokenField, err error) bool {
	if e.cfg.tokenField != TokenFieldAuto || field != TokenFieldMaxCompletionTokens || !tokenFieldRejected(err) {
		return false
	}
	if e.tokens.CompareAndSwap(int32(field), int32(TokenFieldMaxTokens)) {
		e.log.Warn("openai: the server rejected max_completion_tokens; sending max_tokens from now on (set the token field to max_tokens to skip this)", "err", err)
	}
	return true
}

// tokenFieldRejected reports whether err is a 400 or 422 that names
// max_completion_tokens.
func tokenFieldRejected(err error) bool {
	var ae *APIError
	if !errors.As(err, &ae) || (ae.StatusCode != http.StatusBadRequest && ae.StatusCode != http.StatusUnprocessableEntity) {
		return false
	}
	return strings.Contains(ae.Message, "max_completion_tokens") || strings.Contains(ae.Code, "max_completion_tokens")
}

// body encodes the request for a call.
func (e *Enricher) body(c call, mode OutputMode, field TokenField) ([]byte, error) {
	req := chatRequest{
		Model:       e.model,
		Temperature: e.cfg.temperature,
		Messages: []chatMessage{
			{Role: "system", Content: e.prompts[btoi(c.batch)][btoi(mode != OutputJSONSchema)]},
			{Role: "user", Content: string(c.user)},
		},
	}
	if field == TokenFieldMaxTokens {
		req.MaxTokens = c.maxTokens
	} else {
		req.MaxCompletion = c.maxTokens
	}
	switch mode {
	case OutputJSONSchema:
		name := c.name
		if c.batch {
			name += "_batch"
		}
		req.ResponseFormat = &responseFormat{Type: "json_schema", JSONSchema: &jsonSchema{Name: name, Schema: c.schema, Strict: e.strict}}
	case OutputJSONObject:
		req.ResponseFormat = &responseFormat{Type: "json_object"}
	}
	return marshal(req)
}

// formatHint finds servers' complaints about response_format.
var formatHint = regexp.MustCompile(`(?i)response_format|json_schema|json_object|structured|schema|grammar|guided`)

// formatRejected reports whether err is a 400 or 422 about the
// response_format.
func formatRejected(err error) bool {
	var ae *APIError
	if !errors.As(err, &ae) || (ae.StatusCode != http.StatusBadRequest && ae.StatusCode != http.StatusUnprocessableEntity) {
		return false
	}
	return formatHint.MatchString(ae.Message) || formatHint.MatchString(ae.Code)
}

// EnrichBatch implements [sluice.BatchEnricher]. Events go to the model in
// calls of up to [WithMaxBatch] events, keyed by ids "e1", "e2", … with a
// schema that requires every id. Events whose id is missing from the answer
// or whose answer is invalid are sent again one by one, as are all the
// events of a call whose answer is unusable as a whole. An HTTP error
// applies to each event of the call; a 4xx other than 401/403 sends them
// one by one, so one oversized event cannot fail the rest.
func (e *Enricher) EnrichBatch(ctx context.Context, in []*sluice.Message) []sluice.BatchResult {
	res := make([]sluice.BatchResult, len(in))
	var todo []pending
	for i, m := range in {
		fields, err := jsonenrich.Extract(m.Value, e.paths)
		if err != nil {
			res[i].Err = err
			continue
		}
		input, err := e.task.input(fields)
		if err != nil {
			res[i].Err = err
			continue
		}
		p := pending{i: i, input: input}
		if e.cache != nil {
			p.key = e.cacheKey(input)
			if enr, ok := e.cached(ctx, p.key); ok {
				res[i].Msg, res[i].Err = e.merged(m, enr, Usage{})
				continue
			}
		}
		todo = append(todo, p)
	}
	for chunk := range slices.Chunk(todo, e.cfg.maxBatch) {
		e.batch(ctx, in, chunk, res)
	}
	return res
}

type pending struct {
	i     int
	input json.RawMessage
	key   string // in the cache; empty without one
}

// merged is in with enr stored under the enrichment key, and the usage
// header when asked for.
func (e *Enricher) merged(in *sluice.Message, enr json.RawMessage, u Usage) (*sluice.Message, error) {
	out, err := jsonenrich.Merge(in.Value, e.cfg.key, enr)
	if err != nil {
		return nil, err
	}
	m := in.WithValue(out)
	if e.cfg.usageHeader != "" {
		m = e.withUsageHeader(m, u)
	}
	return m, nil
}

func (e *Enricher) batch(ctx context.Context, in []*sluice.Message, chunk []pending, res []sluice.BatchResult) {
	single := func(ps []pending) {
		for _, p := range ps {
			if err := ctx.Err(); err != nil {
				res[p.i].Err = fmt.Errorf("openai: call cancelled: %w", context.Cause(ctx))
				continue
			}
			res[p.i].Msg, res[p.i].Err = e.Enrich(eventContext(ctx, in[p.i]), in[p.i])
		}
	}
	if len(chunk) == 1 {
		single(chunk)
		return
	}
	ids := make([]string, len(chunk))
	var user bytes.Buffer
	user.WriteByte('{')
	for k, p := range chunk {
		ids[k] = "e" + strconv.Itoa(k+1)
		if k > 0 {
			user.WriteByte(',')
		}
		fmt.Fprintf(&user, "%q:", ids[k])
		user.Write(p.input)
	}
	user.WriteByte('}')
	c := call{
		name:      e.task.Name,
		schema:    batchSchema(ids, e.schema.JSON()),
		batch:     true,
		events:    len(chunk),
		user:      user.Bytes(),
		maxTokens: e.cfg.maxTokens * len(chunk),
	}
	if e.tracers != nil {
		c.msgs = make([]*sluice.Message, len(chunk))
		for k, p := range chunk {
			c.msgs[k] = in[p.i]
		}
	}
	ans, model, u, err := e.ask(ctx, c)
	shares := u.split(len(chunk))
	switch {
	case err == nil:
	case errors.Is(err, ErrInvalidAnswer), errors.Is(err, sluice.ErrPermanent):
		e.log.Debug("openai: batch call failed; sending its events one by one", "events", len(chunk), "err", err)
		single(chunk)
		return
	default:
		for _, p := range chunk {
			res[p.i].Err = err
		}
		return
	}
	parts, err := splitBatch(ans, ids, e.schema)
	if err != nil {
		e.log.Debug("openai: batch answer unusable; sending its events one by one", "events", len(chunk), "err", err)
		single(chunk)
		return
	}
	var again []pending
	var why error
	for k, p := range chunk {
		if parts[k].err != nil {
			again = append(again, p)
			why = cmp.Or(why, parts[k].err)
			continue
		}
		enr, err := e.enrichment(model, parts[k].answer)
		if err == nil {
			if e.cache != nil {
				e.store(ctx, p.key, enr)
			}
			res[p.i].Msg, res[p.i].Err = e.merged(in[p.i], enr, shares[k])
			continue
		}
		res[p.i].Err = err
	}
	if len(again) > 0 {
		e.log.Debug("openai: batch answer lacked or botched some events; sending them one by one", "events", len(chunk), "again", len(again), "reason", why)
		single(again)
	}
}

// batchSchema is an object with one required property per id, each of the
// task's answer schema.
func batchSchema(ids []string, item json.RawMessage) json.RawMessage {
	var b bytes.Buffer
	b.WriteString(`{"type":"object","properties":{`)
	for k, id := range ids {
		if k > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%q:", id)
		b.Write(item)
	}
	b.WriteString(`},"required":[`)
	for k, id := range ids {
		if k > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%q", id)
	}
	b.WriteString(`],"additionalProperties":false}`)
	return b.Bytes()
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
