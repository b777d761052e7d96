package e2e_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/redis/go-redis/v9"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/llmtest"
)

const (
	events         = 2000
	malformedEvery = 100 // 20 malformed events
	pollEvery      = 20 * time.Millisecond
)

// backend is the broker a test runs against.
type backend struct {
	name    string   // "kafka" or "redis"
	flags   []string // SLUICE_* variables naming the server
	publish func(t *testing.T, input string, values [][]byte)
	// remove deletes topics or streams when the test ends.
	remove func(names ...string)
	// acked counts the input events the group has acked (committed).
	acked func(t *testing.T, group, input string) int64
}

func kafkaBackend(t *testing.T) backend {
	addr := serverAddr(t, "KAFKA_BROKERS", "no Kafka broker for the end-to-end test: run `scripts/kafka.sh start` and set KAFKA_BROKERS=127.0.0.1:9092")
	brokers := strings.Split(addr, ",")
	return backend{
		name:  "kafka",
		flags: []string{"SLUICE_SOURCE=kafka", "SLUICE_BROKERS=" + addr},
		publish: func(t *testing.T, input string, values [][]byte) {
			cfg := sarama.NewConfig()
			cfg.Version = sarama.V3_6_0_0
			cfg.Producer.Return.Successes = true
			cfg.Producer.RequiredAcks = sarama.WaitForAll
			admin, err := sarama.NewClusterAdmin(brokers, cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer admin.Close()
			if err := admin.CreateTopic(input, &sarama.TopicDetail{NumPartitions: 4, ReplicationFactor: 1}, false); err != nil {
				t.Fatal(err)
			}
			p, err := sarama.NewSyncProducer(brokers, cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			msgs := make([]*sarama.ProducerMessage, len(values))
			for i, v := range values {
				msgs[i] = &sarama.ProducerMessage{Topic: input, Key: sarama.StringEncoder(strconv.Itoa(i % 37)), Value: sarama.ByteEncoder(v)}
			}
			if err := p.SendMessages(msgs); err != nil {
				t.Fatal(err)
			}
		},
		remove: func(names ...string) {
			admin, err := sarama.NewClusterAdmin(brokers, nil)
			if err != nil {
				return
			}
			defer admin.Close()
			for _, n := range names {
				_ = admin.DeleteTopic(n)
			}
		},
		acked: func(t *testing.T, group, input string) int64 {
			cfg := sarama.NewConfig()
			cfg.Version = sarama.V3_6_0_0
			admin, err := sarama.NewClusterAdmin(brokers, cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer admin.Close()
			resp, err := admin.ListConsumerGroupOffsets(group, map[string][]int32{input: {0, 1, 2, 3}})
			if err != nil {
				t.Fatal(err)
			}
			var n int64
			for _, b := range resp.Blocks[input] {
				n += max(b.Offset, 0) // -1: nothing committed
			}
			return n
		},
	}
}

func redisBackend(t *testing.T) backend {
	addr := serverAddr(t, "REDIS_ADDR", "no Redis server for the end-to-end test: run `scripts/redis.sh start` and set REDIS_ADDR=127.0.0.1:6379")
	return backend{
		name:  "redis",
		flags: []string{"SLUICE_SOURCE=redis", "SLUICE_REDIS_ADDR=" + addr},
		publish: func(t *testing.T, input string, values [][]byte) {
			c := redis.NewClient(&redis.Options{Addr: addr})
			defer c.Close()
			ctx := context.Background()
			pipe := c.Pipeline()
			for _, v := range values {
				pipe.XAdd(ctx, &redis.XAddArgs{Stream: input, Values: []any{"payload", v}})
			}
			if _, err := pipe.Exec(ctx); err != nil {
				t.Fatal(err)
			}
		},
		remove: func(names ...string) {
			c := redis.NewClient(&redis.Options{Addr: addr})
			defer c.Close()
			c.Del(context.Background(), names...)
		},
		acked: func(t *testing.T, group, input string) int64 {
			c := redis.NewClient(&redis.Options{Addr: addr})
			defer c.Close()
			ctx := context.Background()
			groups, err := c.XInfoGroups(ctx, input).Result()
			if err != nil {
				t.Fatal(err)
			}
			for _, g := range groups {
				if g.Name == group {
					return g.EntriesRead - g.Pending
				}
			}
			return 0 // the group was never created: nothing read
		},
	}
}

// serverAddr reads env, or skips the test saying how to get a server; under
// CI=true it fails instead.
func serverAddr(t *testing.T, env, help string) string {
	t.Helper()
	if v := os.Getenv(env); v != "" {
		return v
	}
	if os.Getenv("CI") == "true" {
		t.Fatal(help)
	}
	t.Skip(help)
	return ""
}

func TestEnrichServiceKafka(t *testing.T) { testEnrichService(t, kafkaBackend(t)) }

func TestEnrichServiceRedis(t *testing.T) { testEnrichService(t, redisBackend(t)) }

// testEnrichService runs enrich-service as a process over 2,000 events with a
// rate-limited fake model, stops it with SIGTERM mid-stream, restarts it, and
// has verify (also a process) check that no event was lost.
func testEnrichService(t *testing.T, b backend) {
	bin := buildBinaries(t)
	run := fmt.Sprintf("e2e-%s-%d", b.name, time.Now().UnixNano())
	input, output, dlq := run+".in", run+".out", run+".dlq"
	t.Cleanup(func() { b.remove(input, output, dlq) })

	values, malformed := sampleValues(events)
	b.publish(t, input, values)

	// The model allows 400 calls a second, far fewer than 16 workers with
	// 2ms calls would make: the service keeps hitting 429s and pausing.
	model := llmtest.NewServer(llmtest.WithRPS(400, 10), llmtest.WithLatency(llmtest.Fixed(2*time.Millisecond)))
	defer model.Close()

	env := append([]string{
		"SLUICE_GROUP=" + run,
		"SLUICE_INPUT=" + input,
		"SLUICE_OUTPUT=" + output,
		"SLUICE_DEAD_LETTER=" + dlq,
		"SLUICE_MODEL_URL=" + model.BaseURL(),
		"SLUICE_MODEL=llmtest",
		"SLUICE_TASK=sentiment",
		"SLUICE_FIELDS=review.body",
		"SLUICE_CONCURRENCY=16",
		"SLUICE_INSTANCE_ID=" + run + "-0",
		"SLUICE_HEALTH_ADDR=127.0.0.1:0",
		"SLUICE_LOG_FORMAT=json",
		"SLUICE_DRAIN_TIMEOUT=10s",
		"SLUICE_MODEL_API_KEY=sk-e2e-secret-value",
	}, b.flags...)

	// First run: stopped with SIGTERM mid-stream, during a 429 burst.
	var all []*service
	defer func() {
		for _, s := range all {
			if strings.Contains(s.logs.String(), "sk-e2e-secret-value") {
				t.Errorf("%s: the API key appears in the logs", s.name)
			}
		}
	}()
	svc := startService(t, bin, env, "run1")
	all = append(all, svc)
	h := waitHealth(t, svc, 60*time.Second, "a third of the events processed", func(h sluice.Health) bool {
		return h.Processed >= events/3
	})
	if h.Processed >= events {
		t.Fatalf("run 1 processed all %d events before SIGTERM; the test needs a slower model", h.Processed)
	}
	checkReady(t, svc)
	// A burst of 429s with a long Retry-After: the pipeline must pause,
	// and /healthz must say so.
	burst := make([]llmtest.Fault, 16)
	for i := range burst {
		burst[i] = llmtest.Fault{Status: http.StatusTooManyRequests, Code: "rate_limit_exceeded",
			Header: http.Header{"Retry-After-Ms": {"1500"}}}
	}
	model.Inject(burst...)
	// Wait for the long pause of the burst, not one of the short pauses the
	// 400/s limit causes all along, so that /metrics is read inside it.
	h = waitHealth(t, svc, 30*time.Second, `status "paused" for the burst`, func(h sluice.Health) bool {
		until, err := time.Parse(time.RFC3339Nano, h.PausedUntil)
		return h.Status == "paused" && err == nil && time.Until(until) > 700*time.Millisecond
	})
	if h.PausedUntil == "" || h.RateLimitPauses == 0 || h.RateLimited == 0 {
		t.Errorf("paused health without pause details: %+v", h)
	}
	m := scrape(t, svc)
	for _, name := range []string{"sluice_received_total", "sluice_enriched_total", "sluice_dead_lettered_total",
		"sluice_rate_limited_total", "sluice_rate_limit_pauses_total", "sluice_consumer_lag", "sluice_model_cached_prompt_tokens_total"} {
		if _, ok := m[name]; !ok {
			t.Errorf("/metrics lacks %s", name)
		}
	}
	// The model-call metrics: every request, its latency and the tokens.
	for _, name := range []string{"sluice_model_requests_total", "sluice_model_request_duration_seconds_count", "sluice_model_tokens_total", "sluice_model_events_total"} {
		if m[name] <= 0 {
			t.Errorf("/metrics: %s = %v, want it above 0", name, m[name])
		}
	}
	if m["sluice_paused"] != 1 || m["sluice_up"] != 1 || m["sluice_rate_limit_pauses_total"] < 1 {
		t.Errorf("/metrics during the pause: paused=%v up=%v pauses=%v", m["sluice_paused"], m["sluice_up"], m["sluice_rate_limit_pauses_total"])
	}
	before := health(t, svc)
	svc.stop(t, syscall.SIGTERM, 0)
	run1 := svc.finished(t)
	t.Logf("run 1: SIGTERM after %d of %d events (%d rate-limit pauses), %d finished after the drain",
		before.Processed, events, before.RateLimitPauses, run1)
	if run1 >= events {
		t.Fatalf("run 1 finished everything before SIGTERM")
	}

	// Second run, same instance id: it picks up where the first stopped
	// and catches up until the lag is 0.
	svc = startService(t, bin, env, "run2")
	all = append(all, svc)
	h = waitHealth(t, svc, 90*time.Second, "consumer_lag 0 with nothing in flight", func(h sluice.Health) bool {
		return h.ConsumerLag == 0 && h.InFlight == 0 && h.Processed > 0
	})
	if h.Status != "ok" {
		t.Errorf("status %q after catching up", h.Status)
	}
	if h.TotalSuccessRate < 0.95 || h.EnrichmentSuccessRate < 0.95 {
		t.Errorf("success rates %.3f (total), %.3f (window); want >= 0.95", h.TotalSuccessRate, h.EnrichmentSuccessRate)
	}
	if h.LatencyMs["p50"] <= 0 {
		t.Errorf("latency_ms %v", h.LatencyMs)
	}
	m = scrape(t, svc)
	if m["sluice_consumer_lag"] != 0 || m["sluice_processed_total"] != float64(h.Processed) {
		t.Errorf("/metrics after catching up: lag=%v processed=%v (health says %d)", m["sluice_consumer_lag"], m["sluice_processed_total"], h.Processed)
	}
	svc.stop(t, syscall.SIGTERM, 0)
	run2 := svc.finished(t)
	t.Logf("run 2: %d events to catch up, total success rate %.3f", run2, h.TotalSuccessRate)
	if run1+run2 < events {
		t.Errorf("runs finished %d + %d < %d events", run1, run2, events)
	}

	// verify, as a process, must find every input enriched or
	// dead-lettered.
	out, code := runVerify(t, bin, env, "-input", input, "-output", output, "-dead-letter", dlq)
	var rep struct {
		Input      int     `json:"input_count"`
		Enriched   int     `json:"enriched_count"`
		Dead       int     `json:"dead_letter_count"`
		Missing    int     `json:"missing_count"`
		Duplicates int     `json:"duplicate_count"`
		Rate       float64 `json:"enrichment_rate"`
	}
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatalf("verify printed %q: %v", out, err)
	}
	t.Logf("verify: %s", bytes.TrimSpace(out))
	if code != 0 || rep.Missing != 0 || rep.Input != events || rep.Enriched != events-malformed || rep.Dead != malformed || rep.Rate < 0.95 {
		t.Errorf("verify exit %d, report %+v; want %d inputs, %d enriched, %d dead letters, none missing",
			code, rep, events, events-malformed, malformed)
	}

	// A model that refuses the key's quota is fatal: the service exits
	// with 77, which systemd does not restart, and dead-letters nothing.
	// (The preflight would find it first; it is skipped here to see the
	// running pipeline meet it.)
	broke := llmtest.NewServer(llmtest.WithInsufficientQuota())
	defer broke.Close()
	fatalEnv := append(env[:len(env):len(env)], "SLUICE_MODEL_URL="+broke.BaseURL(), "SLUICE_GROUP="+run+"-fatal",
		"SLUICE_INSTANCE_ID="+run+"-fatal", "SLUICE_DEAD_LETTER="+dlq+".fatal", "SLUICE_SKIP_PREFLIGHT=true")
	svc = startService(t, bin, fatalEnv, "fatal")
	all = append(all, svc)
	if code := svc.wait(t, 60*time.Second); code != 77 {
		t.Errorf("exit status %d after insufficient_quota, want 77", code)
	}

	// A model that asks for a pause of hours (Retry-After: 10000) must not
	// park the service past the rate-limit deadline: it exits with status
	// 75 once rate limiting has lasted -max-rate-limit-duration.
	stingy := llmtest.NewServer(llmtest.WithRPS(0.0001, 1))
	defer stingy.Close()
	limitedEnv := append(env[:len(env):len(env)], "SLUICE_MODEL_URL="+stingy.BaseURL(), "SLUICE_GROUP="+run+"-limited",
		"SLUICE_INSTANCE_ID="+run+"-limited", "SLUICE_DEAD_LETTER="+dlq+".limited", "SLUICE_MAX_RATE_LIMIT_DURATION=3s")
	svc = startService(t, bin, limitedEnv, "limited")
	all = append(all, svc)
	if code := svc.wait(t, 60*time.Second); code != 75 {
		t.Errorf("exit status %d after a 10000 s Retry-After with -max-rate-limit-duration 3s, want 75", code)
	}
}

// sampleValues returns n review events, every malformedEvery-th malformed.
func sampleValues(n int) (values [][]byte, malformed int) {
	words := []string{"great", "terrible", "fine", "love", "awful", "ok"}
	for i := range n {
		if (i+1)%malformedEvery == 0 {
			values = append(values, []byte(`{"id":`+strconv.Itoa(i)+`,"review":"not an object"}`))
			malformed++
			continue
		}
		values = append(values, fmt.Appendf(nil, `{"id":%d,"review":{"body":"a %s product, number %d"}}`, i, words[i%len(words)], i))
	}
	return values, malformed
}

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

// buildBinaries builds enrich-service and verify into a temporary directory
// once per test binary run, and returns the directory.
func buildBinaries(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		goBin, err := exec.LookPath("go")
		if err != nil {
			buildErr = err
			return
		}
		buildDir, buildErr = os.MkdirTemp("", "sluice-e2e-")
		if buildErr != nil {
			return
		}
		for _, name := range []string{"enrich-service", "verify"} {
			cmd := exec.Command(goBin, "build", "-o", filepath.Join(buildDir, name), "github.com/sluicehq/sluice/examples/"+name)
			if out, err := cmd.CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("go build %s: %v\n%s", name, err, out)
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildDir
}

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		_ = os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// service is a running enrich-service process.
type service struct {
	name  string
	cmd   *exec.Cmd
	addr  chan string
	url   string
	logs  *logBuffer
	done  chan struct{}
	state *os.ProcessState
}

func startService(t *testing.T, bin string, env []string, name string) *service {
	t.Helper()
	s := &service{name: name, addr: make(chan string, 1), logs: &logBuffer{}, done: make(chan struct{})}
	s.logs.onLine = func(line string) {
		var rec struct {
			Msg  string `json:"msg"`
			Addr string `json:"addr"`
		}
		if json.Unmarshal([]byte(line), &rec) == nil && strings.HasPrefix(rec.Msg, "serving /healthz") {
			select {
			case s.addr <- rec.Addr:
			default:
			}
		}
	}
	s.cmd = exec.Command(filepath.Join(bin, "enrich-service"))
	s.cmd.Env = append(os.Environ(), env...)
	s.cmd.Stdout = s.logs
	s.cmd.Stderr = s.logs
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = s.cmd.Wait()
		s.state = s.cmd.ProcessState
		close(s.done)
	}()
	t.Cleanup(func() {
		select {
		case <-s.done:
		default:
			_ = s.cmd.Process.Kill()
			<-s.done
		}
		if t.Failed() || os.Getenv("E2E_LOGS") != "" {
			t.Logf("%s log (last 40 lines):\n%s", s.name, s.logs.tail(40))
		}
	})
	select {
	case a := <-s.addr:
		s.url = "http://" + a
	case <-s.done:
		t.Fatalf("%s exited at startup (%v)", name, s.state)
	case <-time.After(60 * time.Second):
		t.Fatalf("%s did not start serving /healthz within 60s", name)
	}
	return s
}

// stop signals the process and waits for it to exit with want.
func (s *service) stop(t *testing.T, sig os.Signal, want int) {
	t.Helper()
	if err := s.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	if code := s.wait(t, 60*time.Second); code != want {
		t.Fatalf("%s exited with status %d after %v, want %d", s.name, code, sig, want)
	}
}

func (s *service) wait(t *testing.T, limit time.Duration) int {
	t.Helper()
	select {
	case <-s.done:
		return s.state.ExitCode()
	case <-time.After(limit):
		t.Fatalf("%s did not exit within %v", s.name, limit)
		return -1
	}
}

// finished returns how many events the stopped service enriched or
// dead-lettered, from its last log line about the pipeline.
func (s *service) finished(t *testing.T) uint64 {
	t.Helper()
	for _, line := range strings.Split(s.logs.String(), "\n") {
		var rec struct {
			Msg      string `json:"msg"`
			Enriched uint64 `json:"enriched"`
			Dead     uint64 `json:"dead_lettered"`
		}
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "pipeline stopped" {
			return rec.Enriched + rec.Dead
		}
	}
	t.Fatalf("%s logged no final counts", s.name)
	return 0
}

var httpClient = &http.Client{Timeout: 5 * time.Second}

func health(t *testing.T, s *service) sluice.Health {
	t.Helper()
	resp, err := httpClient.Get(s.url + "/healthz")
	if err != nil {
		t.Fatalf("GET /healthz: %v", err)
	}
	defer resp.Body.Close()
	var h sluice.Health
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil {
		t.Fatalf("GET /healthz (status %d): %v", resp.StatusCode, err)
	}
	if resp.StatusCode != http.StatusOK && h.Status != sluice.HealthStarting {
		t.Fatalf("GET /healthz: status %d, %+v", resp.StatusCode, h)
	}
	return h
}

// waitHealth polls /healthz until ok holds, the process exits, or limit
// passes, and returns the document that satisfied ok.
func waitHealth(t *testing.T, s *service, limit time.Duration, what string, ok func(sluice.Health) bool) sluice.Health {
	t.Helper()
	deadline := time.NewTimer(limit)
	defer deadline.Stop()
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	var last sluice.Health
	for {
		last = health(t, s)
		if ok(last) {
			return last
		}
		select {
		case <-tick.C:
		case <-s.done:
			t.Fatalf("%s exited (%v) while waiting for %s", s.name, s.state, what)
		case <-deadline.C:
			t.Fatalf("%s: no %s within %v; last /healthz: %+v", s.name, what, limit, last)
		}
	}
}

func checkReady(t *testing.T, s *service) {
	t.Helper()
	resp, err := httpClient.Get(s.url + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"ready"`) {
		t.Errorf("/readyz: %d %s", resp.StatusCode, body)
	}
}

var sampleLine = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$`)

// scrape reads /metrics and returns each unlabelled sample, and the sum of
// the labelled samples of each name.
func scrape(t *testing.T, s *service) map[string]float64 {
	t.Helper()
	resp, err := httpClient.Get(s.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: status %d", resp.StatusCode)
	}
	m := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		g := sampleLine.FindStringSubmatch(sc.Text())
		if g == nil {
			continue
		}
		v, err := strconv.ParseFloat(g[3], 64)
		if err != nil {
			continue
		}
		m[g[1]] += v
	}
	return m
}

// runVerify runs the verify binary with the service's environment and
// returns its standard output and exit status.
func runVerify(t *testing.T, bin string, env []string, args ...string) ([]byte, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(bin, "verify"), args...)
	cmd.Env = append(os.Environ(), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return out, 0
	case errors.As(err, &exit):
		t.Logf("verify stderr: %s", stderr.String())
		return out, exit.ExitCode()
	default:
		t.Fatalf("verify: %v\n%s", err, stderr.String())
		return nil, -1
	}
}

// logBuffer keeps a process's output and calls onLine for each line.
type logBuffer struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	part   []byte
	onLine func(string)
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(p)
	l.part = append(l.part, p...)
	for {
		i := bytes.IndexByte(l.part, '\n')
		if i < 0 {
			break
		}
		if l.onLine != nil {
			l.onLine(string(l.part[:i]))
		}
		l.part = l.part[i+1:]
	}
	return len(p), nil
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func (l *logBuffer) tail(n int) string {
	lines := strings.Split(strings.TrimRight(l.String(), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
