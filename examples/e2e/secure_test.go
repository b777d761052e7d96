package e2e_test

// The end-to-end test on the secured test servers (scripts/kafka.sh start
// --secure, scripts/redis.sh start --secure), with the flags and
// environment a user would set, and a search of everything the service
// shows for the secrets it was given.

import (
	"context"
	"errors"
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

// runOnce runs the service to its end (at most a minute) and returns its
// output and exit status.
func runOnce(t *testing.T, bin string, env []string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(bin, "enrich-service"))
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("the service did not exit within a minute:\n%s", out)
	}
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatal(err)
	}
	return string(out), cmd.ProcessState.ExitCode()
}

const secureHelp = "no secured servers for this integration (end-to-end) test: run `scripts/kafka.sh start --secure` and `scripts/redis.sh start --secure`, then source their env files (`scripts/kafka.sh secure-env`, `scripts/redis.sh secure-env`) with set -a (scripts/test.sh does all of it)"

// secureVars returns the named variables of the secured servers' env
// files, or skips the test (fails it when CI=true).
func secureVars(t *testing.T, names ...string) map[string]string {
	t.Helper()
	m := map[string]string{}
	for _, k := range names {
		if m[k] = os.Getenv(k); m[k] == "" {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s unset: %s", k, secureHelp)
			}
			t.Skip(secureHelp)
		}
	}
	return m
}

// kafkaSecureBackend: the service connects over SASL_SSL with
// SCRAM-SHA-512; the test's own publishing and verify use the plain
// listener of the same broker.
func kafkaSecureBackend(t *testing.T) backend {
	e := secureVars(t, "KAFKA_SECURE_BROKERS", "KAFKA_SECURE_PLAIN_BROKERS", "KAFKA_SECURE_CA_FILE", "KAFKA_SECURE_USER", "KAFKA_SECURE_PASSWORD")
	b := kafkaOn(e["KAFKA_SECURE_PLAIN_BROKERS"])
	b.name = "kafka-secure"
	b.verifyFlags = b.flags
	b.flags = []string{
		"SLUICE_SOURCE=kafka",
		"SLUICE_BROKERS=" + e["KAFKA_SECURE_BROKERS"],
		"SLUICE_KAFKA_TLS=true",
		"SLUICE_KAFKA_CA_FILE=" + e["KAFKA_SECURE_CA_FILE"],
		"SLUICE_KAFKA_SASL=SCRAM-SHA-512",
		"SLUICE_KAFKA_SASL_USER=" + e["KAFKA_SECURE_USER"],
		"SLUICE_KAFKA_SASL_PASSWORD=" + e["KAFKA_SECURE_PASSWORD"],
	}
	b.secrets = []string{e["KAFKA_SECURE_PASSWORD"]}
	return b
}

// redisSecureBackend: the service connects over TLS as the ACL user, on
// keys of its pattern; the test's own publishing and verify use the plain
// port of the same server.
func redisSecureBackend(t *testing.T) backend {
	e := secureVars(t, "REDIS_TLS_ADDR", "REDIS_TLS_PLAIN_ADDR", "REDIS_TLS_CA_FILE", "REDIS_ACL_USER", "REDIS_ACL_PASSWORD", "REDIS_ACL_KEYS")
	b := redisOn(e["REDIS_TLS_PLAIN_ADDR"])
	b.name = "redis-secure"
	b.prefix = strings.TrimSuffix(e["REDIS_ACL_KEYS"], "*")
	b.verifyFlags = append(b.flags, "SLUICE_REDIS_PASSWORD=")
	b.flags = []string{
		"SLUICE_SOURCE=redis",
		"SLUICE_REDIS_ADDR=" + e["REDIS_TLS_ADDR"],
		"SLUICE_REDIS_TLS=true",
		"SLUICE_REDIS_CA_FILE=" + e["REDIS_TLS_CA_FILE"],
		"SLUICE_REDIS_USER=" + e["REDIS_ACL_USER"],
		"SLUICE_REDIS_PASSWORD=" + e["REDIS_ACL_PASSWORD"],
	}
	b.secrets = []string{e["REDIS_ACL_PASSWORD"]}
	return b
}

func TestEnrichServiceKafkaSecure(t *testing.T) { testEnrichService(t, kafkaSecureBackend(t)) }

func TestEnrichServiceRedisSecure(t *testing.T) { testEnrichService(t, redisSecureBackend(t)) }

