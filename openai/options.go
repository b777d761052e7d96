package openai

import (
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/enrichcache"
	"github.com/sluicehq/sluice/internal/optcheck"
	"github.com/sluicehq/sluice/jsonenrich"
)

// DefaultBaseURL is OpenAI's API base URL.
const DefaultBaseURL = "https://api.openai.com/v1"

// Defaults of the options.
const (
	DefaultTimeout          = 60 * time.Second
	DefaultMaxTokens        = 512
	DefaultMaxResponseBytes = 4 << 20
	DefaultMaxBatch         = 32
	DefaultMaxConnections   = 256
)

// Option configures an [Enricher]. Every option checks its argument; [New]
// reports every bad one at once, joined, each matching
// [sluice.ErrInvalidConfig] and reading "openai: WithX(value): what is
// wrong; what to do".
type Option func(*config)

type config struct {
	baseURL     string
	apiKey      secret
	apiKeyEnv   string
	headers     http.Header
	temperature *float64
	maxTokens   int
	tokenField  TokenField
	timeout     time.Duration
	maxBody     int64
	maxBatch    int
	maxConc     int
	adaptive    bool
	output      OutputMode
	key         string
	logger      *slog.Logger
	httpClient  *http.Client
	cache       enrichcache.Cache
	prices      *Prices
	budget      *Budget
	usageHeader string
	observers   []CallObserver
	now         func() time.Time
	errs        optcheck.Errors
}

func defaultConfig() config {
	return config{
		baseURL:   DefaultBaseURL,
		maxTokens: DefaultMaxTokens,
		timeout:   DefaultTimeout,
		maxBody:   DefaultMaxResponseBytes,
		maxBatch:  DefaultMaxBatch,
		key:       jsonenrich.DefaultKey,
		now:       time.Now,
		errs:      optcheck.New("openai", sluice.ErrInvalidConfig),
	}
}

// reject records a bad option; see [optcheck.Errors.Reject].
func (c *config) reject(option, problem, fix string) { c.errs.Reject(option, problem, fix) }

// WithBaseURL sets the API's base URL, the part before /chat/completions:
// "https://api.openai.com/v1" (the default), "http://localhost:11434/v1"
// for Ollama, "http://localhost:8000/v1" for vLLM, a LiteLLM proxy's URL,
// and so on. It is never read from the environment.
func WithBaseURL(u string) Option {
	return func(c *config) {
		p, err := url.Parse(u)
		if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			c.reject(optcheck.Call("WithBaseURL", redactURL(u)), "the URL is not an absolute http or https URL", "pass the part before /chat/completions, such as http://localhost:11434/v1")
			return
		}
		c.baseURL = strings.TrimRight(u, "/")
	}
}

// WithAPIKeyEnv reads the API key, sent as "Authorization: Bearer <key>",
// from the environment variable name when [New] runs. New fails if the
// variable is unset or empty. The key is never logged nor put in errors.
// Without this option or [WithAPIKey] no Authorization header is sent,
// which suits local servers.
func WithAPIKeyEnv(name string) Option {
	return func(c *config) {
		if name == "" {
			c.reject(optcheck.Call("WithAPIKeyEnv", name), "the variable name is empty", "name the environment variable that holds the key, such as OPENAI_API_KEY")
			return
		}
		c.apiKeyEnv = name
		v, ok := os.LookupEnv(name)
		if !ok || strings.TrimSpace(v) == "" {
			c.reject(optcheck.Call("WithAPIKeyEnv", name), "the environment variable is unset or empty", "set it, or use WithAPIKey")
			return
		}
		c.apiKey = newSecret(strings.TrimSpace(v))
	}
}

// WithAPIKey sets the API key directly, for keys that come from a secret
// manager rather than the environment. Prefer [WithAPIKeyEnv].
func WithAPIKey(key string) Option {
	return func(c *config) {
		if strings.TrimSpace(key) == "" {
			c.reject(`WithAPIKey("")`, "the key is empty", "pass the key, or leave the option out for a server that needs none")
			return
		}
		c.apiKey = newSecret(strings.TrimSpace(key))
	}
}

