package e2e_test

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/llmtest"
)

// optionalMetrics are the metrics the dashboard reads that the service
// exports only when configured: the cost needs prices (-price-* flags).
var optionalMetrics = map[string]bool{
	"sluice_model_cost_usd_total": true,
}

// TestPrometheusScrapesService runs a real Prometheus server (Debian's
// prometheus package) that scrapes a running enrich-service and loads the
// alert rules of deploy/prometheus, then asks it, through its HTTP API, for
// the processed counter, the rules' health, and the names of the metrics it
// holds: every metric the dashboard and the alert rules read must be among
// them.
func TestPrometheusScrapesService(t *testing.T) {
	promBin, err := exec.LookPath("prometheus")
	if err != nil {
		const help = "no prometheus binary: apt-get install prometheus (scripts/test.sh installs it)"
		if os.Getenv("CI") == "true" {
			t.Fatal(help)
		}
		t.Skip(help)
	}
	b := redisBackend(t)
	bin := buildBinaries(t)
	run := fmt.Sprintf("prom-%d", time.Now().UnixNano())
	input, output, dlq := run+".in", run+".out", run+".dlq"
	t.Cleanup(func() { b.remove(input, output, dlq) })
	const n = 50
	values, _ := sampleValues(n)
	b.publish(t, input, values)
	model := llmtest.NewServer()
	defer model.Close()
	env := append([]string{
		"SLUICE_GROUP=" + run, "SLUICE_INPUT=" + input, "SLUICE_OUTPUT=" + output, "SLUICE_DEAD_LETTER=" + dlq,
		"SLUICE_MODEL_URL=" + model.BaseURL(), "SLUICE_MODEL=llmtest", "SLUICE_FIELDS=review.body",
		"SLUICE_INSTANCE_ID=" + run, "SLUICE_HEALTH_ADDR=127.0.0.1:0", "SLUICE_LOG_FORMAT=json",
	}, b.flags...)
	svc := startService(t, bin, env, "scraped")
	h := waitHealth(t, svc, 60*time.Second, "every event processed", func(h sluice.Health) bool {
		return h.Processed >= n && h.InFlight == 0
	})

	// Prometheus on a free loopback port, with its own config and storage.
	dir := t.TempDir()
	rules, err := filepath.Abs("../../deploy/prometheus/alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	target := strings.TrimPrefix(svc.url, "http://")
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - %q
scrape_configs:
  - job_name: sluice-enrich
    static_configs:
      - targets: [%q]
`, rules, target)
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	prom := exec.Command(promBin, "--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"), "--web.listen-address="+addr, "--log.level=warn")
	logs := &logBuffer{}
	prom.Stdout, prom.Stderr = logs, logs
	if err := prom.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{}) // closed once prometheus has exited
	go func() { _ = prom.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = prom.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = prom.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("prometheus log:\n%s", logs.tail(30))
		}
	})
	api := "http://" + addr + "/api/v1/"

	// The processed counter, scraped, equals what /healthz says.
	var got float64
	waitFor(t, exited, 60*time.Second, "Prometheus to answer sluice_processed_total", func() bool {
		var r struct {
			Data struct {
				Result []struct {
					Value [2]any `json:"value"`
				} `json:"result"`
			} `json:"data"`
		}
		if !getJSON(api+"query?query="+url.QueryEscape(`sluice_processed_total{job="sluice-enrich"}`), &r) || len(r.Data.Result) != 1 {
			return false
		}
		s, _ := r.Data.Result[0].Value[1].(string)
		got, _ = strconv.ParseFloat(s, 64)
		return got >= float64(h.Processed)
	})
	if got != float64(h.Processed) {
		t.Errorf("Prometheus says sluice_processed_total %v, /healthz says %d", got, h.Processed)
	}
	t.Logf("Prometheus: sluice_processed_total = %v", got)

	// The alert rules are loaded and evaluate without error.
	waitFor(t, exited, 30*time.Second, "the alert rules evaluated", func() bool {
		var r struct {
			Data struct {
				Groups []struct {
					Name  string `json:"name"`
					Rules []struct {
						Name      string `json:"name"`
						Health    string `json:"health"`
						LastError string `json:"lastError"`
					} `json:"rules"`
				} `json:"groups"`
			} `json:"data"`
		}
		if !getJSON(api+"rules", &r) || len(r.Data.Groups) == 0 {
			return false
		}
		for _, g := range r.Data.Groups {
			for _, rule := range g.Rules {
				if rule.Health == "err" {
					t.Fatalf("rule %s: %s", rule.Name, rule.LastError)
				}
				if rule.Health != "ok" {
					return false
				}
			}
		}
		return true
	})

	// Every metric the dashboard and the alert rules read is scraped.
	var names struct {
		Data []string `json:"data"`
	}
	if !getJSON(api+"label/__name__/values", &names) {
		t.Fatal("label values: no answer")
	}
	for _, m := range referencedMetrics(t) {
		switch {
		case slices.Contains(names.Data, m) || slices.Contains(names.Data, m+"_bucket"):
		case optionalMetrics[m]:
			t.Logf("%s: read by the dashboard, exported only when configured", m)
		default:
			t.Errorf("%s: read by the dashboard or the alerts, but the service does not export it", m)
		}
	}
	svc.stop(t, syscall.SIGTERM, 0)
}

// referencedMetrics returns the sluice_* metric names that the Grafana
// dashboard and the alert rules read, histogram suffixes removed.
func referencedMetrics(t *testing.T) []string {
	t.Helper()
	var text []byte
	for _, f := range []string{"../../deploy/grafana/sluice-enrich.json", "../../deploy/prometheus/alerts.yml"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		text = append(text, b...)
	}
	seen := map[string]bool{}
	for _, m := range regexp.MustCompile(`\bsluice_[a-z0-9_]+`).FindAllString(string(text), -1) {
		for _, suf := range []string{"_bucket", "_sum", "_count"} {
			m = strings.TrimSuffix(m, suf)
		}
		if m != "sluice_enrich" { // the job's name, not a metric
			seen[m] = true
		}
	}
	out := make([]string, 0, len(seen))
	for m := range seen {
		out = append(out, m)
	}
	slices.Sort(out)
	if len(out) < 10 {
		t.Fatalf("only %d metrics referenced: %v", len(out), out)
	}
	return out
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// getJSON decodes the data of a successful Prometheus API answer.
func getJSON(u string, v any) bool {
	resp, err := httpClient.Get(u)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	return resp.StatusCode == http.StatusOK && json.NewDecoder(resp.Body).Decode(v) == nil
}

// waitFor polls cond until it holds; it fails when limit passes or the
// process behind exited ends.
func waitFor(t *testing.T, exited <-chan struct{}, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(limit)
	defer deadline.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-tick.C:
		case <-exited:
			t.Fatalf("prometheus exited while waiting for %s", what)
		case <-deadline.C:
			t.Fatalf("no %s within %v", what, limit)
		}
	}
}
