package llmtest

import (
	"fmt"
	"math"
	"time"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/internal/optcheck"
)

// Option configures a fake server. Every option checks its argument;
// [NewHandler] reports every bad one at once, joined, each matching
// [sluice.ErrInvalidConfig] and reading "llmtest: WithX(value): what is
// wrong; what to do". [NewServer] panics on a bad one.
type Option func(*config)

type config struct {
	latency        Latency
	perEvent       time.Duration
	maxConcurrency int
	rps            float64
	burst          int
	quota          bool
	errorRate      float64
	errorStatus    int
	hangRate       float64
	malformedRate  float64
	truncateRate   float64
	omitRate       float64
	omitIDs        map[string]bool
	style          ErrorStyle
	schemaMode     SchemaMode
	apiKey         string
	seed           uint64
	models         []string
	anyModel       bool
	rejectFields   []string
	noModelList    bool
	errs           optcheck.Errors
}

func defaultConfig() config {
	return config{
		errorStatus: 500,
		seed:        1,
		models:      []string{"llmtest"},
		anyModel:    true,
		errs:        optcheck.New("llmtest", sluice.ErrInvalidConfig),
	}
}

// reject records a bad option; see [optcheck.Errors.Reject].
func (c *config) reject(option, problem, fix string) { c.errs.Reject(option, problem, fix) }

func (c *config) rate(name string, p float64, dst *float64) {
	if math.IsNaN(p) || p < 0 || p > 1 {
		c.reject(optcheck.Call(name, p), "the rate is not a fraction between 0 and 1", "pass a value from 0 (never) to 1 (always)")
		return
	}
	*dst = p
}

// Latency is the distribution of the time the fake takes to answer a
// completion. The zero value answers at once.
type Latency struct {
	kind     int // 0 fixed, 1 uniform, 2 normal
	a, b     time.Duration
	describe string
}

// Fixed answers every completion after d.
func Fixed(d time.Duration) Latency {
	return Latency{a: d, describe: fmt.Sprintf("Fixed(%s)", d)}
}

// Uniform answers after a time drawn uniformly from [lo, hi].
func Uniform(lo, hi time.Duration) Latency {
	return Latency{kind: 1, a: lo, b: hi, describe: fmt.Sprintf("Uniform(%s, %s)", lo, hi)}
}

// Normal answers after a time drawn from a normal distribution with the
// given mean and standard deviation, never below zero.
func Normal(mean, stddev time.Duration) Latency {
	return Latency{kind: 2, a: mean, b: stddev, describe: fmt.Sprintf("Normal(%s, %s)", mean, stddev)}
}

// String describes the distribution.
func (l Latency) String() string {
	if l.describe == "" {
		return "Fixed(0s)"
	}
	return l.describe
}

// WithLatency sets how long a completion takes. Rejections (429, 401, 400)
// are answered at once, as real APIs do.
func WithLatency(l Latency) Option {
	return func(c *config) {
		bad := l.a < 0 || l.b < 0 || (l.kind == 1 && l.b < l.a)
		if bad {
			c.reject(optcheck.Call("WithLatency", l), "a duration is negative, or lo is above hi", "pass non-negative durations with lo <= hi")
			return
		}
		c.latency = l
	}
}

// WithPerEventLatency adds d to a completion's latency for each event it
// answers: a single call takes WithLatency's time plus d, and a batch of n
// events plus n×d, the way a real model's time grows with the text it reads
// and writes while the fixed cost of a call (queueing, the prompt, the
// round trip) is paid once.
func WithPerEventLatency(d time.Duration) Option {
	return func(c *config) {
		if d < 0 {
			c.reject(optcheck.Call("WithPerEventLatency", d), "the duration is negative", "pass 0 or more")
			return
		}
		c.perEvent = d
	}
}

// WithMaxConcurrency answers 429 rate_limit_exceeded to a completion that
// arrives while n others are being served. 0 (the default) is no limit.
func WithMaxConcurrency(n int) Option {
	return func(c *config) {
		if n < 0 {
			c.reject(optcheck.Call("WithMaxConcurrency", n), "the limit is negative", "pass 0 for no limit")
			return
		}
		c.maxConcurrency = n
	}
}

// WithRPS limits completions to rps per second with a token bucket, and
// answers 429 rate_limit_exceeded beyond it, with retry-after-ms,
// retry-after and x-ratelimit-* headers saying when the next call will be
// allowed. burst is the bucket's size; 0 picks max(1, rps/10). rps 0 (the
// default) is no limit.
func WithRPS(rps float64, burst int) Option {
	return func(c *config) {
		if math.IsNaN(rps) || math.IsInf(rps, 0) || rps < 0 || burst < 0 {
			c.reject(optcheck.Call("WithRPS", rps, burst), "the rate or the burst is negative", "pass rps >= 0 and burst >= 0; 0 rps means no limit")
			return
		}
		c.rps, c.burst = rps, burst
	}
}

// WithInsufficientQuota makes every completion fail with 429
// insufficient_quota, the way OpenAI answers an account out of credit.
func WithInsufficientQuota() Option {
	return func(c *config) { c.quota = true }
}

// WithErrorRate fails the given fraction of completions with a server
// error (500 unless [WithErrorStatus] says otherwise).
func WithErrorRate(p float64) Option {
	return func(c *config) { c.rate("WithErrorRate", p, &c.errorRate) }
}