// WithHeader adds a header to every request, for example a proxy's routing
// header or Azure's "api-key". Header values are never logged.
func WithHeader(key, value string) Option {
	return func(c *config) {
		if key == "" || strings.ContainsAny(key, " \r\n:") || strings.ContainsAny(value, "\r\n") {
			c.reject(optcheck.Call("WithHeader", key, "…"), "the header name or value is malformed", "pass a valid HTTP header name and value")
			return
		}
		if c.headers == nil {
			c.headers = http.Header{}
		}
		c.headers.Add(key, value)
	}
}

// WithTemperature sets the sampling temperature. By default none is sent
// and the server's default applies; 0 makes most models as repeatable as
// they can be, which suits classification.
func WithTemperature(t float64) Option {
	return func(c *config) {
		if math.IsNaN(t) || t < 0 || t > 2 {
			c.reject(optcheck.Call("WithTemperature", t), "the temperature is outside [0, 2]", "pass a value between 0 and 2, or leave the option out for the server's default")
			return
		}
		c.temperature = &t
	}
}

// WithMaxTokens caps the tokens of one event's answer (sent as
// max_completion_tokens or max_tokens, see [WithTokenField]); a batch call
// asks for this many per event. The default is 512. An answer cut off
// at the cap is retried once, then dead-lettered.
func WithMaxTokens(n int) Option {
	return func(c *config) {
		if n < 1 {
			c.reject(optcheck.Call("WithMaxTokens", n), "the limit is below 1", "pass at least 1; the default is 512")
			return
		}
		c.maxTokens = n
	}
}

// TokenField is the request field that carries the answer's token cap
// ([WithMaxTokens]).
type TokenField int

const (
	// TokenFieldAuto sends max_completion_tokens, OpenAI's current field
	// (reasoning models refuse the deprecated max_tokens with a 400), and
	// switches to max_tokens for good, with a warning, when the server
	// rejects max_completion_tokens with a 400 or 422 that names it. It is
	// the default.
	TokenFieldAuto TokenField = iota
	// TokenFieldMaxCompletionTokens always sends max_completion_tokens.
	TokenFieldMaxCompletionTokens
	// TokenFieldMaxTokens always sends max_tokens, for servers that know
	// only that field. Use it for a server that silently ignores fields it
	// does not know (such a server would ignore the cap in
	// max_completion_tokens rather than reject it).
	TokenFieldMaxTokens
)

// String names the field the mode sends.
func (f TokenField) String() string {
	switch f {
	case TokenFieldAuto:
		return "auto"
	case TokenFieldMaxCompletionTokens:
		return "max_completion_tokens"
	case TokenFieldMaxTokens:
		return "max_tokens"
	}
	return fmt.Sprintf("TokenField(%d)", int(f))
}

// WithTokenField sets the request field that carries the token cap; see
// [TokenField]. The default is [TokenFieldAuto].
func WithTokenField(f TokenField) Option {
	return func(c *config) {
		if f < TokenFieldAuto || f > TokenFieldMaxTokens {
			c.reject(optcheck.Call("WithTokenField", int(f)), "the field is unknown", "pass one of the TokenField constants")
			return
		}
		c.tokenField = f
	}
}

// WithTimeout bounds each HTTP request, from sending it to reading the whole
// answer. A timed-out call is a transient failure. The default is 60s.
func WithTimeout(d time.Duration) Option {
	return func(c *config) {
		if d <= 0 {
			c.reject(optcheck.Call("WithTimeout", d), "the timeout is not positive", "pass a positive duration; the default is 60s")
			return
		}
		c.timeout = d
	}
}

// WithMaxResponseBytes bounds how much of a response body is read. A larger
// answer is rejected. The default is 4 MiB.
func WithMaxResponseBytes(n int64) Option {
	return func(c *config) {
		if n < 1024 {
			c.reject(optcheck.Call("WithMaxResponseBytes", n), "the limit is below 1024", "pass at least 1024; the default is 4 MiB")
			return
		}
		c.maxBody = n
	}
}

// WithMaxBatch caps how many events one batch call carries; larger inputs
// to EnrichBatch are split. The default is 32.
func WithMaxBatch(n int) Option {
	return func(c *config) {
		if n < 1 {
			c.reject(optcheck.Call("WithMaxBatch", n), "the batch size is below 1", "pass at least 1; the default is 32")
			return
		}
		c.maxBatch = n
	}
}

