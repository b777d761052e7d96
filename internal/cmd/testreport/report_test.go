package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// stream builds a `go test -json` stream from events.
func stream(t *testing.T, evs ...event) string {
	t.Helper()
	var b strings.Builder
	for _, e := range evs {
		j, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		b.Write(j)
		b.WriteByte('\n')
	}
	return b.String()
}

func run(t *testing.T, verbose bool, in string) (*report, string) {
	t.Helper()
	var out bytes.Buffer
	r := newReport(&out, verbose)
	if err := r.read(strings.NewReader(in)); err != nil {
		t.Fatal(err)
	}
	r.summary()
	if err := r.out.Flush(); err != nil {
		t.Fatal(err)
	}
	return r, out.String()
}

const pkg = "example.com/p"

func TestCounts(t *testing.T) {
	in := stream(t,
		event{Action: "run", Package: pkg, Test: "TestA"},
		event{Action: "output", Package: pkg, Test: "TestA", Output: "=== RUN   TestA\n"},
		event{Action: "output", Package: pkg, Test: "TestA", Output: "    a_test.go:1: quiet\n"},
		event{Action: "pass", Package: pkg, Test: "TestA"},
		event{Action: "output", Package: pkg, Test: "TestB", Output: "    b_test.go:2: boom\n"},
		event{Action: "output", Package: pkg, Test: "TestB", Output: "--- FAIL: TestB (0.00s)\n"},
		event{Action: "fail", Package: pkg, Test: "TestB"},
		event{Action: "output", Package: pkg, Test: "TestC", Output: "    c_test.go:3: slow\n"},
		event{Action: "skip", Package: pkg, Test: "TestC"},
		event{Action: "output", Package: pkg, Output: "FAIL\texample.com/p\t0.1s\n"},
		event{Action: "fail", Package: pkg},
	)
	r, out := run(t, false, in)
	if r.passed != 1 || r.failed != 1 || r.skipped != 1 {
		t.Fatalf("counts %d/%d/%d, want 1/1/1", r.passed, r.failed, r.skipped)
	}
	for _, want := range []string{"b_test.go:2: boom", "--- FAIL: TestB", "c_test.go:3: slow", "FAIL\texample.com/p", "tests: 1 passed, 1 failed, 1 skipped\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	for _, hidden := range []string{"quiet", "=== RUN"} {
		if strings.Contains(out, hidden) {
			t.Errorf("output shows %q of a passing test:\n%s", hidden, out)
		}
	}
	if len(r.envSkips) != 0 {
		t.Errorf("env skips %q, want none", r.envSkips)
	}
}

func TestPackageFailureWithoutTest(t *testing.T) {
	// A build failure: the package fails with no failed test; it counts once.
	in := stream(t,
		event{Action: "build-output", Package: pkg, Output: "p.go:1:1: expected 'package'\n"},
		event{Action: "output", Package: pkg, Output: "FAIL\texample.com/p [build failed]\n"},
		event{Action: "fail", Package: pkg},
	)
	r, out := run(t, false, in)
	if r.failed != 1 {
		t.Fatalf("failed = %d, want 1", r.failed)
	}
	if !strings.Contains(out, "expected 'package'") {
		t.Errorf("build output missing:\n%s", out)
	}
}

func TestCrashShowsUnreportedOutput(t *testing.T) {
	// A panic ends the binary before the test reports: its output appears
	// when the package fails, and the package counts as one failure.
	in := stream(t,
		event{Action: "output", Package: pkg, Test: "TestP", Output: "panic: nil map\n"},
		event{Action: "fail", Package: pkg},
	)
	r, out := run(t, false, in)
	if r.failed != 1 || !strings.Contains(out, "panic: nil map") {
		t.Fatalf("failed = %d, output:\n%s", r.failed, out)
	}
}

func TestEnvSkips(t *testing.T) {
	cases := []struct {
		test, msg string
		env       bool
	}{
		{"TestKafka", "no Kafka broker: run `scripts/kafka.sh start` and set KAFKA_BROKERS=127.0.0.1:9092", true},
		{"TestRedis", "no Redis server: start one with `scripts/redis.sh start`", true},
		{"TestE2E", "set REDIS_ADDR", true},
		{"TestIntegrationX", "whatever", true},
		{"TestContainers", "no Docker engine", true},
		{"TestSlow", "slow", false},
		{"TestShort", "skipping in -short mode", false},
	}
	for _, c := range cases {
		in := stream(t,
			event{Action: "output", Package: pkg, Test: c.test, Output: "=== RUN   " + c.test + "\n"},
			event{Action: "output", Package: pkg, Test: c.test, Output: "    x_test.go:9: " + c.msg + "\n"},
			event{Action: "output", Package: pkg, Test: c.test, Output: "--- SKIP: " + c.test + " (0.00s)\n"},
			event{Action: "skip", Package: pkg, Test: c.test},
		)
		r, _ := run(t, false, in)
		if got := len(r.envSkips) == 1; got != c.env {
			t.Errorf("%s %q: env skip %v, want %v", c.test, c.msg, got, c.env)
			continue
		}
		if c.env {
			want := pkg + " " + c.test + ": x_test.go:9: " + c.msg
			if r.envSkips[0] != want {
				t.Errorf("env skip line %q, want %q", r.envSkips[0], want)
			}
		}
	}
}

func TestVerboseAndNonJSON(t *testing.T) {
	in := "go: downloading example.com/q v1.0.0\n" + stream(t,
		event{Action: "output", Package: pkg, Test: "TestA", Output: "=== RUN   TestA\n"},
		event{Action: "output", Package: pkg, Test: "TestA", Output: "    a_test.go:1: quiet\n"},
		event{Action: "pass", Package: pkg, Test: "TestA"},
	)
	r, out := run(t, true, in)
	for _, want := range []string{"go: downloading", "=== RUN   TestA", "quiet"} {
		if !strings.Contains(out, want) {
			t.Errorf("verbose output lacks %q:\n%s", want, out)
		}
	}
	if r.passed != 1 {
		t.Errorf("passed = %d, want 1", r.passed)
	}
}
