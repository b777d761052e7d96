// Command quickstart runs a complete sluice pipeline with no setup at all.
//
// It starts an embedded Kafka-protocol broker (or, with -source redis, an
// embedded Redis) and a fake OpenAI-compatible model server in process,
// writes 1,000 sample product reviews (a few of them malformed), and enriches
// them with the real Kafka (or Redis Streams) adapter and the real OpenAI
// enricher doing sentiment analysis. It shows its progress, prints three
// enriched events and two dead letters, and ends with the verification
// report: one JSON line that matches every input to its output or dead
// letter.
//
//	go run ./examples/quickstart
//	go run ./examples/quickstart -source redis
//	go run ./examples/quickstart -brokers 127.0.0.1:9092      # a real Kafka
//	go run ./examples/quickstart -source redis -redis-addr 127.0.0.1:6379
//
// With -model-url it calls a real OpenAI-compatible server instead of the
// fake, for example the local llama.cpp server of scripts/model.sh (a small
// model answers in tenths of a second to seconds, so send fewer events):
//
//	eval "$(scripts/model.sh start)"
//	go run ./examples/quickstart -model-url "$SLUICE_MODEL_URL" -model "$SLUICE_MODEL" \
//	    -events 40 -concurrency 2 -min-rate 0.9
//
// It exits 0 when the verification passes (see -min-rate), 1 otherwise.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/llmtest"
	"github.com/sluicehq/sluice/openai"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

