package redisstream_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/internal/testutil"
	"github.com/sluicehq/sluice/jsonenrich"
	"github.com/sluicehq/sluice/redisstream"
)

// childEnv, when set, makes the test binary run childMain instead of the
// tests: a pipeline that reads entries and holds them, never finishing, until
// it is killed.
const childEnv = "REDISSTREAM_TEST_CHILD"

// childMain runs in the child process of the crash tests.
func childMain() int {
	addr, stream, group, consumer, out := os.Getenv("REDIS_ADDR"), os.Getenv("CHILD_STREAM"), os.Getenv("CHILD_GROUP"), os.Getenv("CHILD_CONSUMER"), os.Getenv("CHILD_OUT")
	dlq := os.Getenv("CHILD_DLQ")
	hold, _ := strconv.Atoi(os.Getenv("CHILD_HOLD"))
	src, err := redisstream.NewSource(context.Background(), stream, group, redisstream.WithAddr(addr), redisstream.WithConsumer(consumer))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	// Entries without a payload are dead-lettered at once, even here.
	sink, err := redisstream.NewSink(context.Background(), out, redisstream.WithClient(src.Client()), redisstream.WithDeadLetterStream(dlq))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	// The enricher never finishes: every entry the pipeline reads stays
	// pending until the process is killed.
	enr := sluice.EnricherFunc(func(ctx context.Context, _ *sluice.Message) (*sluice.Message, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	})
	p, err := sluice.New(src, enr, sink, sluice.WithMaxInFlight(hold), sluice.WithConcurrency(8))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	// Never outlive a test that died without killing us.
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer cancel()
	ctx, cancel2 := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel2()
	if err := p.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 3
}

// event classes of the crash tests.
const (
	classGood      = "good"
	classBad       = "bad"     // the enricher rejects it for good
	classNoPayload = "nopload" // the entry has no payload field
)

func classOf(n int) string {
	switch {
	case n%50 == 7:
		return classNoPayload
	case n%10 == 3:
		return classBad
	default:
		return classGood
	}
}

// publishClasses adds n entries and returns their IDs and classes.
func publishClasses(t *testing.T, c *redis.Client, stream string, n int) ([]string, map[string]string) {
	t.Helper()
	entries := make([][]any, n)
	for i := range entries {
		cl := classOf(i)
		if cl == classNoPayload {
			entries[i] = []any{"n", strconv.Itoa(i), "note", "no payload here"}
			continue
		}
		entries[i] = []any{"payload", fmt.Sprintf(`{"n":%d,"class":%q,"text":"event %d"}`, i, cl, i), "trace", "t-" + strconv.Itoa(i)}
	}
	ids := add(t, c, stream, entries...)
	classes := make(map[string]string, n)
	for i, id := range ids {
		classes[id] = classOf(i)
	}
	return ids, classes
}

// classEnricher enriches good events with the delivery count it saw,
// rejects bad ones, and lets entries without a payload through (the sink
// refuses them).
func classEnricher() sluice.Enricher {
	return sluice.EnricherFunc(func(_ context.Context, in *sluice.Message) (*sluice.Message, error) {
		if len(in.Value) == 0 {
			return in.WithValue([]byte(`{}`)), nil
		}
		var ev struct {
			N     int    `json:"n"`
			Class string `json:"class"`
		}
		if err := json.Unmarshal(in.Value, &ev); err != nil {
			return nil, sluice.Permanent(err)
		}
		if ev.Class == classBad {
			return nil, sluice.Permanent(fmt.Errorf("event %d is marked bad", ev.N))
		}
		out, err := jsonenrich.Merge(in.Value, jsonenrich.DefaultKey, json.RawMessage(fmt.Sprintf(`{"deliveries":%d}`, in.Deliveries)))
		if err != nil {
			return nil, sluice.Permanent(err)
		}
		return in.WithValue(out), nil
	})
}

// outcome is where each input entry ended up.
type outcome struct {
	outputs    map[string][]redis.XMessage
	deadLetter map[string][]redis.XMessage
}

func collect(t *testing.T, c *redis.Client, in, out, dlq string) outcome {
	o := outcome{outputs: map[string][]redis.XMessage{}, deadLetter: map[string][]redis.XMessage{}}
	for _, e := range readStream(t, c, out) {
		if s, _ := field(e, "source_stream"); s != in {
			t.Errorf("output %s has source_stream %q, want %q", e.ID, s, in)
		}
		id, _ := field(e, "source_id")
		o.outputs[id] = append(o.outputs[id], e)
	}
	for _, e := range readStream(t, c, dlq) {
		id, _ := field(e, "source_id")
		o.deadLetter[id] = append(o.deadLetter[id], e)
	}
	return o
}

