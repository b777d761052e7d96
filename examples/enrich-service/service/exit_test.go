package service

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/testutil"
	"github.com/sluicehq/sluice/llmtest"
)

// The preflight stops a wrong setup before anything is consumed, each
// cause with its exit status and a message that names it. The brokers are
// never reached: -redis-addr points nowhere.
func TestPreflightExitStatuses(t *testing.T) {
	srv := llmtest.NewServer(llmtest.WithModels("gpt-a"), llmtest.WithAPIKey("right-key"))
	defer srv.Close()
	reasoning := llmtest.NewServer(llmtest.WithRejectedField("max_tokens"))
	defer reasoning.Close()
	failing := llmtest.NewServer(llmtest.WithErrorRate(1))
	defer failing.Close()
	flaky := llmtest.NewServer()
	defer flaky.Close()
	flaky.Inject(llmtest.Fault{Status: 503})
	base := []string{"-source", "redis", "-redis-addr", "127.0.0.1:1", "-health-addr", "127.0.0.1:0"}
	tests := []struct {
		name string
		key  string
		args []string
		want int
		says []string
	}{
		{"typo in the URL", "right-key", []string{"-model-url", srv.URL + "/v2", "-model", "gpt-a"}, exitPreflight,
			[]string{"preflight failed, nothing was consumed", "HTTP 404 unknown_url", "check the base URL"}},
		{"unknown model", "right-key", []string{"-model-url", srv.BaseURL(), "-model", "gpt-b"}, exitPreflight,
			[]string{"does not list the model (it lists gpt-a)", "model_not_found"}},
		{"refused key", "wrong-key", []string{"-model-url", srv.BaseURL(), "-model", "gpt-a"}, exitFatal,
			[]string{"refused the API key in $SLUICE_MODEL_API_KEY (HTTP 401)"}},
		{"max_tokens refused", "", []string{"-model-url", reasoning.BaseURL(), "-token-field", "max_tokens"}, exitPreflight,
			[]string{"unsupported_parameter"}},
		{"nothing listens", "", []string{"-model-url", "http://127.0.0.1:1/v1", "-model-timeout", "5s", "-preflight-wait", "0s"}, exitUnavailable,
			[]string{"the URL does not answer"}},
		{"5xx until the wait is over", "", []string{"-model-url", failing.BaseURL(), "-preflight-wait", "1500ms"}, exitUnavailable,
			[]string{"preflight: the model endpoint does not answer; asking again", "did not answer properly", "HTTP 500"}},
		{"5xx once, then up", "", []string{"-model-url", flaky.BaseURL()}, exitFailure,
			[]string{"preflight: the model endpoint does not answer; asking again", "model check passed", "127.0.0.1:1"}},
		{"all good: on to the broker", "right-key", []string{"-model-url", srv.BaseURL(), "-model", "gpt-a"}, exitFailure,
			[]string{"model check passed", "127.0.0.1:1"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("SLUICE_MODEL_API_KEY", tc.key)
			var out bytes.Buffer
			code := Main(append(base, tc.args...), io.Discard, &out)
			if code != tc.want {
				t.Fatalf("exit %d, want %d; log:\n%s", code, tc.want, out.String())
			}
			for _, s := range tc.says {
				if !strings.Contains(out.String(), s) {
					t.Errorf("log does not say %q:\n%s", s, out.String())
				}
			}
			if strings.Contains(out.String(), "right-key") || strings.Contains(out.String(), "wrong-key") {
				t.Errorf("the key is in the log:\n%s", out.String())
			}
		})
	}
}

