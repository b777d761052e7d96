package e2e_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/IBM/sarama"
)

// guideTimeout is the timeout the deployment guide runs
// scripts/verify_kafka_enrichment.py with.
const guideTimeout = 45 * time.Second

// scriptResult is one run of the verification script.
type scriptResult struct {
	report  map[string]any
	code    int
	elapsed time.Duration
	stderr  string
}

// runScript runs scripts/verify_kafka_enrichment.py as the guide does, with
// a 45 s timeout, and decodes the one JSON object it must print.
func runScript(t *testing.T, env []string, args ...string) scriptResult {
	t.Helper()
	py, err := exec.LookPath("python3")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("no python3")
		}
		t.Skip("no python3")
	}
	ctx, cancel := context.WithTimeout(context.Background(), guideTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, py, append([]string{"../../scripts/verify_kafka_enrichment.py"}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err = cmd.Run()
	r := scriptResult{elapsed: time.Since(start), stderr: stderr.String()}
	var exit *exec.ExitError
	switch {
	case ctx.Err() != nil:
		t.Fatalf("the script did not answer within %v\n%s", guideTimeout, stderr.String())
	case errors.As(err, &exit):
		r.code = exit.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	if n := strings.Count(strings.TrimSpace(stdout.String()), "\n"); n != 0 {
		t.Fatalf("stdout has %d lines, want one JSON object: %q", n+1, stdout.String())
	}
	if err := json.Unmarshal(stdout.Bytes(), &r.report); err != nil {
		t.Fatalf("stdout %q is not one JSON object: %v\n%s", stdout.String(), err, stderr.String())
	}
	return r
}

// TestVerifyScript: the script the deployment guide runs answers within
// 45 s with a fresh cache folder (building verify), then from the cache,
// honours verify's flags and SLUICE_* variables, and prints a JSON error
// when it cannot check.
func TestVerifyScript(t *testing.T) {
	addr := serverAddr(t, "KAFKA_BROKERS", "no Kafka broker for the verification script test: run `scripts/kafka.sh start` and set KAFKA_BROKERS=127.0.0.1:9092")
	buildBinaries(t) // the build cache holds verify's packages, as after the test suite
	brokers := strings.Split(addr, ",")
	run := fmt.Sprintf("script-%d", time.Now().UnixNano())
	input, output, dlq := run+".in", run+".out", run+".dlq"
	t.Cleanup(func() { kafkaBackend(t).remove(input, output, dlq) })

	// 10 inputs on one partition; 8 enriched, 2 dead-lettered.
	cfg := sarama.NewConfig()
	cfg.Producer.Return.Successes = true
	p, err := sarama.NewSyncProducer(brokers, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	admin, err := sarama.NewClusterAdmin(brokers, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	var msgs []*sarama.ProducerMessage
	for i := range 10 {
		msgs = append(msgs, &sarama.ProducerMessage{Topic: input, Value: sarama.StringEncoder(`{}`)})
		to := output
		if i >= 8 {
			to = dlq
		}
		msgs = append(msgs, &sarama.ProducerMessage{Topic: to, Value: sarama.StringEncoder(`{}`), Headers: []sarama.RecordHeader{
			{Key: []byte("source_topic"), Value: []byte(input)},
			{Key: []byte("source_partition"), Value: []byte("0")},
			{Key: []byte("source_offset"), Value: []byte(strconv.Itoa(i))},
		}})
	}
	for _, topic := range []string{input, output, dlq} {
		if err := admin.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: 1, ReplicationFactor: 1}, false); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.SendMessages(msgs); err != nil {
		t.Fatal(err)
	}

	cache := t.TempDir()
	env := []string{"SLUICE_VERIFY_CACHE=" + cache, "SLUICE_BROKERS=" + addr, "SLUICE_INPUT=" + input,
		"SLUICE_OUTPUT=" + output, "SLUICE_DEAD_LETTER=" + dlq}
	first := runScript(t, env)
	t.Logf("first run (fresh cache folder, builds verify): %v, exit %d: %v", first.elapsed.Round(time.Millisecond), first.code, first.report)
	if first.report["enriched_count"] != 8.0 || first.report["enrichment_rate"] != 0.8 || first.report["input_count"] != 10.0 || first.code != 1 {
		t.Fatalf("first run: exit %d, %v; want 8 of 10 enriched and exit 1 (below -min-rate 0.95)\n%s", first.code, first.report, first.stderr)
	}
	bins, _ := filepath.Glob(filepath.Join(cache, "*", "verify"))
	if len(bins) != 1 {
		t.Fatalf("cache folder holds %v, want one verify binary", bins)
	}
	built, _ := os.Stat(bins[0])

	// From the cache, with verify's flags.
	second := runScript(t, env, "-min-rate", "0.8")
	t.Logf("second run (cached): %v, exit %d: %v", second.elapsed.Round(time.Millisecond), second.code, second.report)
	if second.code != 0 || second.report["enriched_count"] != 8.0 {
		t.Fatalf("second run with -min-rate 0.8: exit %d, %v; want 0", second.code, second.report)
	}
	// A flag wins over its SLUICE_* variable: another dead-letter topic
	// leaves the two dead-lettered inputs missing.
	third := runScript(t, env, "-min-rate", "0.8", "-dead-letter", run+".none")
	if third.code != 1 || third.report["missing_count"] != 2.0 || third.report["dead_letter_count"] != 0.0 {
		t.Fatalf("third run with -dead-letter: exit %d, %v; want 2 missing and exit 1", third.code, third.report)
	}
	if again, _ := os.Stat(bins[0]); !again.ModTime().Equal(built.ModTime()) {
		t.Error("the second run rebuilt verify")
	}

	// It cannot check: still one JSON object, exit 2.
	down := runScript(t, append(env, "SLUICE_BROKERS=127.0.0.1:1"), "-timeout", "3s")
	if _, ok := down.report["error"]; !ok || down.code != 2 {
		t.Errorf("unreachable broker: exit %d, %v; want a JSON error and exit 2", down.code, down.report)
	}
}

// TestVerifyScriptColdBuildCache runs the script with an empty build cache
// and an empty cache folder, as on a fresh machine: it must still answer
// within the guide's 45 s, with the report or, when the build cannot finish
// in time, a JSON error while the build goes on for the next run. It
// compiles everything (about 70 s of CPU), so it runs only with
// SLUICE_VERIFY_COLD=1.
func TestVerifyScriptColdBuildCache(t *testing.T) {
	if os.Getenv("SLUICE_VERIFY_COLD") != "1" {
		t.Skip("set SLUICE_VERIFY_COLD=1: compiles the standard library and every dependency")
	}
	addr := serverAddr(t, "KAFKA_BROKERS", "no Kafka broker: set KAFKA_BROKERS")
	cache := t.TempDir()
	// A build the script left running in the background (its process
	// group, named in building.pid) stops with the test.
	t.Cleanup(func() {
		pids, _ := filepath.Glob(filepath.Join(cache, "*", "building.pid"))
		for _, f := range pids {
			if b, err := os.ReadFile(f); err == nil {
				if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 0 {
					_ = syscall.Kill(-pid, syscall.SIGKILL)
				}
			}
		}
	})
	env := []string{"GOCACHE=" + t.TempDir(), "SLUICE_VERIFY_CACHE=" + cache, "SLUICE_BROKERS=" + addr,
		"SLUICE_INPUT=cold.none", "SLUICE_OUTPUT=cold.none.out", "SLUICE_DEAD_LETTER=cold.none.dlq"}
	r := runScript(t, env)
	t.Logf("cold run: %v, exit %d: %v", r.elapsed.Round(time.Millisecond), r.code, r.report)
	if _, ok := r.report["enrichment_rate"]; !ok {
		if _, ok := r.report["error"]; !ok {
			t.Fatalf("neither a report nor an error: %v", r.report)
		}
	}
}
