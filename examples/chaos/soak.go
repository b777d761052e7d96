package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sluicehq/sluice/examples/internal/verify"
	"github.com/sluicehq/sluice/internal/faultproxy"
	"github.com/sluicehq/sluice/llmtest"
)

// result is the line the soak prints. Its field names are a stable contract.
type result struct {
	Cycles     int `json:"cycles"`
	Input      int `json:"input_count"`
	Enriched   int `json:"enriched_count"`
	Dead       int `json:"dead_letter_count"`
	Missing    int `json:"missing_count"`
	Duplicates int `json:"duplicate_count"`
}

func (r result) JSON() string {
	b, _ := json.Marshal(r) // only numbers
	return string(b)
}

// soak is one run of the chaos soak.
type soak struct {
	opts *options
	log  *logger
	rng  *rand.Rand

	name    string // names of the group, topics and instance
	names   verify.Topics
	backend backend
	proxy   *faultproxy.Proxy
	model   *llmtest.Server
	svc     *supervisor
}

// backend is what differs between Kafka and Redis.
type backend interface {
	// prepare creates the input.
	prepare(ctx context.Context) error
	// produce appends events to the input. On error it returns those that
	// were not stored (all of them, if it cannot tell).
	produce(ctx context.Context, values [][]byte) (rest [][]byte, err error)
	// lag is the consumer group's lag as the broker reports it, counting
	// delivered but unacknowledged events (0 when all is done).
	lag(ctx context.Context) (int64, string, error)
	// verify runs the verification of examples/verify.
	verify(ctx context.Context) (verify.Report, error)
	// missing lists the inputs that have neither an output nor a dead
	// letter, with their payloads.
	missing(ctx context.Context, limit int) ([]string, error)
	// serviceEnv names the server for the service (through the proxy).
	serviceEnv(proxy string) []string
	close()
}

func (s *soak) run(ctx context.Context) (result, error) {
	o := s.opts
	s.name = fmt.Sprintf("chaos-%s-%d-%d", o.source, o.seed, time.Now().Unix())
	s.names = verify.Topics{Input: s.name + ".in", Output: s.name + ".out", DeadLetter: s.name + ".dlq"}
	var err error
	switch o.source {
	case "kafka":
		s.backend, err = newKafkaBackend(strings.Split(o.brokers, ","), s.name, s.names)
	default:
		s.backend, err = newRedisBackend(o.redisAddr, s.name, s.names)
	}
	if err != nil {
		return result{}, err
	}
	defer s.backend.close()
	if err := s.backend.prepare(ctx); err != nil {
		return result{}, fmt.Errorf("prepare the input: %w", err)
	}

	s.proxy, err = faultproxy.New(o.proxyUpstream, faultproxy.WithListen(o.proxyListen), faultproxy.WithName("chaos-"+o.source))
	if err != nil {
		return result{}, err
	}
	defer s.proxy.Close()
	s.model = llmtest.NewServer(llmtest.WithSeed(o.seed), llmtest.WithLatency(llmtest.Uniform(time.Millisecond, 5*time.Millisecond)))
	defer s.model.Close()
	s.log.printf("input %s, output %s, dead letters %s; service -> proxy %s -> %s; model %s",
		s.names.Input, s.names.Output, s.names.DeadLetter, s.proxy.Addr(), o.proxyUpstream, s.model.BaseURL())

	env := append([]string{
		"SLUICE_GROUP=" + s.name,
		"SLUICE_INPUT=" + s.names.Input,
		"SLUICE_OUTPUT=" + s.names.Output,
		"SLUICE_DEAD_LETTER=" + s.names.DeadLetter,
		"SLUICE_MODEL_URL=" + s.model.BaseURL(),
		"SLUICE_MODEL=llmtest",
		"SLUICE_TASK=sentiment",
		"SLUICE_FIELDS=review.body",
		"SLUICE_CONCURRENCY=" + strconv.Itoa(o.concurrency),
		"SLUICE_MODEL_TIMEOUT=10s",
		"SLUICE_INSTANCE_ID=" + s.name + "-0",
		"SLUICE_HEALTH_ADDR=127.0.0.1:0",
		"SLUICE_LOG_FORMAT=json",
		"SLUICE_DRAIN_TIMEOUT=10s",
	}, s.backend.serviceEnv(s.proxy.Addr())...)
	s.svc = newSupervisor(o.service, env, o.work, s.log)
	defer s.svc.shutdown()

	// The producer appends events until the cycles are over.
	prodCtx, stopProducer := context.WithCancel(ctx)
	prod := &producer{backend: s.backend, rate: o.rate, log: s.log}
	var prodWG sync.WaitGroup
	prodWG.Add(1)
	go func() {
		defer prodWG.Done()
		prod.run(prodCtx)
	}()
	defer func() {
		stopProducer()
		prodWG.Wait()
	}()

	if err := s.svc.start(ctx); err != nil {
		return result{}, err
	}

	deck := newDeck(s.rng, o.restart != "")
	for i := 1; i <= o.cycles; i++ {
		if err := s.sleep(ctx, s.between(o.calm)); err != nil {
			return result{}, err
		}
		faults := []kind{deck.next()}
		if s.rng.Float64() < 0.35 {
			if k := deck.secondary(faults[0]); k != "" {
				faults = append(faults, k)
			}
		}
		hold := s.between(o.hold)
		s.log.printf("cycle %d/%d: %s for %s (produced %d so far)", i, o.cycles, joinKinds(faults), hold.Round(time.Millisecond), prod.count())
		var heals []func() error
		for _, k := range faults {
			heal, err := s.inject(ctx, k)
			if err != nil {
				return result{}, fmt.Errorf("cycle %d: inject %s: %w", i, k, err)
			}
			heals = append(heals, heal)
		}
		if err := s.sleep(ctx, hold); err != nil {
			return result{}, err
		}
		for j := len(heals) - 1; j >= 0; j-- {
			if err := heals[j](); err != nil {
				return result{}, fmt.Errorf("cycle %d: heal %s: %w", i, faults[j], err)
			}
		}
	}

	// Heal for good, stop producing, and let the service catch up.
	if err := s.healAll(); err != nil {
		return result{}, err
	}
	stopProducer()
	prodWG.Wait()
	s.log.printf("cycles done; %d events produced; draining (limit %s)", prod.count(), o.drainTimeout)
	drainErr := s.drain(ctx)
	if drainErr != nil {
		s.log.printf("drain: %v", drainErr)
	}
	if err := s.svc.stop(); err != nil {
		s.log.printf("stopping the service: %v", err)
	}
	s.log.printf("service: %d starts, %d kills, unexpected exits %v", s.svc.starts, s.svc.kills, s.svc.exits)

	vctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	rep, err := s.backend.verify(vctx)
	if err != nil {
		return result{}, fmt.Errorf("verify: %w", err)
	}
	s.log.printf("verify: %s", rep.JSON())
	res := result{Cycles: o.cycles, Input: rep.InputCount, Enriched: rep.EnrichedCount, Dead: rep.DeadLetterCount,
		Missing: rep.MissingCount, Duplicates: rep.DuplicateCount}
	if rep.InputCount != prod.count() {
		s.log.printf("note: %d events produced (acknowledged), %d in the input", prod.count(), rep.InputCount)
	}
	if res.Missing > 0 {
		s.evidence(vctx)
	}
	return res, nil
}

