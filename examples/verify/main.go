// Command verify checks a pipeline's work after the fact. It reads the input,
// output and dead-letter topics (Kafka) or streams (Redis), matches every
// enriched record and dead letter to the input it came from by its origin
// headers (source_topic, source_partition, source_offset, or source_stream,
// source_id), and prints one JSON line:
//
//	{"input_count":1000,"enriched_count":988,"dead_letter_count":12,
//	 "missing_count":0,"duplicate_count":0,"enrichment_rate":0.988,
//	 "unmatched_count":0,"replayed_count":0}
//
// An input record that replays a dead letter (examples/replay puts
// replay_source_* headers on it) is no new input: its output counts for the
// event it replays.
//
// It exits 0 when enrichment_rate >= -min-rate and missing_count is 0, 1 when
// the check fails, and 2 when it cannot run. It takes the same -source,
// -brokers, -redis-addr, -input, -output and -dead-letter flags (and
// SLUICE_* environment variables) as enrich-service, so it can share its
// environment file. scripts/verify_kafka_enrichment.py wraps it for
// deployment guides that run that script.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sluicehq/sluice/examples/internal/envflag"
	"github.com/sluicehq/sluice/examples/internal/verify"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	source := fs.String("source", "kafka", "broker `kind`: kafka or redis")
	brokers := fs.String("brokers", "127.0.0.1:9092", "comma-separated Kafka bootstrap `addresses`")
	redisAddr := fs.String("redis-addr", "127.0.0.1:6379", "Redis server `host:port` (password from SLUICE_REDIS_PASSWORD)")
	var t verify.Topics
	fs.StringVar(&t.Input, "input", "events", "input topic or stream")
	fs.StringVar(&t.Output, "output", "events.enriched", "output topic or stream")
	fs.StringVar(&t.DeadLetter, "dead-letter", "dead_letter", "dead-letter topic or stream")
	fs.BoolVar(&t.ReadCommitted, "read-committed", false, "Kafka: read as a consumer with isolation.level=read_committed does (to check -exactly-once)")
	minRate := fs.Float64("min-rate", 0.95, "lowest enrichment_rate that passes")
	timeout := fs.Duration("timeout", 2*time.Minute, "give up reading after this long")
	fs.Usage = envflag.Usage(fs, "SLUICE_", "verify [flags]")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if err := envflag.Apply(fs, "SLUICE_"); err != nil {
		fmt.Fprintln(stderr, "verify:", err)
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()

	var rep verify.Report
	var err error
	switch *source {
	case "kafka":
		rep, err = verify.Kafka(ctx, strings.Split(*brokers, ","), t)
	case "redis":
		client := redis.NewClient(&redis.Options{Addr: *redisAddr, Password: os.Getenv("SLUICE_REDIS_PASSWORD")})
		defer client.Close()
		rep, err = verify.Redis(ctx, client, t)
	default:
		err = fmt.Errorf("-source %q: must be kafka or redis", *source)
	}
	if err != nil {
		fmt.Fprintln(stderr, "verify:", err)
		return 2
	}
	fmt.Fprintln(stdout, rep.JSON())
	if !rep.OK(*minRate) {
		fmt.Fprintf(stderr, "verify: FAIL: enrichment_rate %.4f (need >= %v), missing_count %d (need 0)\n",
			rep.EnrichmentRate, *minRate, rep.MissingCount)
		return 1
	}
	return 0
}
