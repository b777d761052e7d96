package openai

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/llmtest"
)

// envFakeServer makes the test binary serve llmtest instead of running
// tests: benchmarks start the model in a process of its own, as a real one
// would be, so that it does not share the pipeline's Go scheduler.
const envFakeServer = "SLUICE_BENCH_FAKE_SERVER"

func TestMain(m *testing.M) {
	if spec := os.Getenv(envFakeServer); spec != "" {
		serveFake(spec)
		return
	}
	os.Exit(m.Run())
}

// serveFake serves llmtest per spec ("latency=50ms,rps=200") on a free
// loopback port, prints its base URL, and serves until stdin closes.
func serveFake(spec string) {
	var opts []llmtest.Option
	for _, kv := range strings.Split(spec, ",") {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "latency":
			d, err := time.ParseDuration(v)
			if err != nil {
				panic(err)
			}
			opts = append(opts, llmtest.WithLatency(llmtest.Fixed(d)))
		case "rps":
			r, err := strconv.ParseFloat(v, 64)
			if err != nil {
				panic(err)
			}
			opts = append(opts, llmtest.WithRPS(r, 0))
		}
	}
	h, err := llmtest.NewHandler(opts...)
	if err != nil {
		panic(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	fmt.Printf("http://%s/v1\n", ln.Addr())
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n') // until the parent goes away
	_ = srv.Close()
	h.Close()
}

// startFake runs the fake model in a child process and returns its base URL.
func startFake(tb testing.TB, spec string) string {
	tb.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), envFakeServer+"="+spec)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		tb.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		_ = stdin.Close()
		_ = cmd.Wait()
	})
	url, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		tb.Fatalf("fake model process: %v", err)
	}
	return strings.TrimSpace(url)
}
