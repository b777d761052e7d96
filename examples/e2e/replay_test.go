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
	"syscall"
	"testing"
	"time"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/examples/internal/replay"
	"github.com/sluicehq/sluice/examples/internal/verify"
	"github.com/sluicehq/sluice/llmtest"
)

func TestReplayKafka(t *testing.T) { testReplay(t, kafkaBackend(t)) }

func TestReplayRedis(t *testing.T) { testReplay(t, redisBackend(t)) }

// testReplay dead-letters 500 events during a model outage, replays them
// with examples/replay (a dry run, then a run interrupted by -limit, then
// its resumption), and checks with verify that every event ends enriched.
func testReplay(t *testing.T, b backend) {
	const n = 500
	bin := buildBinaries(t)
	run := fmt.Sprintf("replay-%s-%d", b.name, time.Now().UnixNano())
	input, output, dlq := run+".in", run+".out", run+".dlq"
	t.Cleanup(func() { b.remove(input, output, dlq) })
	values := make([][]byte, n)
	for i := range values {
		values[i] = fmt.Appendf(nil, `{"id":%d,"review":{"body":"a great product, number %d"}}`, i, i)
	}
	b.publish(t, input, values)

	// The outage: every model call fails with 503, and with no retries
	// every event is dead-lettered at once.
	down := llmtest.NewServer(llmtest.WithErrorRate(1), llmtest.WithErrorStatus(503))
	defer down.Close()
	base := append([]string{
		"SLUICE_GROUP=" + run,
		"SLUICE_INPUT=" + input,
		"SLUICE_OUTPUT=" + output,
		"SLUICE_DEAD_LETTER=" + dlq,
		"SLUICE_MODEL=llmtest",
		"SLUICE_TASK=sentiment",
		"SLUICE_FIELDS=review.body",
		"SLUICE_CONCURRENCY=16",
		"SLUICE_INSTANCE_ID=" + run + "-0",
		"SLUICE_HEALTH_ADDR=127.0.0.1:0",
		"SLUICE_LOG_FORMAT=json",
	}, b.flags...)
	// The outage begins after the service has started: it skips the model
	// check it would otherwise make before consuming.
	env := append(base[:len(base):len(base)], "SLUICE_MODEL_URL="+down.BaseURL(), "SLUICE_RETRIES=0", "SLUICE_SKIP_PREFLIGHT=true")
	svc := startService(t, bin, env, "outage")
	waitHealth(t, svc, 60*time.Second, "every event dead-lettered", func(h sluice.Health) bool {
		return h.DeadLettered >= n && h.InFlight == 0
	})
	svc.stop(t, syscall.SIGTERM, 0)
	rep := verifyFullReport(t, bin, env, input, output, dlq)
	if rep.DeadLetterCount != n || rep.EnrichedCount != 0 || rep.MissingCount != 0 {
		t.Fatalf("after the outage: %+v; want %d dead letters", rep, n)
	}

	// A dry run counts by reason and changes nothing; a filter that
	// matches nothing selects nothing.
	filter := []string{"-dead-letter", dlq, "-reason", "503", "-since", "1h"}
	sum := runReplay(t, bin, env, 0, append(filter, "-dry-run")...)
	if sum.Read != n || sum.Matched != n || sum.Replayed != 0 || sum.ByDestination[input] != n || len(sum.ByReason) != 1 {
		t.Fatalf("dry run: %+v", sum)
	}
	for reason := range sum.ByReason {
		t.Logf("dry run: %d dead letters with reason %q", sum.ByReason[reason], reason)
	}
	if again := runReplay(t, bin, env, 0, append(filter, "-dry-run")...); again.Matched != n {
		t.Fatalf("a second dry run matched %d, want %d: the first one changed something", again.Matched, n)
	}
	if none := runReplay(t, bin, env, 0, "-dead-letter", dlq, "-reason", "^no such reason$", "-dry-run"); none.Read != n || none.Matched != 0 {
		t.Fatalf("dry run of a filter that matches nothing: %+v", none)
	}

	// The replay, interrupted after 200 events by -limit, then resumed
	// by the same command: 500 events written back in all, once each.
	first := runReplay(t, bin, env, 0, append(filter, "-limit", "200", "-batch", "64")...)
	if first.Replayed != 200 || !first.Remaining {
		t.Fatalf("first replay: %+v; want 200 replayed and some remaining", first)
	}
	rest := runReplay(t, bin, env, 0, append(filter, "-batch", "64")...)
	if rest.Replayed != n-200 || rest.Group != first.Group {
		t.Fatalf("resumed replay: %+v; want %d replayed in group %s", rest, n-200, first.Group)
	}
	if done := runReplay(t, bin, env, 0, filter...); done.Replayed != 0 {
		t.Fatalf("a third run replayed %d events again", done.Replayed)
	}

	// The model is back: the service, same group, enriches the replayed
	// events, and verify counts each for the event it replays.
	up := llmtest.NewServer()
	defer up.Close()
	env = append(base[:len(base):len(base)], "SLUICE_MODEL_URL="+up.BaseURL())
	svc = startService(t, bin, env, "recovered")
	waitHealth(t, svc, 60*time.Second, "the replayed events enriched", func(h sluice.Health) bool {
		return h.Enriched >= n && h.InFlight == 0 && h.ConsumerLag == 0
	})
	svc.stop(t, syscall.SIGTERM, 0)
	rep = verifyFullReport(t, bin, env, input, output, dlq)
	t.Logf("verify after the replay: %s", rep.JSON())
	if rep.InputCount != n || rep.EnrichedCount != n || rep.MissingCount != 0 || rep.ReplayedCount != n || rep.EnrichmentRate != 1 {
		t.Errorf("after the replay: %+v; want all %d events enriched", rep, n)
	}
}

// verifyFullReport runs verify and decodes its report.
func verifyFullReport(t *testing.T, bin string, env []string, input, output, dlq string) verify.Report {
	t.Helper()
	out, _ := runVerify(t, bin, env, "-input", input, "-output", output, "-dead-letter", dlq)
	var rep verify.Report
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatalf("verify printed %q: %v", out, err)
	}
	return rep
}

// runReplay runs the replay command with the service's environment and
// decodes its summary; it fails the test unless the exit status is want.
func runReplay(t *testing.T, bin string, env []string, want int, args ...string) replay.Summary {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(bin, "replay"), args...)
	cmd.Env = append(os.Environ(), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	code := 0
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		code = exit.ExitCode()
	case err != nil:
		t.Fatalf("replay: %v\n%s", err, stderr.String())
	}
	if code != want {
		t.Fatalf("replay %q: exit %d, want %d\n%s", args, code, want, stderr.String())
	}
	var sum replay.Summary
	if err := json.Unmarshal(out, &sum); err != nil {
		t.Fatalf("replay printed %q: %v\n%s", out, err, stderr.String())
	}
	return sum
}