type options struct {
	source      string
	brokers     string
	redisAddr   string
	events      int
	malformed   int
	concurrency int
	latency     time.Duration
	modelURL    string
	model       string
	minRate     float64
	verbose     bool
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("quickstart", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	fs.StringVar(&o.source, "source", "kafka", "broker to use: kafka or redis")
	fs.StringVar(&o.brokers, "brokers", "", "comma-separated Kafka brokers to use instead of the embedded broker")
	fs.StringVar(&o.redisAddr, "redis-addr", "", "Redis server (host:port) to use instead of the embedded one")
	fs.IntVar(&o.events, "events", 1000, "number of sample events to write")
	fs.IntVar(&o.malformed, "malformed-every", 83, "make every n-th event malformed (0: none)")
	fs.IntVar(&o.concurrency, "concurrency", 32, "model calls in flight at once")
	fs.DurationVar(&o.latency, "latency", 3*time.Millisecond, "mean latency of the fake model")
	fs.StringVar(&o.modelURL, "model-url", "", "base URL of a real OpenAI-compatible server to call instead of the fake (key from SLUICE_MODEL_API_KEY)")
	fs.StringVar(&o.model, "model", "", "model name on the -model-url server")
	fs.Float64Var(&o.minRate, "min-rate", 0.95, "lowest enrichment rate that passes verification")
	fs.BoolVar(&o.verbose, "v", false, "log what the adapters and the pipeline do")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 || (o.source != "kafka" && o.source != "redis") || o.events < 1 || o.concurrency < 1 {
		fmt.Fprintln(stderr, "quickstart: need -source kafka|redis, -events >= 1, -concurrency >= 1 and no arguments")
		return 2
	}
	if (o.modelURL == "") != (o.model == "") {
		fmt.Fprintln(stderr, "quickstart: -model-url and -model go together: the server's base URL and the model to call on it")
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := quickstart(ctx, o, stdout, stderr); err != nil {
		fmt.Fprintln(stderr, "quickstart:", err)
		return 1
	}
	return 0
}

// errVerify is returned when the run finished but did not pass verification.
var errVerify = errors.New("verification failed")

func quickstart(ctx context.Context, o options, stdout, stderr io.Writer) error {
	level := slog.LevelWarn
	if o.verbose {
		level = slog.LevelInfo
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	enr, modelDesc, err := newEnricher(o, log)
	if err != nil {
		return err
	}
	defer enr.Close()

	events, bad := sampleEvents(o.events, o.malformed)
	var b *backend
	if o.source == "kafka" {
		var brokers []string
		if o.brokers != "" {
			brokers = strings.Split(o.brokers, ",")
		}
		b, err = kafkaBackend(ctx, brokers, events, log)
	} else {
		b, err = redisBackend(ctx, o.redisAddr, events, log)
	}
	if err != nil {
		return err
	}
	defer b.close()
	fmt.Fprintf(stdout, "broker:  %s\nmodel:   %s (sentiment of review.body)\n", b.desc, modelDesc)
	fmt.Fprintf(stdout, "input:   %d events (%d malformed) in %q\n\n", len(events), bad, b.topics.Input)

	// Keep the first outputs and dead letters to show them afterwards.
	var show samples
	out := sluice.SinkFunc(func(ctx context.Context, msgs []*sluice.Message) error {
		if err := b.sink.Write(ctx, msgs); err != nil {
			return err
		}
		show.enriched(msgs)
		return nil
	})
	dlq := sluice.DeadLetterFunc(func(ctx context.Context, letters []sluice.DeadLetter) error {
		if err := b.sink.WriteDeadLetters(ctx, letters); err != nil {
			return err
		}
		show.dead(letters)
		return nil
	})
	p, err := sluice.New(b.src, enr, out, sluice.WithDeadLetter(dlq),
		sluice.WithConcurrency(o.concurrency), sluice.WithLogger(log))
	if err != nil {
		return err
	}

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- p.Run(runCtx) }()
	runErr := progress(ctx, p, len(events), start, done, cancel, stderr)
	if runErr != nil {
		return fmt.Errorf("pipeline: %w", runErr)
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}

	fmt.Fprintf(stdout, "Three enriched events (%q):\n", b.topics.Output)
	for _, v := range show.outs {
		fmt.Fprintf(stdout, "  %s\n", v)
	}
	fmt.Fprintf(stdout, "\nTwo dead letters (%q):\n", b.topics.DeadLetter)
	for _, d := range show.dls {
		fmt.Fprintf(stdout, "  %s\n    reason: %s\n", d.value, d.reason)
	}
	vctx, vcancel := context.WithTimeout(ctx, time.Minute)
	defer vcancel()
	rep, err := b.verify(vctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\nVerification (every input matched to its output or dead letter):\n%s\n", rep.JSON())
	if !rep.OK(o.minRate) {
		return fmt.Errorf("%w: enrichment_rate %.4f (need >= %.2f), missing_count %d",
			errVerify, rep.EnrichmentRate, o.minRate, rep.MissingCount)
	}
	return nil
}

// newEnricher returns the sentiment enricher: on the -model-url server, or
// on a fake model that answers deterministically after a few milliseconds,
// over real HTTP on a loopback port. Close closes the fake too.
func newEnricher(o options, log *slog.Logger) (*enricher, string, error) {
	if o.modelURL != "" {
		opts := []openai.Option{openai.WithBaseURL(o.modelURL), openai.WithLogger(log),
			openai.WithTemperature(0), openai.WithTimeout(2 * time.Minute)}
		if os.Getenv("SLUICE_MODEL_API_KEY") != "" {
			opts = append(opts, openai.WithAPIKeyEnv("SLUICE_MODEL_API_KEY"))
		}
		e, err := openai.New(o.model, openai.Sentiment(), []string{"review.body"}, opts...)
		if err != nil {
			return nil, "", err
		}
		return &enricher{Enricher: e}, fmt.Sprintf("%s at %s", o.model, o.modelURL), nil
	}
	model := llmtest.NewServer(llmtest.WithLatency(llmtest.Uniform(o.latency/2, o.latency*3/2)))
	e, err := openai.New("llmtest", openai.Sentiment(), []string{"review.body"},
		openai.WithBaseURL(model.BaseURL()), openai.WithLogger(log))
	if err != nil {
		model.Close()
		return nil, "", err
	}
	return &enricher{Enricher: e, fake: model}, "fake OpenAI-compatible server at " + model.BaseURL(), nil
}

// enricher is the openai enricher and the fake model it calls, if any.
type enricher struct {
	*openai.Enricher
	fake *llmtest.Server
}

// Close closes the enricher's connections and the fake model.
func (e *enricher) Close() error {
	err := e.Enricher.Close()
	if e.fake != nil {
		e.fake.Close()
	}
	return err
}

// progress shows a progress line until every event has finished, then stops
// the pipeline and waits for its drain. It returns Run's error.
func progress(ctx context.Context, p *sluice.Pipeline, total int, start time.Time, done <-chan error, stop func(), w io.Writer) error {
	tty := false
	if f, ok := w.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			tty = true
		}
	}
	line := func() string {
		st := p.Stats()
		n := st.Enriched + st.DeadLettered
		secs := time.Since(start).Seconds()
		return fmt.Sprintf("progress: %4d/%d events  enriched %d  dead-lettered %d  %.1fs  %.0f events/s",
			n, total, st.Enriched, st.DeadLettered, secs, float64(n)/max(secs, 1e-3))
	}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	lastPrinted := time.Now()
	for {
		select {
		case err := <-done: // ended on its own: an error, or a signal
			fmt.Fprintln(w, line())
			return err
		case <-tick.C:
		}
		st := p.Stats()
		finished := st.Enriched+st.DeadLettered >= uint64(total)
		switch {
		case finished:
			stop()
			err := <-done
			if tty {
				fmt.Fprint(w, "\r\033[K")
			}
			fmt.Fprintf(w, "%s\n\n", line())
			return err
		case tty:
			fmt.Fprintf(w, "\r\033[K%s", line())
		case time.Since(lastPrinted) >= time.Second:
			fmt.Fprintln(w, line())
			lastPrinted = time.Now()
		}
		if ctx.Err() != nil {
			stop()
		}
	}
}

// samples keeps the first three enriched values and the first two dead
// letters, copied, since the pipeline owns messages only until they are
// acked.
type samples struct {
	mu   sync.Mutex
	outs []string
	dls  []deadSample
}

type deadSample struct{ value, reason string }

func (s *samples) enriched(msgs []*sluice.Message) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range msgs {
		if len(s.outs) == 3 {
			return
		}
		s.outs = append(s.outs, string(m.Value))
	}
}

func (s *samples) dead(letters []sluice.DeadLetter) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, d := range letters {
		if len(s.dls) == 2 {
			return
		}
		s.dls = append(s.dls, deadSample{value: string(d.Msg.Value), reason: d.Reason})
	}
}