// WithMaxConcurrency caps the model calls the Enricher has in flight at
// once, across all callers, and sizes the connection pool to match. 0 (the
// default) leaves the cap to the pipeline's concurrency.
func WithMaxConcurrency(n int) Option {
	return func(c *config) {
		if n < 0 {
			c.reject(optcheck.Call("WithMaxConcurrency", n), "the limit is negative", "pass 0 for no limit of the enricher's own")
			return
		}
		c.maxConc = n
	}
}

// WithAdaptiveConcurrency keeps an AIMD limit on calls in flight, between 1
// and the [WithMaxConcurrency] maximum (which it needs): a 429, a 503 or a
// timeout halves the limit, and each success raises it by 1/limit, so about
// one per round of calls. It suits servers that queue requests instead of
// refusing them (vLLM, llama.cpp, Ollama). Off by default.
func WithAdaptiveConcurrency() Option {
	return func(c *config) { c.adaptive = true }
}

// OutputMode is how the Enricher asks for structured output.
type OutputMode int

const (
	// OutputAuto asks for strict json_schema and, when the server rejects
	// response_format with 400 or 422, falls back to json_object and then to
	// the prompt alone, remembering what worked. It is the default.
	OutputAuto OutputMode = iota
	// OutputJSONSchema always sends response_format json_schema.
	OutputJSONSchema
	// OutputJSONObject always sends response_format json_object, with the
	// schema in the prompt.
	OutputJSONObject
	// OutputPromptOnly sends no response_format, with the schema in the
	// prompt.
	OutputPromptOnly
)

// String names the mode.
func (m OutputMode) String() string {
	switch m {
	case OutputAuto:
		return "auto"
	case OutputJSONSchema:
		return "json_schema"
	case OutputJSONObject:
		return "json_object"
	case OutputPromptOnly:
		return "prompt_only"
	}
	return fmt.Sprintf("OutputMode(%d)", int(m))
}

// WithOutputMode sets how structured output is requested. Whatever the
// mode, every answer is validated against the task's schema.
func WithOutputMode(m OutputMode) Option {
	return func(c *config) {
		if m < OutputAuto || m > OutputPromptOnly {
			c.reject(optcheck.Call("WithOutputMode", int(m)), "the mode is unknown", "pass one of the OutputMode constants")
			return
		}
		c.output = m
	}
}

// WithEnrichmentKey sets the top-level key the enrichment is stored under.
// The default is jsonenrich.DefaultKey ("ai_enrichment").
func WithEnrichmentKey(key string) Option {
	return func(c *config) {
		if key == "" {
			c.reject(optcheck.Call("WithEnrichmentKey", key), "the key is empty", "name the JSON member the result goes under, or leave the option out")
			return
		}
		c.key = key
	}
}

// WithLogger sets the logger. The default is slog.Default().
func WithLogger(l *slog.Logger) Option {
	return func(c *config) {
		if l == nil {
			c.reject("WithLogger(nil)", "the logger is nil", "pass a *slog.Logger, or leave the option out for slog.Default()")
			return
		}
		c.logger = l
	}
}

// WithCache puts c in front of the model: an event whose model, task
// prompt, output schema and extracted texts were answered before gets the
// stored enrichment, byte for byte (the same ai_enrichment, hash included),
// without a call. Answers are stored once validated; failed calls are not.
// The cache's errors never fail an event: they count as misses and are
// logged at most every 10 seconds. Use [enrichcache.NewMemory] in one
// process, or rediscache for a fleet of instances.
func WithCache(c enrichcache.Cache) Option {
	return func(cfg *config) {
		if c == nil {
			cfg.reject("WithCache(nil)", "the cache is nil", "leave the option out to call the model for every event")
			return
		}
		cfg.cache = c
	}
}

// WithPrices sets what the model costs, in US dollars per million tokens,
// so that the Enricher reports the cost of each event (in the usage header,
// see [WithUsageHeader]) and in total ([Enricher.Usage], health), and so
// that a [Budget] can bound spending.
func WithPrices(p Prices) Option {
	return func(c *config) {
		for name, v := range map[string]float64{"Prompt": p.Prompt, "CachedPrompt": p.CachedPrompt, "Completion": p.Completion} {
			if v < 0 || math.IsNaN(v) || math.IsInf(v, 0) {
				c.reject(fmt.Sprintf("WithPrices(%s: %v)", name, v), "a price is negative or not a number", "pass US dollars per million tokens, such as 0.15")
				return
			}
		}
		c.prices = &p
	}
}

