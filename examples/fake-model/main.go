// Command fake-model serves a fake OpenAI-compatible Chat Completions API
// (the llmtest package) on a real address, for trying out and load-testing
// a sluice service without a model or an API key.
//
//	go run ./examples/fake-model -addr 127.0.0.1:8081 -latency 20ms -rps 50
//
// It answers POST /v1/chat/completions with deterministic, schema-shaped
// answers for the sentiment, entities, translate and spam tasks, and GET
// /v1/models once it is listening. -rps and -max-concurrency enforce limits
// with 429 and Retry-After the way hosted APIs do; -error-rate and
// -malformed-rate make it fail a fraction of calls. SIGTERM or SIGINT shuts it
// down gracefully.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/sluicehq/sluice/llmtest"
)

func main() { os.Exit(run(os.Args[1:], os.Stderr)) }

func run(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("fake-model", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:8081", "listen `address`")
	latency := fs.Duration("latency", 0, "time each completion takes (e.g. 20ms)")
	jitter := fs.Duration("latency-jitter", 0, "standard deviation of the latency (normal distribution)")
	rps := fs.Float64("rps", 0, "completions per second before 429 + Retry-After (0 = off)")
	burst := fs.Int("burst", 0, "token bucket size of -rps (0 = max(1, rps/10))")
	maxConc := fs.Int("max-concurrency", 0, "completions served at once before 429 (0 = off)")
	errRate := fs.Float64("error-rate", 0, "fraction of completions answered with HTTP 500")
	malformedRate := fs.Float64("malformed-rate", 0, "fraction of completions answered with content that is not JSON")
	apiKey := fs.String("api-key", "", "demand this bearer token (401 otherwise); also read from FAKE_MODEL_API_KEY")
	seed := fs.Uint64("seed", 1, "seed of the random choices")
	models := fs.String("models", "", "comma-separated model `names` to list and serve; others get 404 model_not_found (default: list llmtest, serve any)")
	rejectFields := fs.String("reject-fields", "", "comma-separated request `fields` answered with 400, as real servers refuse them (max_tokens: a reasoning model; max_completion_tokens: an older server)")
	noModelList := fs.Bool("no-model-list", false, "answer GET /v1/models with 404, like servers that do not offer it")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *apiKey == "" {
		*apiKey = os.Getenv("FAKE_MODEL_API_KEY")
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))

	opts := []llmtest.Option{
		llmtest.WithSeed(*seed),
		llmtest.WithRPS(*rps, *burst),
		llmtest.WithMaxConcurrency(*maxConc),
		llmtest.WithErrorRate(*errRate),
		llmtest.WithMalformedRate(*malformedRate),
	}
	switch {
	case *jitter > 0:
		opts = append(opts, llmtest.WithLatency(llmtest.Normal(*latency, *jitter)))
	case *latency > 0:
		opts = append(opts, llmtest.WithLatency(llmtest.Fixed(*latency)))
	}
	if *apiKey != "" {
		opts = append(opts, llmtest.WithAPIKey(*apiKey))
	}
	if names := fields(*models); len(names) > 0 {
		opts = append(opts, llmtest.WithModels(names...))
	}
	for _, f := range fields(*rejectFields) {
		opts = append(opts, llmtest.WithRejectedField(f))
	}
	if *noModelList {
		opts = append(opts, llmtest.WithoutModelList())
	}
	h, err := llmtest.NewHandler(opts...)
	if err != nil {
		fmt.Fprintln(stderr, "fake-model:", err)
		return 2
	}

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintln(stderr, "fake-model:", err)
		return 1
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	log.Info("fake model listening", "base_url", "http://"+ln.Addr().String()+"/v1",
		"latency", *latency, "rps", *rps, "max_concurrency", *maxConc,
		"error_rate", *errRate, "malformed_rate", *malformedRate, "api_key_required", *apiKey != "")

	select {
	case err := <-served:
		fmt.Fprintln(stderr, "fake-model:", err)
		return 1
	case <-ctx.Done():
	}
	stop()
	log.Info("shutting down")
	// Let requests in progress finish; release those that hang (see
	// llmtest.WithHangRate) only if they keep the shutdown waiting.
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second+*latency)
	defer cancel()
	shut := make(chan error, 1)
	go func() { shut <- srv.Shutdown(sctx) }()
	select {
	case err = <-shut:
	case <-time.After(2*time.Second + 2**latency):
		h.Close()
		err = <-shut
	}
	if err != nil {
		fmt.Fprintln(stderr, "fake-model: shutdown:", err)
		return 1
	}
	st := h.Stats()
	log.Info("stopped", "completions", st.Total, "by_status", st.ByStatus)
	return 0
}

// fields splits a comma-separated list, dropping empty items.
func fields(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
