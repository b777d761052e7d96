// Command chaos is the driver of the chaos soak (scripts/chaos.sh): it runs
// enrich-service as a process against a real Kafka broker or redis-server
// for a number of cycles and, in each cycle, injects faults drawn at random:
// SIGKILL of the service (restarted with the same -instance-id), a restart
// of the broker or server, network faults between the service and the
// broker (latency, connection resets, a black hole, a timeout, a bandwidth
// limit, the proxy going down), and storms of 429s or bursts of 5xx from the
// model. A producer keeps appending input events the whole time. At the end
// it heals everything, lets the service drain to a consumer lag of 0, runs
// the verification of examples/verify and prints one JSON line:
//
//	{"cycles":20,"input_count":..,"enriched_count":..,"dead_letter_count":..,"missing_count":..,"duplicate_count":..}
//
// It exits 0 when missing_count is 0, 1 when it is not (the missing events,
// the cycles and the service logs are kept in -work), and 2 when the soak
// could not run. Every random choice comes from -seed; the seed is printed at
// the start and the end, and -seed replays a run's schedule of faults.
//
// The service reaches the broker only through an in-process fault proxy
// (internal/faultproxy) listening on -proxy-listen. For Kafka, the broker
// needs a listener that advertises that address (scripts/kafka.sh's
// SLUICE_KAFKA_PROXY_LISTEN and SLUICE_KAFKA_PROXY_ADVERTISE), so that every
// connection, not only bootstrap, goes through the proxy. The producer, the
// lag checks and the verification talk to the broker directly.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

// options are the command-line flags.
type options struct {
	source        string
	cycles        int
	seed          uint64
	service       string
	brokers       string
	redisAddr     string
	proxyListen   string
	proxyUpstream string
	restart       string
	rate          int
	work          string
	drainTimeout  time.Duration
	calm          [2]time.Duration
	hold          [2]time.Duration
	concurrency   int
}

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("chaos", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.source, "source", "kafka", "broker `kind`: kafka or redis")
	fs.IntVar(&o.cycles, "cycles", 20, "fault cycles to run")
	fs.Uint64Var(&o.seed, "seed", 0, "seed of every random choice (0: pick one and print it)")
	fs.StringVar(&o.service, "service", "", "path of the enrich-service binary (required)")
	fs.StringVar(&o.brokers, "brokers", "127.0.0.1:19092", "Kafka bootstrap `address` for the producer and the checks (direct, no proxy)")
	fs.StringVar(&o.redisAddr, "redis-addr", "127.0.0.1:16379", "Redis `address` for the producer and the checks (direct, no proxy)")
	fs.StringVar(&o.proxyListen, "proxy-listen", "", "`address` of the fault proxy the service connects to (required for kafka: the address the broker advertises)")
	fs.StringVar(&o.proxyUpstream, "proxy-upstream", "", "`address` the proxy forwards to (kafka: the broker's proxied listener; redis: default -redis-addr)")
	fs.StringVar(&o.restart, "restart-broker", "", "shell `command` that restarts the broker or server (empty: no broker restarts)")
	fs.IntVar(&o.rate, "rate", 200, "input events appended per second")
	fs.StringVar(&o.work, "work", "", "`dir` for the service logs and the report of a failed run (default: a new temporary dir)")
	fs.DurationVar(&o.drainTimeout, "drain-timeout", 5*time.Minute, "how long the final drain may take")
	fs.IntVar(&o.concurrency, "concurrency", 8, "the service's -concurrency")
	calm := fs.String("calm", "1s-3s", "`range` of the fault-free time at the start of each cycle")
	hold := fs.String("hold", "1s-4s", "`range` of how long each cycle's faults last")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	var err error
	if o.calm, err = parseRange(*calm); err != nil {
		return nil, fmt.Errorf("-calm: %w", err)
	}
	if o.hold, err = parseRange(*hold); err != nil {
		return nil, fmt.Errorf("-hold: %w", err)
	}
	switch {
	case fs.NArg() > 0:
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	case o.source != "kafka" && o.source != "redis":
		return nil, fmt.Errorf("-source %q: must be kafka or redis", o.source)
	case o.service == "":
		return nil, errors.New("-service is required")
	case o.cycles < 0 || o.rate <= 0 || o.concurrency <= 0:
		return nil, errors.New("-cycles must be >= 0, -rate and -concurrency > 0")
	case o.source == "kafka" && (o.proxyListen == "" || o.proxyUpstream == ""):
		return nil, errors.New("kafka needs -proxy-listen (the address the broker's proxied listener advertises) and -proxy-upstream (that listener)")
	}
	if o.source == "redis" && o.proxyUpstream == "" {
		o.proxyUpstream = o.redisAddr
	}
	if o.proxyListen == "" {
		o.proxyListen = "127.0.0.1:0"
	}
	if o.seed == 0 {
		o.seed = uint64(time.Now().UnixNano()) & (1<<53 - 1) // printable as a JSON number
	}
	return o, nil
}

// parseRange reads "1s-3s" (or a single duration).
func parseRange(s string) ([2]time.Duration, error) {
	lo, hi, ok := strings.Cut(s, "-")
	if !ok {
		hi = lo
	}
	a, err := time.ParseDuration(lo)
	if err != nil {
		return [2]time.Duration{}, err
	}
	b, err := time.ParseDuration(hi)
	if err != nil {
		return [2]time.Duration{}, err
	}
	if a < 0 || b < a {
		return [2]time.Duration{}, fmt.Errorf("%q: need 0 <= low <= high", s)
	}
	return [2]time.Duration{a, b}, nil
}

func run(args []string, stdout, stderr io.Writer) int {
	o, err := parseFlags(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(stderr, "chaos:", err)
		return 2
	}
	ownWork := o.work == ""
	if ownWork {
		if o.work, err = os.MkdirTemp("", "sluice-chaos-"); err != nil {
			fmt.Fprintln(stderr, "chaos:", err)
			return 2
		}
	} else if err := os.MkdirAll(o.work, 0o755); err != nil {
		fmt.Fprintln(stderr, "chaos:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	s := &soak{opts: o, log: newLogger(stderr, filepath.Join(o.work, "chaos.log")),
		rng: rand.New(rand.NewPCG(o.seed, o.seed^0x5eed))}
	defer s.log.close()
	s.log.printf("seed %d (replay: -seed %d), %d cycles against %s, work dir %s", o.seed, o.seed, o.cycles, o.source, o.work)
	start := time.Now()
	res, err := s.run(ctx)
	s.log.printf("finished in %s; seed %d", time.Since(start).Round(time.Second), o.seed)
	if err != nil {
		s.log.printf("error: %v", err)
		s.log.printf("logs kept in %s", o.work)
		return 2
	}
	fmt.Fprintln(stdout, res.JSON())
	if res.Missing > 0 {
		s.log.printf("FAIL: %d of %d input events missing (seed %d); evidence in %s", res.Missing, res.Input, o.seed, o.work)
		return 1
	}
	if ownWork {
		_ = os.RemoveAll(o.work)
	}
	return 0
}
