package e2e_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/llmtest"
)

func TestTypoRunKafka(t *testing.T) { testTypoRun(t, kafkaBackend(t)) }

func TestTypoRunRedis(t *testing.T) { testTypoRun(t, redisBackend(t)) }

// testTypoRun is the operator's mistake of one character in the model URL
// (/v2 for /v1) over a 2,000-event input. With the preflight, the service
// exits 79 before consuming anything. Without it, the breaker stops the
// service after 20 events in a row fail with the same 404: exit 76, an
// error line that names the cause, at most 20 dead letters, and the rest of
// the input unconsumed. With the URL fixed, a restart processes the rest.
func testTypoRun(t *testing.T, b backend) {
	bin := buildBinaries(t)
	run := fmt.Sprintf("typo-%s-%d", b.name, time.Now().UnixNano())
	input, output, dlq := run+".in", run+".out", run+".dlq"
	t.Cleanup(func() { b.remove(input, output, dlq) })
	// Every event is good: any dead letter is the typo's.
	values := make([][]byte, events)
	for i := range values {
		values[i] = fmt.Appendf(nil, `{"id":%d,"review":{"body":"a great product, number %d"}}`, i, i)
	}
	b.publish(t, input, values)

	model := llmtest.NewServer()
	defer model.Close()
	env := append([]string{
		"SLUICE_GROUP=" + run,
		"SLUICE_INPUT=" + input,
		"SLUICE_OUTPUT=" + output,
		"SLUICE_DEAD_LETTER=" + dlq,
		"SLUICE_MODEL_URL=" + model.URL + "/v2", // the typo
		"SLUICE_MODEL=llmtest",
		"SLUICE_TASK=sentiment",
		"SLUICE_FIELDS=review.body",
		"SLUICE_CONCURRENCY=16",
		"SLUICE_INSTANCE_ID=" + run + "-0",
		"SLUICE_HEALTH_ADDR=127.0.0.1:0",
		"SLUICE_LOG_FORMAT=json",
	}, b.flags...)

	// 1. The preflight finds the typo: exit 79, nothing consumed.
	code, logs := runToExit(t, bin, env, "preflight")
	if code != 79 {
		t.Fatalf("exit %d with the preflight, want 79; log:\n%s", code, logs)
	}
	for _, s := range []string{"preflight failed, nothing was consumed", "HTTP 404 unknown_url", "check the base URL"} {
		if !strings.Contains(logs, s) {
			t.Errorf("the preflight's error line does not say %q:\n%s", s, logs)
		}
	}
	if n := b.acked(t, run, input); n != 0 {
		t.Errorf("the preflight run acked %d events", n)
	}
	rep := verifyReport(t, bin, env, input, output, dlq)
	if rep.Dead != 0 || rep.Enriched != 0 {
		t.Errorf("after the preflight: %+v, want nothing written", rep)
	}

	// 2. Without the preflight, the breaker stops the service.
	code, logs = runToExit(t, bin, append(env, "SLUICE_SKIP_PREFLIGHT=true"), "breaker")
	if code != 76 {
		t.Fatalf("exit %d with the preflight skipped, want 76; log:\n%s", code, logs)
	}
	line := errorLine(logs, "sluice-enrich stopped")
	for _, s := range []string{"breaker open", "20 events in a row failed with the same configuration error (HTTP 404 unknown_url)", "unknown path /v2/chat/completions", "check the base URL"} {
		if !strings.Contains(line, s) {
			t.Errorf("the final error line does not say %q: %s", s, line)
		}
	}
	acked := b.acked(t, run, input)
	rep = verifyReport(t, bin, env, input, output, dlq)
	t.Logf("breaker run: %d dead letters, %d events acked, %d of %d events not written", rep.Dead, acked, rep.Missing, events)
	if rep.Dead > sluice.DefaultBreaker || rep.Enriched != 0 {
		t.Errorf("the breaker let through %+v, want at most %d dead letters", rep, sluice.DefaultBreaker)
	}
	if acked > int64(sluice.DefaultBreaker) || rep.Missing < events-sluice.DefaultBreaker {
		t.Errorf("acked %d, missing %d: the rest of the input must stay unconsumed", acked, rep.Missing)
	}

	// 3. The URL fixed, a restart processes the rest.
	fixed := append(env[:len(env):len(env)], "SLUICE_MODEL_URL="+model.BaseURL())
	svc := startService(t, bin, fixed, "fixed")
	waitHealth(t, svc, 60*time.Second, "the rest of the input processed", func(h sluice.Health) bool {
		return int64(h.Processed)+acked >= events
	})
	svc.stop(t, syscall.SIGTERM, 0)
	rep = verifyReport(t, bin, env, input, output, dlq)
	t.Logf("after the fix: %+v", rep)
	if rep.Missing != 0 || rep.Input != events || rep.Dead > sluice.DefaultBreaker || rep.Enriched+rep.Dead < events {
		t.Errorf("after the fix: %+v, want every event written and at most %d dead letters", rep, sluice.DefaultBreaker)
	}
}

// report is verify's JSON line.
type report struct {
	Input    int `json:"input_count"`
	Enriched int `json:"enriched_count"`
	Dead     int `json:"dead_letter_count"`
	Missing  int `json:"missing_count"`
}

func verifyReport(t *testing.T, bin string, env []string, input, output, dlq string) report {
	t.Helper()
	out, _ := runVerify(t, bin, env, "-input", input, "-output", output, "-dead-letter", dlq, "-min-rate", "0")
	var rep report
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatalf("verify printed %q: %v", out, err)
	}
	return rep
}

// runToExit runs enrich-service until it exits by itself, within a minute,
// and returns its exit status and log.
func runToExit(t *testing.T, bin string, env []string, name string) (int, string) {
	t.Helper()
	var logs bytes.Buffer
	cmd := exec.Command(filepath.Join(bin, "enrich-service"))
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("%s did not exit within 60s; log:\n%s", name, logs.String())
	}
	if os.Getenv("E2E_LOGS") != "" {
		t.Logf("%s log:\n%s", name, logs.String())
	}
	return cmd.ProcessState.ExitCode(), logs.String()
}

// errorLine returns the JSON log line whose msg is msg, with its err.
func errorLine(logs, msg string) string {
	for _, line := range strings.Split(logs, "\n") {
		var rec struct {
			Msg string `json:"msg"`
			Err string `json:"err"`
		}
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == msg {
			return rec.Err
		}
	}
	return ""
}
