// Package service is the enrich-service command as a library: [Main] is the
// whole program, and the main package of examples/enrich-service only calls
// it. A build with extras that the root module must not depend on, such as
// OpenTelemetry tracing (otel/examples/enrich-service), calls Main with an
// [Extension] that adds pipeline and enricher options.
package service

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/enrichcache"
	"github.com/sluicehq/sluice/metrics"
	"github.com/sluicehq/sluice/openai"
)

// Main runs the service with the command-line arguments args (without the
// program name) and returns the exit status.
func Main(args []string, stdout, stderr io.Writer, opts ...Option) int {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	return run(args, stdout, stderr, &o)
}

func run(args []string, stdout, stderr io.Writer, o *options) int {
	cfg, err := parseConfig(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		if !errors.Is(err, errParse) {
			fmt.Fprintln(stderr, "sluice-enrich:", err)
		}
		return exitConfig
	}
	if cfg.showVersion {
		fmt.Fprintf(stdout, "sluice-enrich %s (%s %s/%s)\n", buildVersion(o.version), runtime.Version(), runtime.GOOS, runtime.GOARCH)
		return exitOK
	}
	log := newLogger(cfg, stderr)
	slog.SetDefault(log)

	exe, err := os.Executable()
	if err != nil {
		exe = "unknown: " + err.Error()
	}
	log.Info("starting sluice-enrich", "version", buildVersion(o.version), "go", runtime.Version(), "binary", exe, "pid", os.Getpid())
	log.Info("configuration", "config", cfg.redacted())
	warnStopBudget(cfg, log)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go func() {
		<-ctx.Done()
		// Stop catching signals: a second one kills the process at once.
		stop()
	}()

	code, err := serve(ctx, cfg, log, o)
	if err != nil {
		log.Error("sluice-enrich stopped", "err", err, "exit_status", code)
	} else {
		log.Info("sluice-enrich stopped", "exit_status", code)
	}
	return code
}

func serve(ctx context.Context, cfg *config, log *slog.Logger, o *options) (int, error) {
	extra, err := o.extend(ctx, cfg, log)
	if err != nil {
		return exitConfig, err
	}
	defer extra.close(log)
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	cache, closeCache, err := newCache(cfg, reg, log)
	if err != nil {
		return exitConfig, err
	}
	defer closeCache()
	calls, err := metrics.NewModelCalls(reg)
	if err != nil {
		return exitFailure, err
	}
	enr, err := newEnricher(cfg, cache, log, append([]openai.Option{openai.WithCallObserver(calls)}, extra.Enricher...)...)
	if err != nil {
		return exitConfig, err
	}
	defer enr.Close()
	usage := func() metrics.Usage {
		u := enr.Usage()
		return metrics.Usage{Events: u.Events, CachedPromptTokens: u.CachedTokens, CostUSD: u.CostUSD}
	}
	if err := metrics.ExportUsage(reg, usage, cfg.Tuning.priced()); err != nil {
		return exitFailure, err
	}

	if cfg.SkipPreflight {
		log.Warn("preflight skipped (-skip-preflight): a wrong model URL, name or parameter shows only once events fail; the breaker stops the service after -breaker of them", "breaker", cfg.Breaker)
	} else if err := preflight(ctx, enr, cfg.PreflightWait, log); err != nil {
		if ctx.Err() != nil {
			return exitOK, nil // stopped during the preflight; nothing was consumed
		}
		return preflightStatus(err), fmt.Errorf("preflight failed, nothing was consumed: %w", err)
	}

	ps, err := connect(ctx, cfg, log)
	if err != nil {
		if hint, ok := refusal(err); ok {
			return exitConfig, fmt.Errorf("%w: %s: %w", errUsage, hint, err)
		}
		return exitFailure, err
	}
	defer closeWithin(ps, log)

	opts := []sluice.Option{
		sluice.WithConcurrency(cfg.Concurrency),
		sluice.WithRetries(cfg.Retries),
		sluice.WithMaxRateLimitDuration(cfg.MaxRateLimitDuration),
		sluice.WithDrainTimeout(cfg.DrainTimeout),
		sluice.WithFlushTimeout(cfg.FlushTimeout),
		sluice.WithBreaker(cfg.Breaker),
		metrics.Export(reg),
		sluice.WithLogger(log),
	}
	opts = append(opts, cfg.Tuning.pipelineOptions()...)
	opts = append(opts, extra.Pipeline...)
	if cfg.RateLimit > 0 {
		// A burst of one second's worth, so that a quiet spell is not
		// followed by more than the quota allows in a second.
		opts = append(opts, sluice.WithRateLimit(cfg.RateLimit, max(1, int(math.Ceil(cfg.RateLimit)))))
	}
	p, err := sluice.New(ps.src, enr, ps.sink, opts...)
	if err != nil {
		return exitConfig, err
	}

	ln, err := net.Listen("tcp", cfg.HealthAddr)
	if err != nil {
		return exitFailure, fmt.Errorf("health endpoint: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.Handle("/", p.Handler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("health endpoint", "err", err)
		}
	}()
	log.Info("serving /healthz, /livez, /readyz and /metrics", "addr", ln.Addr().String())

	runDone := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			log.Info("signal received: draining in-flight events", "drain_timeout", cfg.DrainTimeout.String(), "stop_budget", cfg.stopBudget().String())
		case <-runDone:
		}
	}()
	runErr := p.Run(ctx)
	close(runDone)
	st := p.Stats()
	log.Info("pipeline stopped", "received", st.Received, "enriched", st.Enriched,
		"dead_lettered", st.DeadLettered, "retried", st.Retried, "rate_limit_pauses", st.RateLimitPauses)

	sctx, cancel := context.WithTimeout(context.Background(), httpShutdownTimeout)
	defer cancel()
	_ = srv.Shutdown(sctx)
	if hint, ok := refusal(runErr); ok {
		// The broker refused a write, such as a dead letter, for its
		// ACLs: the event stays unacked and the configuration must change.
		return exitConfig, fmt.Errorf("%w: %s: %w", errUsage, hint, runErr)
	}
	return runStatus(runErr), runErr
}