func (o outcome) done() int { return len(o.outputs) + len(o.deadLetter) }

// verifyClasses checks that every input ended where its class requires,
// exactly once, and returns the deliveries the enricher recorded per ID.
func verifyClasses(t *testing.T, o outcome, classes map[string]string) map[string]int {
	t.Helper()
	deliveries := map[string]int{}
	bad := 0
	report := func(format string, args ...any) {
		if bad++; bad <= 10 {
			t.Errorf(format, args...)
		}
	}
	for id, cl := range classes {
		outs, dls := o.outputs[id], o.deadLetter[id]
		switch {
		case cl == classGood && (len(outs) != 1 || len(dls) != 0):
			report("good entry %s: %d outputs and %d dead letters, want 1 output", id, len(outs), len(dls))
		case cl != classGood && (len(outs) != 0 || len(dls) != 1):
			report("%s entry %s: %d outputs and %d dead letters, want 1 dead letter", cl, id, len(outs), len(dls))
		case cl == classGood:
			payload, _ := field(outs[0], "payload")
			var v struct {
				AI struct {
					Deliveries int `json:"deliveries"`
				} `json:"ai_enrichment"`
			}
			if err := json.Unmarshal([]byte(payload), &v); err != nil {
				report("output of %s: %v", id, err)
			}
			deliveries[id] = v.AI.Deliveries
			if tr, _ := field(outs[0], "trace"); !strings.HasPrefix(tr, "t-") {
				report("output of %s lost the trace field: %v", id, outs[0].Values)
			}
		default:
			reason, _ := field(dls[0], "failure_reason")
			want := "marked bad"
			if cl == classNoPayload {
				want = `no "payload" field`
			}
			if !strings.Contains(reason, want) {
				report("dead letter of %s entry %s: failure_reason %q, want it to mention %q", cl, id, reason, want)
			}
			if _, ok := field(dls[0], "failure_attempts"); !ok {
				report("dead letter of %s has no failure_attempts", id)
			}
		}
	}
	for id := range o.outputs {
		if _, ok := classes[id]; !ok {
			report("output for unknown source_id %q", id)
		}
	}
	return deliveries
}

// crashChild starts a child pipeline process that reads and holds entries
// of stream, waits until it holds want of them, and kills it with SIGKILL.
// It returns the IDs the child held.
func crashChild(t *testing.T, c *redis.Client, stream, group, consumer, out, dlq string, classes map[string]string, want int) map[string]bool {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(),
		childEnv+"=hold", "REDIS_ADDR="+redisAddr(t), "CHILD_STREAM="+stream, "CHILD_GROUP="+group,
		"CHILD_CONSUMER="+consumer, "CHILD_OUT="+out, "CHILD_DLQ="+dlq, "CHILD_HOLD="+strconv.Itoa(want))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting child: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	var once sync.Once
	kill := func() {
		once.Do(func() {
			_ = cmd.Process.Kill()
			<-exited
		})
	}
	t.Cleanup(kill)
	testutil.WaitFor(t, 60*time.Second, fmt.Sprintf("the child to hold %d pending entries", want), func() (bool, string) {
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("child exited early: %v\n%s", err, stderr.String())
		default:
		}
		// Entries without a payload are dead-lettered and acked at once even
		// here, so wait until the pending list holds only entries the child
		// is stuck on: then it can no longer change.
		held, err := c.XPendingExt(ctxT(t, 10*time.Second), &redis.XPendingExtArgs{
			Stream: stream, Group: group, Start: "-", End: "+", Count: int64(2 * want), Consumer: consumer,
		}).Result()
		if err != nil {
			return false, err.Error()
		}
		stuck := 0
		for _, p := range held {
			if classes[p.ID] != classNoPayload {
				stuck++
			}
		}
		return stuck >= want && stuck == len(held), fmt.Sprintf("%d pending, %d of them stuck", len(held), stuck)
	})
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("SIGKILL: %v", err)
	}
	err := <-exited
	exited <- err
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ProcessState.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("child did not die of SIGKILL: %v\n%s", err, stderr.String())
	}
	held, err := c.XPendingExt(ctxT(t, 10*time.Second), &redis.XPendingExtArgs{
		Stream: stream, Group: group, Start: "-", End: "+", Count: int64(2 * want), Consumer: consumer,
	}).Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(held) != want {
		t.Fatalf("the killed child holds %d pending entries, want %d", len(held), want)
	}
	ids := make(map[string]bool, len(held))
	for _, p := range held {
		ids[p.ID] = true
		if p.RetryCount != 1 {
			t.Fatalf("entry %s held by the child has delivery count %d, want 1", p.ID, p.RetryCount)
		}
	}
	if n := len(readStream(t, c, out)); n != 0 {
		t.Fatalf("the child wrote %d outputs, want none", n)
	}
	return ids
}

