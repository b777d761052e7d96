// Package openai enriches JSON events with a chat-completion model: OpenAI,
// or any server that speaks the OpenAI-compatible Chat Completions API, such
// as vLLM, Ollama (/v1), the llama.cpp server, LM Studio, Hugging Face TGI or
// a LiteLLM proxy.
//
// An [Enricher] pulls text fields out of each event by dot path, asks the
// model to carry out a [Task] on them, checks the answer against the task's
// JSON schema, and adds it under "ai_enrichment" (see [Enrichment]):
//
//	{"review":{"body":"Great phone"},
//	 "ai_enrichment":{"task":"sentiment","model":"gpt-4o-mini",
//	   "result":{"label":"positive","score":0.9},"hash":"sha256:…"}}
//
// Built-in tasks are [Sentiment], [Entities], [Translate] and [Spam];
// [CustomTask] takes a text/template prompt and a schema of your own.
//
// # Structured output
//
// Schemas are JSON Schema (draft 2020-12 unless $schema names another),
// compiled and enforced by a full validator, so a custom task may use every
// keyword OpenAI's strict mode accepts (anyOf, $defs and $ref within the
// schema, const, pattern, format, minItems, ...) and more.
//
// By default the Enricher asks for response_format json_schema (strict when
// the schema keeps to strict mode's rules, see [Schema.Strict]). When a server rejects that with 400 or 422, it
// falls back to json_object and then to the prompt alone, which always
// spells out the schema; see [OutputMode]. Whatever the server did, the
// answer is parsed (a Markdown code fence or surrounding prose is tolerated)
// and validated against the schema before it is stored. An answer that was
// cut off (finish_reason "length"), is not JSON, breaks the schema or is a
// refusal is asked for again once, and then fails with sluice.Permanent
// quoting the problem, so the event is dead-lettered.
//
// # Errors
//
// The HTTP status decides what the pipeline does; the body only adds detail,
// so TGI's {"error":"…","error_type":"overloaded"} and a proxy's HTML page
// classify like OpenAI's own errors:
//
//	429 rate_limit_exceeded   *sluice.RateLimitError: the pipeline pauses
//	                          for retry-after-ms, retry-after (seconds or an
//	                          HTTP date) or x-ratelimit-reset-* (see RetryAfter)
//	429 insufficient_quota    sluice.Fatal: the pipeline stops; nothing is
//	                          dead-lettered
//	503 (overloaded)          *sluice.RateLimitError when it carries
//	                          Retry-After, else transient (backoff)
//	5xx, 408, 409             transient
//	timeout, connection reset transient
//	401, 403                  sluice.Fatal, naming where the key came from
//	400, 404, 405, 422        sluice.Misconfigured (a wrong URL or model name,
//	                          a parameter or schema the server refuses), with
//	                          the class "HTTP <status> <code>" and a hint of
//	                          what to check; sluice.Permanent instead when
//	                          the error blames the event (context length,
//	                          content filter, input validation)
//	other 4xx (413, ...)      sluice.Permanent
//
// A misconfiguration is permanent, so the event is dead-lettered, but the
// pipeline's breaker (sluice.WithBreaker) stops it after 20 in a row of one
// class, instead of dead-lettering the whole input for a typo.
// A 429, a 503 and a timeout also cut the adaptive concurrency limit, when
// it is on (see [WithAdaptiveConcurrency]). Errors carry an [*APIError] with
// the status, type, code and request id.
//
// # Checking the setup
//
// [Enricher.Check] asks the server, before anything is consumed, whether
// the URL answers, the key is accepted and the model exists (GET /models
// where the server offers it, then a completion capped at one token with
// the parameters every call carries), and says what is wrong if not; its
// error matches sluice.ErrFatal, sluice.ErrMisconfigured, or neither when
// the server is down. [Enricher.Ready] reports the latest result, so a
// pipeline's /readyz follows it.
//
// The token cap ([WithMaxTokens]) is sent as max_completion_tokens, the
// field OpenAI's reasoning models require; a server that refuses that field
// gets max_tokens from then on (see [WithTokenField]).
//
// # Metrics
//
// [WithCallObserver] reports every request's status, latency and tokens,
// for the metrics package's ModelCalls.
//
// # Batches
//
// With sluice.WithEnrichBatch above 1, the pipeline calls EnrichBatch: up to
// [WithMaxBatch] events go in one call, keyed by ids, with a schema that
// requires every id. Events the answer leaves out or gets wrong are sent
// again one by one; every failure is the event's own.
//
// # Why net/http and not an SDK
//
// The Enricher speaks HTTP itself, with the standard library. The pipeline's
// behaviour hangs on details an SDK hides: it must see the status and the
// rate-limit headers of every 429 (openai-go caps a server's Retry-After and
// turns a non-OpenAI error body into a decode error); it must not retry
// behind the pipeline's back (the SDK retries twice by default, which
// multiplies load exactly when the server is overloaded, and bypasses the
// pipeline's pause); and its configuration must come only from the code
// (the SDK reads OPENAI_BASE_URL and other variables from the environment,
// so a stray variable could send events to another server). The request and
// response shapes needed are small and stable, so a dependency would buy
// little and cost a large module graph. The client reuses connections (the
// transport keeps [DefaultMaxConnections] idle connections per host, or
// [WithMaxConcurrency] if higher), honours the context for cancellation,
// bounds each request with [WithTimeout], and reads at most
// [WithMaxResponseBytes] of a response.
//
// # Secrets
//
// The API key is read from an environment variable that you name
// ([WithAPIKeyEnv]) and is never logged nor put into an error: it is
// scrubbed from server messages, and the messages of 401 and 403 answers,
// which may quote part of it, are left out.
//
// Package llmtest provides a fake server for tests.
package openai
