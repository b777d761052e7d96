package service

import (
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/openai"
)

// tuning holds the flags that reach the library's model and pipeline
// features beyond the basics: batching, adaptive concurrency, the window, a
// custom task, sampling, extra request headers, the start position, key
// ordering, prices, the budget and the usage header.
type tuning struct {
	BatchSize       int
	Adaptive        bool
	MaxInFlight     int
	TaskName        string
	TaskPromptFile  string
	TaskSchemaFile  string
	Temperature     float64 // negative: the server's default
	Headers         headerList
	StartAt         string
	KeyOrdering     bool
	PricePrompt     float64
	PriceCached     float64
	PriceCompletion float64
	BudgetTokens    int64
	BudgetUSD       float64
	BudgetPer       time.Duration
	UsageHeader     string
	TokenField      string
}

func (t *tuning) register(fs *flag.FlagSet) {
	fs.IntVar(&t.BatchSize, "batch-size", 1, "events per model call (1: one call per event); a failed event in a batch is asked again alone")
	fs.BoolVar(&t.Adaptive, "adaptive-concurrency", false, "let the model client move its calls in flight between 1 and -concurrency, backing off on 429s and timeouts")
	fs.IntVar(&t.MaxInFlight, "max-in-flight", 0, "pin the window of events fetched but not yet acked (0: adaptive, see the configuration doc)")
	fs.StringVar(&t.TaskName, "task-name", "custom", "name of the custom task (-task custom), shown in ai_enrichment.task")
	fs.StringVar(&t.TaskPromptFile, "task-prompt-file", "", "`file` with the custom task's prompt, a Go text/template over the text fields (-task custom)")
	fs.StringVar(&t.TaskSchemaFile, "task-schema-file", "", "`file` with the JSON Schema the custom task's answer must match (-task custom)")
	fs.Float64Var(&t.Temperature, "temperature", -1, "sampling temperature, 0 to 2 (negative: the server's default)")
	fs.Var(&t.Headers, "model-header", "extra HTTP `header` of every model request, \"Name: value\" (repeatable; a value env:VAR reads variable VAR, for keys such as Azure's api-key)")
	fs.StringVar(&t.StartAt, "start-at", "oldest", "where a new consumer group starts: oldest (the backlog) or newest (only new events)")
	fs.BoolVar(&t.KeyOrdering, "key-ordering", false, "events sharing a key are enriched one at a time, in order")
	fs.Float64Var(&t.PricePrompt, "price-prompt", 0, "model price, US `dollars` per million prompt tokens (for cost figures and -budget-usd)")
	fs.Float64Var(&t.PriceCached, "price-cached", 0, "US `dollars` per million cached prompt tokens (0: -price-prompt)")
	fs.Float64Var(&t.PriceCompletion, "price-completion", 0, "US `dollars` per million completion tokens")
	fs.Int64Var(&t.BudgetTokens, "budget-tokens", 0, "most model `tokens` per -budget-per; once spent, consumption pauses until the next period (0: none)")
	fs.Float64Var(&t.BudgetUSD, "budget-usd", 0, "most US `dollars` per -budget-per, at the -price-* flags (0: none)")
	fs.DurationVar(&t.BudgetPer, "budget-per", 24*time.Hour, "the budget's period, aligned on the clock (1h: each hour; 24h: each day from midnight UTC)")
	fs.StringVar(&t.TokenField, "token-field", "auto", "request `field` of the token cap: auto (max_completion_tokens, then max_tokens if the server refuses it), max_completion_tokens, or max_tokens for servers that know only that one")
	fs.StringVar(&t.UsageHeader, "usage-header", "", "output `header` that carries each event's tokens and cost as JSON (empty: none)")
}