// TestCrashRecovery kills a pipeline process holding 500 pending entries
// with SIGKILL, then recovers them: once by a new process with the same
// consumer name (startup reconciliation of its own pending list), once by a
// process with another name (claiming after the min-idle time).
func TestCrashRecovery(t *testing.T) {
	const inputs, hold = 600, 500
	for _, tc := range []struct {
		name string
		same bool
	}{{"SameConsumer", true}, {"OtherConsumer", false}} {
		t.Run(tc.name, func(t *testing.T) {
			c := newClient(t)
			in, out, dlq := uniq(t, c, "in"), uniq(t, c, "out"), uniq(t, c, "dlq")
			group := "g"
			if err := c.XGroupCreateMkStream(ctxT(t, 10*time.Second), in, group, "0").Err(); err != nil {
				t.Fatal(err)
			}
			_, classes := publishClasses(t, c, in, inputs)
			held := crashChild(t, c, in, group, "crashy", out, dlq, classes, hold)

			consumer := "crashy"
			opts := []redisstream.SourceOption{redisstream.WithClient(c), redisstream.WithBlock(100 * time.Millisecond), redisstream.WithLogger(testutil.Logger(t))}
			var pipeOpts []sluice.Option
			if tc.same {
				// Re-reading our own pending list must not count as a
				// delivery: with a limit of 1, any inflation would
				// dead-letter healthy entries.
				pipeOpts = append(pipeOpts, sluice.WithMaxDeliveries(1))
			} else {
				consumer = "rescuer"
				opts = append(opts, redisstream.WithMinIdle(300*time.Millisecond), redisstream.WithClaimInterval(100*time.Millisecond))
			}
			opts = append(opts, redisstream.WithConsumer(consumer))
			src, err := redisstream.NewSource(context.Background(), in, group, opts...)
			if err != nil {
				t.Fatal(err)
			}
			defer src.Close()
			sink, err := redisstream.NewSink(context.Background(), out, redisstream.WithClient(c), redisstream.WithDeadLetterStream(dlq))
			if err != nil {
				t.Fatal(err)
			}
			r := startPipeline(t, src, classEnricher(), sink, append(pipeOpts, sluice.WithConcurrency(16))...)

			var o outcome
			testutil.WaitFor(t, 90*time.Second, "every entry to be written or dead-lettered", func() (bool, string) {
				o = collect(t, c, in, out, dlq)
				return o.done() >= inputs, fmt.Sprintf("%d of %d done", o.done(), inputs)
			})
			testutil.WaitFor(t, 30*time.Second, "the source to be ready", func() (bool, string) {
				err := src.Ready(ctxT(t, 5*time.Second))
				return err == nil, fmt.Sprint(err)
			})
			testutil.WaitFor(t, 30*time.Second, "an empty pending list", func() (bool, string) {
				n := pending(t, c, in, group)
				return n == 0, fmt.Sprintf("%d pending", n)
			})
			r.stop(t)
			o = collect(t, c, in, out, dlq)
			deliveries := verifyClasses(t, o, classes)

			wantHeld := 1 // own pending list: the re-read is not a delivery
			if !tc.same {
				wantHeld = 2 // claimed: the crashed consumer's delivery counts
			}
			wrong := 0
			for id, d := range deliveries {
				want := 1
				if held[id] {
					want = wantHeld
				}
				if d != want {
					if wrong++; wrong <= 5 {
						t.Errorf("entry %s (held by the crashed process: %v) was delivered with Deliveries %d, want %d", id, held[id], d, want)
					}
				}
			}
			st := r.p.Stats()
			t.Logf("recovered: %d enriched, %d dead-lettered; %d were held by the killed process", st.Enriched, st.DeadLettered, len(held))
		})
	}
}