// WithErrorStatus sets the status [WithErrorRate] answers with, for example
// 503 to act like an overloaded Ollama. It must be 500-599.
func WithErrorStatus(code int) Option {
	return func(c *config) {
		if code < 500 || code > 599 {
			c.reject(optcheck.Call("WithErrorStatus", code), "the status is not 5xx", "pass a status from 500 to 599")
			return
		}
		c.errorStatus = code
	}
}

// WithHangRate makes the given fraction of completions never answer: the
// request hangs until the client gives up or the server closes.
func WithHangRate(p float64) Option {
	return func(c *config) { c.rate("WithHangRate", p, &c.hangRate) }
}

// WithMalformedRate makes the given fraction of completions answer 200 with
// content that is not JSON.
func WithMalformedRate(p float64) Option {
	return func(c *config) { c.rate("WithMalformedRate", p, &c.malformedRate) }
}

// WithTruncateRate makes the given fraction of completions answer with the
// JSON cut in half and finish_reason "length".
func WithTruncateRate(p float64) Option {
	return func(c *config) { c.rate("WithTruncateRate", p, &c.truncateRate) }
}

// WithOmitRate leaves each event of a batch request out of the answer with
// probability p, as models sometimes do.
func WithOmitRate(p float64) Option {
	return func(c *config) { c.rate("WithOmitRate", p, &c.omitRate) }
}

// WithOmitIDs always leaves the given event ids out of batch answers.
func WithOmitIDs(ids ...string) Option {
	return func(c *config) {
		if c.omitIDs == nil {
			c.omitIDs = make(map[string]bool)
		}
		for _, id := range ids {
			c.omitIDs[id] = true
		}
	}
}

// ErrorStyle is the shape of the error bodies the fake sends.
type ErrorStyle int

const (
	// StyleOpenAI sends {"error":{"message","type","param","code"}}.
	StyleOpenAI ErrorStyle = iota
	// StyleTGI sends {"error":"...","error_type":"..."} like Hugging Face
	// Text Generation Inference, without OpenAI's rate-limit headers.
	StyleTGI
	// StyleHTML sends an HTML page, like a reverse proxy in front of a
	// model server.
	StyleHTML
)

// WithErrorStyle sets the shape of error bodies. The default is
// [StyleOpenAI].
func WithErrorStyle(s ErrorStyle) Option {
	return func(c *config) {
		if s < StyleOpenAI || s > StyleHTML {
			c.reject(optcheck.Call("WithErrorStyle", int(s)), "the style is unknown", "pass one of the ErrorStyle constants")
			return
		}
		c.style = s
	}
}

// SchemaMode is how the fake treats a request's response_format.
type SchemaMode int

const (
	// SchemaHonor answers bare JSON in the requested shape (the default).
	SchemaHonor SchemaMode = iota
	// SchemaIgnore ignores response_format and wraps its JSON in prose and a
	// Markdown code fence, like a model that is only prompted for JSON.
	SchemaIgnore
	// SchemaRejectJSONSchema answers 400 to response_format json_schema and
	// honours json_object, like servers without structured outputs.
	SchemaRejectJSONSchema
	// SchemaRejectAll answers 400 to any response_format.
	SchemaRejectAll
)

// WithSchemaMode sets how response_format is treated. The default is
// [SchemaHonor].
func WithSchemaMode(m SchemaMode) Option {
	return func(c *config) {
		if m < SchemaHonor || m > SchemaRejectAll {
			c.reject(optcheck.Call("WithSchemaMode", int(m)), "the mode is unknown", "pass one of the SchemaMode constants")
			return
		}
		c.schemaMode = m
	}
}

// WithAPIKey makes the fake demand "Authorization: Bearer key" and answer
// 401 otherwise.
func WithAPIKey(key string) Option {
	return func(c *config) {
		if key == "" {
			c.reject(optcheck.Call("WithAPIKey", key), "the key is empty", "pass the key clients must send, or leave the option out to accept any")
			return
		}
		c.apiKey = key
	}
}

// WithSeed seeds the random choices (latency, error, hang, malformed and
// omit rates). The default seed is 1, so runs repeat.
func WithSeed(seed uint64) Option {
	return func(c *config) { c.seed = seed }
}

// WithModels sets the models GET /v1/models lists, and makes completions
// for any other model fail with 404 model_not_found. By default the list is
// "llmtest" and every model name is accepted.
func WithModels(names ...string) Option {
	return func(c *config) {
		if len(names) == 0 {
			c.reject("WithModels()", "the list is empty", "pass at least one model name, or leave the option out to serve any")
			return
		}
		c.models = names
		c.anyModel = false
	}
}

// WithRejectedField makes the server refuse, with 400, every completion
// request that carries the named top-level field, as real servers do:
// reasoning models refuse "max_tokens" (code unsupported_parameter, "use
// max_completion_tokens instead"), and older servers refuse fields they do
// not know, such as "max_completion_tokens". It may be given more than
// once.
func WithRejectedField(name string) Option {
	return func(c *config) {
		if name == "" {
			c.reject(`WithRejectedField("")`, "the field name is empty", "name a request field, such as max_tokens")
			return
		}
		c.rejectFields = append(c.rejectFields, name)
	}
}

// WithoutModelList makes GET /v1/models answer 404, like servers that do
// not offer it.
func WithoutModelList() Option {
	return func(c *config) { c.noModelList = true }
}
