// Command replay puts dead letters back into a pipeline. It reads a
// dead-letter topic (Kafka) or stream (Redis) written by sluice, keeps the
// letters whose failure_reason matches -reason, whose failure_time falls in
// [-since, -until) and whose input was -origin, and republishes each
// original event (key, value and headers; the failure and origin headers
// removed; replay_count and the replay_source_* headers added) to its own
// input, or to -to.
//
//	go run ./examples/replay -source kafka -brokers 127.0.0.1:9092 \
//	    -dead-letter dead_letter -reason 'HTTP 5[0-9][0-9]' -since 2h -dry-run
//
// -dry-run reads and counts by reason, and writes and commits nothing.
// Otherwise a batch is committed (Kafka) or acknowledged (Redis) in the
// replay's own consumer group once all its events are written, so an
// interrupted replay resumes where it stopped, writing at least once. The
// group defaults to a name derived from the dead-letter topic, -to and the
// filter flags (printed in the summary): the same command resumes, another
// filter starts afresh; -replay-group names it yourself. The replay reads
// up to the end the topic had when it began: letters written meanwhile (a
// replayed event that failed again) wait for the next run.
//
// It prints a summary for people on stderr and one JSON line on stdout, and
// exits 0 when done, 1 when a write or commit failed (run it again), 2 on a
// bad command line. Every flag can also be set with SLUICE_<NAME>, as for
// enrich-service, so it can share its environment file; the Redis password
// comes from SLUICE_REDIS_PASSWORD.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sluicehq/sluice/examples/internal/envflag"
	"github.com/sluicehq/sluice/examples/internal/replay"
	"github.com/sluicehq/sluice/kafka"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// options are the parsed command line.
type options struct {
	source, brokers, redisAddr string
	cfg                        replay.Config
}

func parse(args []string, stderr io.Writer, now time.Time) (*options, error) {
	fs := flag.NewFlagSet("replay", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := &options{}
	var reason, since, until string
	fs.StringVar(&o.source, "source", "kafka", "broker `kind`: kafka or redis")
	fs.StringVar(&o.brokers, "brokers", "127.0.0.1:9092", "comma-separated Kafka bootstrap `addresses`")
	fs.StringVar(&o.redisAddr, "redis-addr", "127.0.0.1:6379", "Redis server `host:port` (password from SLUICE_REDIS_PASSWORD)")
	fs.StringVar(&o.cfg.DeadLetter, "dead-letter", "dead_letter", "dead-letter topic or stream to read")
	fs.StringVar(&o.cfg.To, "to", "", "topic or stream to replay into (default: each event's own input, from its source_topic or source_stream)")
	fs.StringVar(&o.cfg.Group, "replay-group", "", "the replay's own consumer group (default: sluice-replay.<hash of -dead-letter, -to and the filter flags>); never the service's -group")
	fs.StringVar(&reason, "reason", "", "replay only letters whose failure_reason matches this `regexp` (Go syntax)")
	fs.StringVar(&since, "since", "", "replay only letters that failed at or after this `time`: RFC 3339, or a duration ago such as 2h")
	fs.StringVar(&until, "until", "", "replay only letters that failed before this `time`: RFC 3339, or a duration ago")
	fs.StringVar(&o.cfg.Filter.Origin, "origin", "", "replay only letters of events read from this input `topic or stream`")
	fs.BoolVar(&o.cfg.DryRun, "dry-run", false, "count by reason; write and commit nothing")
	fs.IntVar(&o.cfg.Limit, "limit", 0, "stop after replaying this many events (0 = all); the next run resumes")
	fs.IntVar(&o.cfg.Batch, "batch", 256, "events written, then committed, together")
	fs.Usage = envflag.Usage(fs, "SLUICE_", "replay [flags]")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if err := envflag.Apply(fs, "SLUICE_"); err != nil {
		return nil, err
	}
	var errs []error
	if o.source != "kafka" && o.source != "redis" {
		errs = append(errs, fmt.Errorf("-source %q: must be kafka or redis", o.source))
	}
	if o.cfg.DeadLetter == "" {
		errs = append(errs, errors.New("-dead-letter is empty: name the dead-letter topic or stream"))
	}
	if o.cfg.To != "" && o.cfg.To == o.cfg.DeadLetter {
		errs = append(errs, fmt.Errorf("-to %q is the dead-letter topic itself: name the input (or leave -to out to use each event's own input)", o.cfg.To))
	}
	if reason != "" {
		re, err := regexp.Compile(reason)
		if err != nil {
			errs = append(errs, fmt.Errorf("-reason %q: %w", reason, err))
		}
		o.cfg.Filter.Reason = re
	}
	o.cfg.FilterKey = fmt.Sprintf("reason=%s\x00since=%s\x00until=%s\x00origin=%s", reason, since, until, o.cfg.Filter.Origin)
	var err error
	if o.cfg.Filter.Since, err = parseTime(since, now); err != nil {
		errs = append(errs, fmt.Errorf("-since: %w", err))
	}
	if o.cfg.Filter.Until, err = parseTime(until, now); err != nil {
		errs = append(errs, fmt.Errorf("-until: %w", err))
	}
	if f := o.cfg.Filter; !f.Since.IsZero() && !f.Until.IsZero() && !f.Since.Before(f.Until) {
		errs = append(errs, errors.New("-since must come before -until"))
	}
	if o.cfg.Limit < 0 {
		errs = append(errs, fmt.Errorf("-limit %d: must be 0 (all) or more", o.cfg.Limit))
	}
	if o.cfg.Batch < 1 || o.cfg.Batch > 10000 {
		errs = append(errs, fmt.Errorf("-batch %d: must be between 1 and 10000", o.cfg.Batch))
	}
	return o, errors.Join(errs...)
}

// parseTime reads an RFC 3339 time, or a duration before now.
func parseTime(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return time.Time{}, fmt.Errorf("%q is neither an RFC 3339 time (2026-01-02T15:04:05Z) nor a duration ago (90m)", s)
	}
	return now.Add(-d), nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o, err := parse(args, stderr, time.Now())
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(stderr, "replay:", err)
		return 2
	}
	o.cfg.Progress = func(s replay.Summary) {
		if !s.DryRun {
			fmt.Fprintf(stderr, "replay: read %d, replayed %d\n", s.Read, s.Replayed)
		}
	}
	var sum replay.Summary
	switch o.source {
	case "kafka":
		sum, err = runKafka(ctx, o)
	case "redis":
		client := redis.NewClient(&redis.Options{Addr: o.redisAddr, Password: os.Getenv("SLUICE_REDIS_PASSWORD"), ClientName: "sluice-replay"})
		defer client.Close()
		sum, err = replay.Redis(ctx, client, o.cfg)
	}
	fmt.Fprint(stderr, sum.Text())
	fmt.Fprintln(stdout, sum.JSON())
	if err != nil {
		fmt.Fprintln(stderr, "replay:", err)
		return 1
	}
	return 0
}

func runKafka(ctx context.Context, o *options) (replay.Summary, error) {
	cfg, err := kafka.ClientConfig(kafka.WithClientID("sluice-replay"))
	if err != nil {
		return replay.Summary{}, err
	}
	return replay.Kafka(ctx, strings.Split(o.brokers, ","), cfg, o.cfg)
}