// WithBudget bounds the model's tokens or cost per period; see [Budget].
// A USD budget needs [WithPrices].
func WithBudget(b Budget) Option {
	return func(c *config) {
		call := fmt.Sprintf("WithBudget(Tokens: %d, USD: %v, Per: %s)", b.Tokens, b.USD, b.Per)
		switch {
		case b.Per < time.Minute:
			c.reject(call, "the period is shorter than a minute", "pass Per: time.Hour or 24 * time.Hour")
		case b.Tokens < 0 || b.USD < 0 || math.IsNaN(b.USD) || (b.Tokens == 0 && b.USD == 0):
			c.reject(call, "it bounds nothing", "set Tokens, USD or both to a positive value")
		default:
			c.budget = &b
		}
	}
}

// WithUsageHeader adds a header named name to every enriched event, holding
// the event's model usage as JSON: {"prompt_tokens":…,"completion_tokens":…}
// plus "cached_tokens" when the provider reports them and "cost_usd" with
// [WithPrices]. A batched call's usage is split evenly among its events; a
// cache hit shows 0 tokens.
func WithUsageHeader(name string) Option {
	return func(c *config) {
		if name == "" {
			c.reject(`WithUsageHeader("")`, "the header name is empty", "pass a name such as \"ai_usage\"")
			return
		}
		c.usageHeader = name
	}
}

// CallObserver is told about every completion request the Enricher sends,
// for metrics; the metrics package's ModelCalls is one. ModelCall runs on
// the caller's goroutine and must be fast.
type CallObserver interface {
	// ModelCall reports one request: the HTTP status, or 0 when no
	// response came (a timeout, a refused connection, a cancelled call);
	// how long it took, to the end of reading the body; and the prompt and
	// completion tokens that the usage field of a 200 answer reports.
	ModelCall(status int, latency time.Duration, promptTokens, completionTokens int64)
}

// WithCallObserver registers o to be told about every completion request.
// It may be given more than once; every observer is told.
func WithCallObserver(o CallObserver) Option {
	return func(c *config) {
		if o == nil {
			c.reject("WithCallObserver(nil)", "the observer is nil", "pass a CallObserver, such as metrics.NewModelCalls's")
			return
		}
		c.observers = append(c.observers, o)
	}
}

// WithHTTPClient replaces the HTTP client, for custom TLS or proxies. The
// client's own Timeout should be zero or above [WithTimeout]. By default a
// dedicated client is built whose transport keeps enough idle connections
// per host for the concurrency.
func WithHTTPClient(hc *http.Client) Option {
	return func(c *config) {
		if hc == nil {
			c.reject("WithHTTPClient(nil)", "the client is nil", "pass an *http.Client, or leave the option out for the default")
			return
		}
		c.httpClient = hc
	}
}

// withClock replaces time.Now, for tests of HTTP-date Retry-After values.
func withClock(now func() time.Time) Option {
	return func(c *config) { c.now = now }
}

// secret holds an API key. Every way of printing it prints a placeholder;
// the key sits behind a pointer so that even fmt's %+v of a struct holding
// it, which skips String methods of unexported fields, prints an address.
type secret struct{ v *string }

const redacted = "[REDACTED]"

func newSecret(s string) secret { return secret{v: &s} }

func (k secret) empty() bool   { return k.v == nil || *k.v == "" }
func (k secret) value() string { return *k.v }

func (secret) String() string               { return redacted }
func (secret) GoString() string             { return redacted }
func (secret) LogValue() slog.Value         { return slog.StringValue(redacted) }
func (secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// scrub removes the key from s.
func (k secret) scrub(s string) string {
	if k.empty() || len(*k.v) < 4 {
		return s
	}
	return strings.ReplaceAll(s, *k.v, redacted)
}

// redactURL drops the user info of a URL for messages.
func redactURL(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "<unparsable URL>"
	}
	return p.Redacted()
}