// The key can come from a systemd credential (LoadCredential=), so that a
// DynamicUser service never needs a root-owned file; the variable wins.
func TestSecretsFromCredentials(t *testing.T) {
	dir := t.TempDir()
	for name, v := range map[string]string{credAPIKey: "sk-from-cred\n", credRedisPassword: "redis-pw"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("CREDENTIALS_DIRECTORY", dir)
	t.Setenv("SLUICE_MODEL_API_KEY", "")
	t.Setenv("SLUICE_REDIS_PASSWORD", "")
	c, err := parseConfig(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.apiKey != "sk-from-cred" || c.apiKeyFromEnv || c.redisPassword != "redis-pw" || c.kafkaSASLPass != "" {
		t.Errorf("secrets %q %v %q %q", c.apiKey, c.apiKeyFromEnv, c.redisPassword, c.kafkaSASLPass)
	}
	if d := fmt.Sprint(c.redacted()); strings.Contains(d, "sk-from-cred") || !strings.Contains(d, "model_api_key:set (redacted)") {
		t.Errorf("redacted: %s", d)
	}
	// The key from the credential reaches the model.
	srv := llmtest.NewServer(llmtest.WithAPIKey("sk-from-cred"))
	defer srv.Close()
	e, err := newEnricher(&config{Task: "sentiment", Fields: []string{"text"}, Model: "llmtest", ModelURL: srv.BaseURL(), ModelTimeout: time.Second, apiKey: c.apiKey,
		Tuning: tuning{TokenField: "auto"}}, nil, testutil.Quiet())
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Check(t.Context()); err != nil {
		t.Errorf("check with the credential's key: %v", err)
	}

	t.Setenv("SLUICE_MODEL_API_KEY", "sk-env")
	if c, err = parseConfig(nil, io.Discard); err != nil || c.apiKey != "sk-env" || !c.apiKeyFromEnv {
		t.Errorf("the variable does not win: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, credKafkaSASLPassword), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := parseConfig(nil, io.Discard); err == nil || !strings.Contains(err.Error(), "credential kafka-sasl-password") {
		t.Errorf("empty credential: %v", err)
	}
}

// -h documents every exit status the code uses.
func TestHelpDocumentsExitStatuses(t *testing.T) {
	var out bytes.Buffer
	if code := Main([]string{"-h"}, io.Discard, &out); code != exitOK {
		t.Fatalf("-h: exit %d", code)
	}
	for _, code := range []int{exitOK, exitFailure, exitUnavailable, exitRateLimited, exitBreaker, exitFatal, exitConfig, exitPreflight} {
		if !regexp.MustCompile(`(?m)^  ` + strconv.Itoa(code) + ` +\S`).MatchString(out.String()) {
			t.Errorf("-h does not document exit status %d:\n%s", code, out.String())
		}
	}
	for _, s := range []string{"-skip-preflight", "-preflight-wait", "-breaker", "-token-field", "-flush-timeout", "model-api-key"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("-h does not mention %s", s)
		}
	}
}

// unit reads the systemd unit's settings (the last value of each key).
func unit(t *testing.T) map[string][]string {
	t.Helper()
	f, err := os.Open("../sluice-enrich.service")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m := map[string][]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == '[' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if ok {
			m[k] = append(m[k], v)
		}
	}
	return m
}

// The unit restarts crashes (a panic's 2 among them) and transient
// failures, not configuration errors; its stop timeout leaves room for the
// default stop budget; secrets come as credentials; and systemd accepts it.
func TestSystemdUnit(t *testing.T) {
	u := unit(t)
	if got := u["Restart"]; len(got) != 1 || got[0] != "on-failure" {
		t.Errorf("Restart=%v", got)
	}
	prevent := map[int]bool{}
	for _, v := range u["RestartPreventExitStatus"] {
		for _, f := range strings.Fields(v) {
			n, err := strconv.Atoi(f)
			if err != nil {
				t.Fatalf("RestartPreventExitStatus=%q", v)
			}
			prevent[n] = true
		}
	}
	for code, want := range map[int]bool{2: false, exitFailure: false, exitUnavailable: false, exitRateLimited: false,
		exitBreaker: true, exitFatal: true, exitConfig: true, exitPreflight: true} {
		if prevent[code] != want {
			t.Errorf("exit %d: restart prevented %v, want %v", code, prevent[code], want)
		}
	}
	c, err := parseConfig(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	stop, err := time.ParseDuration(u["TimeoutStopSec"][0])
	if err != nil {
		t.Fatal(err)
	}
	if b := c.stopBudget(); b >= stop || b >= kubernetesGrace {
		t.Errorf("the default stop budget %s does not fit TimeoutStopSec=%s and Kubernetes' %s", b, stop, kubernetesGrace)
	}
	creds := strings.Join(u["LoadCredential"], " ")
	for _, name := range []string{credAPIKey} {
		if !strings.Contains(creds, name+":") {
			t.Errorf("LoadCredential does not load %s: %q", name, creds)
		}
	}
	if path, err := exec.LookPath("systemd-analyze"); err == nil {
		// verify wants the ExecStart binary to exist; point it at one that does.
		dir := t.TempDir()
		data, err := os.ReadFile("../sluice-enrich.service")
		if err != nil {
			t.Fatal(err)
		}
		text := strings.ReplaceAll(string(data), "/usr/local/bin/sluice-enrich", "/bin/true")
		text = strings.ReplaceAll(text, "EnvironmentFile=/etc/sluice/enrich.env", "EnvironmentFile=-/etc/sluice/enrich.env")
		if err := os.WriteFile(filepath.Join(dir, "sluice-enrich.service"), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(path, "verify", "--man=no", filepath.Join(dir, "sluice-enrich.service")).CombinedOutput()
		if err != nil || len(bytes.TrimSpace(out)) > 0 {
			t.Errorf("systemd-analyze verify: %v\n%s", err, out)
		}
	} else {
		t.Log("systemd-analyze is not installed: the unit's syntax is not verified")
	}
}