// closeWithin closes the broker connections, waiting at most closeTimeout:
// everything acked was flushed already, and the stop must fit its budget.
func closeWithin(ps *parts, log *slog.Logger) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		ps.close(log)
	}()
	t := time.NewTimer(closeTimeout)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		log.Warn("closing the broker connections takes too long; exiting without waiting", "waited", closeTimeout.String())
	}
}

func newEnricher(cfg *config, cache enrichcache.Cache, log *slog.Logger, extra ...openai.Option) (*openai.Enricher, error) {
	var task openai.Task
	switch cfg.Task {
	case "sentiment":
		task = openai.Sentiment()
	case "entities":
		task = openai.Entities()
	case "translate":
		task = openai.Translate(cfg.Language)
	case "spam":
		task = openai.Spam()
	case "custom":
		t, err := cfg.Tuning.task()
		if err != nil {
			return nil, err
		}
		task = t
	}
	opts := []openai.Option{
		openai.WithBaseURL(cfg.ModelURL),
		openai.WithTimeout(cfg.ModelTimeout),
		openai.WithLogger(log),
	}
	switch {
	case cfg.apiKey == "":
	case cfg.apiKeyFromEnv:
		opts = append(opts, openai.WithAPIKeyEnv(envAPIKey))
	default:
		opts = append(opts, openai.WithAPIKey(cfg.apiKey)) // the credential model-api-key
	}
	if cache != nil {
		opts = append(opts, openai.WithCache(cache))
	}
	opts = append(opts, cfg.Tuning.openaiOptions(cfg)...)
	opts = append(opts, extra...)
	return openai.New(cfg.Model, task, cfg.Fields, opts...)
}

func newLogger(cfg *config, w io.Writer) *slog.Logger {
	level, _ := parseLevel(cfg.LogLevel) // validated
	ho := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, ho))
	}
	return slog.New(slog.NewTextHandler(w, ho))
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	err := l.UnmarshalText([]byte(s))
	return l, err
}