func (t *tuning) validate(c *config, bad func(string, ...any)) {
	if t.BatchSize < 1 {
		bad("-batch-size %d: must be at least 1", t.BatchSize)
	}
	if t.MaxInFlight < 0 {
		bad("-max-in-flight %d: must be 0 (adaptive) or more", t.MaxInFlight)
	}
	if c.Task == "custom" && (t.TaskPromptFile == "" || t.TaskSchemaFile == "") {
		bad("-task custom: needs -task-prompt-file and -task-schema-file")
	}
	if c.Task != "custom" && (t.TaskPromptFile != "" || t.TaskSchemaFile != "") {
		bad("-task-prompt-file and -task-schema-file: only with -task custom")
	}
	if t.Temperature > 2 || math.IsNaN(t.Temperature) {
		bad("-temperature %v: must be between 0 and 2, or negative for the server's default", t.Temperature)
	}
	switch t.StartAt {
	case "oldest", "newest":
	default:
		bad("-start-at %q: must be oldest or newest", t.StartAt)
	}
	for name, v := range map[string]float64{"-price-prompt": t.PricePrompt, "-price-cached": t.PriceCached, "-price-completion": t.PriceCompletion, "-budget-usd": t.BudgetUSD} {
		if v < 0 || math.IsNaN(v) || math.IsInf(v, 0) {
			bad("%s %v: must be 0 or more", name, v)
		}
	}
	if _, ok := tokenFields[t.TokenField]; !ok {
		bad("-token-field %q: must be auto, max_completion_tokens or max_tokens", t.TokenField)
	}
	if t.BudgetTokens < 0 {
		bad("-budget-tokens %d: must be 0 or more", t.BudgetTokens)
	}
	if t.BudgetUSD > 0 && !t.priced() {
		bad("-budget-usd: needs the model's prices (-price-prompt, -price-completion)")
	}
	if (t.BudgetTokens > 0 || t.BudgetUSD > 0) && t.BudgetPer < time.Minute {
		bad("-budget-per %s: must be at least 1m", t.BudgetPer)
	}
	for _, h := range t.Headers {
		if _, err := h.resolve(); err != nil {
			bad("-model-header %q: %v", h.name, err)
		}
	}
}

func (t *tuning) priced() bool {
	return t.PricePrompt > 0 || t.PriceCompletion > 0 || t.PriceCached > 0
}

// task builds the custom task from its files.
func (t *tuning) task() (openai.Task, error) {
	prompt, err := os.ReadFile(t.TaskPromptFile)
	if err != nil {
		return openai.Task{}, fmt.Errorf("%w: -task-prompt-file: %w", errUsage, err)
	}
	schema, err := os.ReadFile(t.TaskSchemaFile)
	if err != nil {
		return openai.Task{}, fmt.Errorf("%w: -task-schema-file: %w", errUsage, err)
	}
	if !json.Valid(schema) {
		return openai.Task{}, fmt.Errorf("%w: -task-schema-file %s: not JSON", errUsage, t.TaskSchemaFile)
	}
	return openai.CustomTask(t.TaskName, string(prompt), schema)
}

// openaiOptions are the model client's options the flags ask for.
func (t *tuning) openaiOptions(c *config) []openai.Option {
	var opts []openai.Option
	if t.BatchSize > 1 {
		opts = append(opts, openai.WithMaxBatch(t.BatchSize))
	}
	if t.Adaptive {
		opts = append(opts, openai.WithAdaptiveConcurrency(), openai.WithMaxConcurrency(c.Concurrency))
	}
	if t.Temperature >= 0 {
		opts = append(opts, openai.WithTemperature(t.Temperature))
	}
	for _, h := range t.Headers {
		v, _ := h.resolve()
		opts = append(opts, openai.WithHeader(h.name, v))
	}
	if t.priced() {
		opts = append(opts, openai.WithPrices(openai.Prices{Prompt: t.PricePrompt, CachedPrompt: t.PriceCached, Completion: t.PriceCompletion}))
	}
	if t.BudgetTokens > 0 || t.BudgetUSD > 0 {
		opts = append(opts, openai.WithBudget(openai.Budget{Tokens: t.BudgetTokens, USD: t.BudgetUSD, Per: t.BudgetPer}))
	}
	if t.UsageHeader != "" {
		opts = append(opts, openai.WithUsageHeader(t.UsageHeader))
	}
	if f := tokenFields[t.TokenField]; f != openai.TokenFieldAuto {
		opts = append(opts, openai.WithTokenField(f))
	}
	return opts
}