// TestSecretsNeverShown runs the service with known passwords, an API key
// and a secret model header, at debug level, on the secured Kafka (JSON
// logs) and Redis (text logs), and with a wrong password (both formats); it reads /healthz, /readyz,
// /livez and /metrics, dumps every goroutine's stack (SIGQUIT, as a panic
// would), and then looks for each secret in all of it.
func TestSecretsNeverShown(t *testing.T) {
	kb, rb := kafkaSecureBackend(t), redisSecureBackend(t)
	bin := buildBinaries(t)
	model := llmtest.NewServer()
	defer model.Close()
	const apiKey, headerSecret, wrongPassword = "sk-grep-me-4b7e19d2", "hdr-grep-me-0c55a1", "wrong-grep-me-77e0d3"
	secrets := append([]string{apiKey, headerSecret, wrongPassword}, append(kb.secrets, rb.secrets...)...)

	var shown []string // every output and body the test saw
	for _, r := range []struct {
		b      backend
		format string
	}{{kb, "json"}, {rb, "text"}} {
		b, format := r.b, r.format
		{
			run := fmt.Sprintf("%ssecrets-%s-%s-%d", b.prefix, b.name, format, time.Now().UnixNano())
			input := run + ".in"
			t.Cleanup(func() { b.remove(input, run+".out", run+".dlq") })
			values, _ := sampleValues(100)
			b.publish(t, input, values)
			env := append([]string{
				"SLUICE_GROUP=" + run, "SLUICE_INPUT=" + input, "SLUICE_OUTPUT=" + run + ".out", "SLUICE_DEAD_LETTER=" + run + ".dlq",
				"SLUICE_MODEL_URL=" + model.BaseURL(), "SLUICE_MODEL=llmtest", "SLUICE_FIELDS=review.body",
				"SLUICE_INSTANCE_ID=" + run, "SLUICE_HEALTH_ADDR=127.0.0.1:0", "SLUICE_DRAIN_TIMEOUT=5s",
				"SLUICE_LOG_FORMAT=" + format, "SLUICE_LOG_LEVEL=debug",
				"SLUICE_MODEL_API_KEY=" + apiKey,
				"SLUICE_MODEL_HEADER=X-Secret-Token: env:E2E_HEADER_SECRET", "E2E_HEADER_SECRET=" + headerSecret,
			}, b.flags...)
			svc := startService(t, bin, env, run)
			waitHealth(t, svc, 60*time.Second, "events processed", func(h sluice.Health) bool { return h.Processed >= 50 })
			for _, path := range []string{"/healthz", "/readyz", "/livez", "/metrics"} {
				shown = append(shown, get(t, svc, path))
			}
			// A goroutine dump, as a panic prints: Go exits with status 2.
			if err := svc.cmd.Process.Signal(syscall.SIGQUIT); err != nil {
				t.Fatal(err)
			}
			if code := svc.wait(t, 60*time.Second); code != 2 {
				t.Errorf("exit status %d after SIGQUIT, want 2", code)
			}
			if !strings.Contains(svc.logs.String(), "goroutine ") {
				t.Errorf("%s: no goroutine dump after SIGQUIT", run)
			}
			shown = append(shown, svc.logs.String())
		}
	}

	// Refused logins, in both log formats: the error messages must not
	// show the password that was tried.
	for _, b := range []backend{kb, rb} {
		for _, format := range []string{"text", "json"} {
			env := []string{"SLUICE_MODEL_URL=" + model.BaseURL(), "SLUICE_HEALTH_ADDR=127.0.0.1:0",
				"SLUICE_LOG_FORMAT=" + format, "SLUICE_LOG_LEVEL=debug", "SLUICE_MODEL_API_KEY=" + apiKey,
				"SLUICE_INPUT=" + b.prefix + "never.in", "SLUICE_OUTPUT=" + b.prefix + "never.out", "SLUICE_DEAD_LETTER=" + b.prefix + "never.dlq"}
			env = append(env, b.flags...)
			env = append(env, "SLUICE_KAFKA_SASL_PASSWORD="+wrongPassword, "SLUICE_REDIS_PASSWORD="+wrongPassword)
			out, code := runOnce(t, bin, env)
			if code == 0 {
				t.Errorf("%s (%s logs) with a wrong password: exit status 0", b.name, format)
			}
			if !strings.Contains(out, "refused the login") {
				t.Errorf("%s (%s logs) with a wrong password does not say the login was refused:\n%s", b.name, format, out)
			}
			shown = append(shown, out)
		}
	}

	for i, text := range shown {
		for j, secret := range secrets {
			if strings.Contains(text, secret) {
				t.Errorf("output %d shows secret %d", i, j)
			}
		}
	}
	t.Logf("searched %d outputs (%d KiB) for %d secrets", len(shown), len(strings.Join(shown, ""))/1024, len(secrets))
}