// between draws a duration from r.
func (s *soak) between(r [2]time.Duration) time.Duration {
	if r[1] == r[0] {
		return r[0]
	}
	return r[0] + time.Duration(s.rng.Int64N(int64(r[1]-r[0])))
}

func (s *soak) sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *soak) healAll() error {
	if err := s.proxy.Heal(); err != nil {
		return err
	}
	return s.proxy.Up()
}

// drain waits until the service reports a lag of 0 with nothing in flight
// and the broker agrees (no event delivered but unacknowledged).
func (s *soak) drain(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.opts.drainTimeout)
	defer cancel()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	var last string
	lastLog := time.Now()
	for {
		h, herr := s.svc.health(ctx)
		lag, detail, lerr := s.backend.lag(ctx)
		switch {
		case herr != nil:
			last = "healthz: " + herr.Error()
		case lerr != nil:
			last = "lag: " + lerr.Error()
		default:
			last = fmt.Sprintf("healthz lag %d in flight %d status %s; broker lag %d (%s)", h.ConsumerLag, h.InFlight, h.Status, lag, detail)
			if h.ConsumerLag == 0 && h.InFlight == 0 && lag == 0 {
				s.log.printf("drained: %s", last)
				return nil
			}
		}
		if time.Since(lastLog) > 10*time.Second {
			s.log.printf("draining: %s", last)
			lastLog = time.Now()
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return fmt.Errorf("not drained within %s: %s", s.opts.drainTimeout, last)
		}
	}
}

// evidence writes what a failed run needs to be understood: the missing
// inputs, and where the logs are.
func (s *soak) evidence(ctx context.Context) {
	miss, err := s.backend.missing(ctx, 200)
	if err != nil {
		s.log.printf("listing the missing events: %v", err)
		return
	}
	path := filepath.Join(s.opts.work, "missing.txt")
	_ = os.WriteFile(path, []byte(strings.Join(miss, "\n")+"\n"), 0o644)
	for i, m := range miss {
		if i == 20 {
			s.log.printf("  ... %d more in %s", len(miss)-i, path)
			break
		}
		s.log.printf("  missing: %s", m)
	}
	s.log.printf("service logs: %s", filepath.Join(s.opts.work, "service-*.log"))
}

// restartBroker runs the -restart-broker command.
func (s *soak) restartBroker(ctx context.Context) error {
	t0 := time.Now()
	cmd := exec.CommandContext(ctx, "bash", "-c", s.opts.restart)
	out, err := cmd.CombinedOutput()
	f, ferr := os.OpenFile(filepath.Join(s.opts.work, "broker-restarts.log"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if ferr == nil {
		fmt.Fprintf(f, "---- %s (%s)\n%s", t0.Format(time.RFC3339), time.Since(t0).Round(time.Millisecond), out)
		f.Close()
	}
	if err != nil {
		return fmt.Errorf("%s: %w\n%s", s.opts.restart, err, out)
	}
	s.log.printf("  broker restarted in %s", time.Since(t0).Round(100*time.Millisecond))
	return nil
}

// logger writes progress to stderr and to a file in the work dir.
type logger struct {
	mu sync.Mutex
	w  io.Writer
	f  *os.File
}

func newLogger(stderr io.Writer, path string) *logger {
	l := &logger{w: stderr}
	if f, err := os.Create(path); err == nil {
		l.f = f
		l.w = io.MultiWriter(stderr, f)
	}
	return l
}

func (l *logger) printf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(l.w, "chaos: %s %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, args...))
}

func (l *logger) close() {
	if l.f != nil {
		l.f.Close()
	}
}

var httpClient = &http.Client{Timeout: 3 * time.Second}