// tokenFields are the values of -token-field.
var tokenFields = map[string]openai.TokenField{
	"auto":                  openai.TokenFieldAuto,
	"max_completion_tokens": openai.TokenFieldMaxCompletionTokens,
	"max_tokens":            openai.TokenFieldMaxTokens,
}

// pipelineOptions are the pipeline's options the flags ask for.
func (t *tuning) pipelineOptions() []sluice.Option {
	var opts []sluice.Option
	if t.BatchSize > 1 {
		opts = append(opts, sluice.WithEnrichBatch(t.BatchSize))
	}
	if t.MaxInFlight > 0 {
		opts = append(opts, sluice.WithMaxInFlight(t.MaxInFlight))
	}
	if t.KeyOrdering {
		opts = append(opts, sluice.WithKeyOrdering())
	}
	return opts
}

func (t *tuning) redacted(m map[string]any) {
	m["batch_size"], m["adaptive_concurrency"], m["max_in_flight"] = t.BatchSize, t.Adaptive, t.MaxInFlight
	m["start_at"], m["key_ordering"], m["token_field"] = t.StartAt, t.KeyOrdering, t.TokenField
	if t.Temperature >= 0 {
		m["temperature"] = t.Temperature
	}
	if t.TaskPromptFile != "" {
		m["task_name"], m["task_prompt_file"], m["task_schema_file"] = t.TaskName, t.TaskPromptFile, t.TaskSchemaFile
	}
	if len(t.Headers) > 0 {
		names := make([]string, len(t.Headers))
		for i, h := range t.Headers {
			names[i] = h.name + ": (redacted)"
		}
		m["model_headers"] = names
	}
	if t.priced() {
		m["prices_per_million"] = fmt.Sprintf("prompt %v, cached %v, completion %v", t.PricePrompt, t.PriceCached, t.PriceCompletion)
	}
	if t.BudgetTokens > 0 || t.BudgetUSD > 0 {
		m["budget"] = fmt.Sprintf("%d tokens, $%v per %s", t.BudgetTokens, t.BudgetUSD, t.BudgetPer)
	}
	if t.UsageHeader != "" {
		m["usage_header"] = t.UsageHeader
	}
}

// header is one -model-header.
type header struct{ name, value string }

// resolve returns the header's value, read from the environment for
// env:VAR.
func (h header) resolve() (string, error) {
	if v, ok := strings.CutPrefix(h.value, "env:"); ok {
		s := os.Getenv(v)
		if s == "" {
			return "", fmt.Errorf("variable %s is not set", v)
		}
		return s, nil
	}
	return h.value, nil
}

// headerList is a repeatable flag of "Name: value" headers.
type headerList []header

func (l *headerList) String() string {
	names := make([]string, len(*l))
	for i, h := range *l {
		names[i] = h.name
	}
	return strings.Join(names, ", ")
}

func (l *headerList) Set(s string) error {
	name, value, ok := strings.Cut(s, ":")
	name, value = strings.TrimSpace(name), strings.TrimSpace(value)
	if !ok || name == "" || strings.ContainsAny(name, " \t\r\n") || strings.ContainsAny(value, "\r\n") {
		return fmt.Errorf("want \"Name: value\", such as \"api-key: env:AZURE_OPENAI_KEY\"")
	}
	*l = append(*l, header{name: http.CanonicalHeaderKey(name), value: value})
	return nil
}
