package service

// The service against the secured test servers (scripts/kafka.sh start
// --secure, scripts/redis.sh start --secure; their env files set the
// KAFKA_SECURE_*, REDIS_TLS_* and REDIS_ACL_* variables read here): every
// refusal of a login, a certificate or an ACL ends the service with the
// configuration exit status and an error that names the cause and what to
// check, and no output of it shows a secret.

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/redis/go-redis/v9"

	"github.com/sluicehq/sluice/llmtest"
)

const secureHelp = "no secured servers for this integration test: run `scripts/kafka.sh start --secure` and `scripts/redis.sh start --secure`, then source their env files (`scripts/kafka.sh secure-env`, `scripts/redis.sh secure-env`) with set -a (scripts/test.sh does all of it)"

// secureEnv returns the variables the secured servers' env files set, or
// skips the test (fails it when CI=true).
func secureEnv(t *testing.T) map[string]string {
	t.Helper()
	m := map[string]string{}
	for _, k := range []string{"KAFKA_SECURE_BROKERS", "KAFKA_SECURE_CA_FILE", "KAFKA_SECURE_OTHER_CA_FILE",
		"KAFKA_SECURE_WRONG_HOST_BROKERS", "KAFKA_SECURE_PLAIN_BROKERS", "KAFKA_SECURE_USER", "KAFKA_SECURE_PASSWORD",
		"KAFKA_SECURE_LIMITED_USER", "KAFKA_SECURE_LIMITED_PASSWORD",
		"REDIS_TLS_ADDR", "REDIS_TLS_PLAIN_ADDR", "REDIS_TLS_CA_FILE", "REDIS_TLS_OTHER_CA_FILE",
		"REDIS_TLS_WRONG_HOST_CERT_FILE", "REDIS_TLS_WRONG_HOST_KEY_FILE", "REDIS_ACL_USER", "REDIS_ACL_PASSWORD", "REDIS_ACL_KEYS"} {
		m[k] = os.Getenv(k)
		if m[k] == "" {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s unset: %s", k, secureHelp)
			}
			t.Skip(secureHelp)
		}
	}
	return m
}

// syncBuffer is a bytes.Buffer that several goroutines may write.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// runService runs the service in this process with env set and returns its
// exit status and output. A run that outlasts limit is stopped with SIGTERM
// and fails the test.
func runService(t *testing.T, env map[string]string, limit time.Duration) (int, string) {
	t.Helper()
	for k, v := range env {
		t.Setenv(k, v)
	}
	var out syncBuffer
	done := make(chan int, 1)
	go func() { done <- Main(nil, &out, &out) }()
	select {
	case code := <-done:
		return code, out.String()
	case <-time.After(limit):
		t.Errorf("the service still runs after %v: stopping it", limit)
		_ = syscall.Kill(os.Getpid(), syscall.SIGTERM)
		return <-done, out.String()
	}
}

// baseEnv is what every run sets: a model, names and a free health port.
func baseEnv(modelURL, run string) map[string]string {
	return map[string]string{
		"SLUICE_MODEL_URL":     modelURL,
		"SLUICE_MODEL":         "llmtest",
		"SLUICE_FIELDS":        "review.body",
		"SLUICE_GROUP":         run,
		"SLUICE_INPUT":         run + ".in",
		"SLUICE_OUTPUT":        run + ".out",
		"SLUICE_DEAD_LETTER":   run + ".dlq",
		"SLUICE_HEALTH_ADDR":   "127.0.0.1:0",
		"SLUICE_DRAIN_TIMEOUT": "2s",
		"SLUICE_LOG_FORMAT":    "json",
		"SLUICE_MODEL_API_KEY": "sk-refusal-test-key-91c2",
	}
}

func with(m map[string]string, kv ...string) map[string]string {
	out := make(map[string]string, len(m)+len(kv)/2)
	for k, v := range m {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		out[kv[i]] = kv[i+1]
	}
	return out
}

// TestSecureRefusals: a wrong password, a CA that did not sign the server's
// certificate, and a certificate for another host name, for Kafka and for
// Redis; each ends the service at startup with exitConfig and an error that
// names the cause, and the password shows nowhere in the output.
func TestSecureRefusals(t *testing.T) {
	e := secureEnv(t)
	const wrong = "wrong-password-c81f0a"
	model := llmtest.NewServer()
	defer model.Close()
	base := baseEnv(model.BaseURL(), fmt.Sprintf("refusal-%d", time.Now().UnixNano()))
	kafkaEnv := with(base, "SLUICE_SOURCE", "kafka", "SLUICE_BROKERS", e["KAFKA_SECURE_BROKERS"],
		"SLUICE_KAFKA_CA_FILE", e["KAFKA_SECURE_CA_FILE"], "SLUICE_KAFKA_SASL", "SCRAM-SHA-512",
		"SLUICE_KAFKA_SASL_USER", e["KAFKA_SECURE_USER"], "SLUICE_KAFKA_SASL_PASSWORD", e["KAFKA_SECURE_PASSWORD"])
	redisEnv := with(base, "SLUICE_SOURCE", "redis", "SLUICE_REDIS_ADDR", e["REDIS_TLS_ADDR"],
		"SLUICE_REDIS_CA_FILE", e["REDIS_TLS_CA_FILE"], "SLUICE_REDIS_USER", e["REDIS_ACL_USER"],
		"SLUICE_REDIS_PASSWORD", e["REDIS_ACL_PASSWORD"])
	cases := []struct {
		name string
		env  map[string]string
		want []string
	}{
		{"KafkaWrongPassword", with(kafkaEnv, "SLUICE_KAFKA_SASL_PASSWORD", wrong),
			[]string{"the broker refused the login", "SASL Authentication failed"}},
		{"KafkaUnknownCA", with(kafkaEnv, "SLUICE_KAFKA_CA_FILE", e["KAFKA_SECURE_OTHER_CA_FILE"]),
			[]string{"certificate was refused", "certificate signed by unknown authority"}},
		{"KafkaWrongHost", with(kafkaEnv, "SLUICE_BROKERS", e["KAFKA_SECURE_WRONG_HOST_BROKERS"]),
			[]string{"certificate was refused", "x509: cannot validate certificate for 127.0.0.1"}},
		{"RedisWrongPassword", with(redisEnv, "SLUICE_REDIS_PASSWORD", wrong),
			[]string{"the server refused the login", "WRONGPASS"}},
		{"RedisUnknownCA", with(redisEnv, "SLUICE_REDIS_CA_FILE", e["REDIS_TLS_OTHER_CA_FILE"]),
			[]string{"certificate was refused", "certificate signed by unknown authority"}},
		{"RedisWrongHost", with(redisEnv, "SLUICE_REDIS_ADDR", wrongHostServer(t, e)),
			[]string{"certificate was refused", "x509: cannot validate certificate for 127.0.0.1"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, out := runService(t, c.env, 60*time.Second)
			if code != exitConfig {
				t.Errorf("exit status %d, want %d (configuration)", code, exitConfig)
			}
			for _, w := range c.want {
				if !strings.Contains(out, w) {
					t.Errorf("the output does not say %q", w)
				}
			}
			for _, secret := range []string{wrong, e["KAFKA_SECURE_PASSWORD"], e["REDIS_ACL_PASSWORD"], base["SLUICE_MODEL_API_KEY"]} {
				if strings.Contains(out, secret) {
					t.Errorf("the output shows a secret (%d characters)", len(secret))
				}
			}
			if t.Failed() {
				t.Logf("output:\n%s", out)
			}
		})
	}
}

// wrongHostServer serves TLS with the secured mode's certificate for
// another host name (signed by the same CA); the client refuses it during
// the handshake, so nothing is served after it.
func wrongHostServer(t *testing.T, e map[string]string) string {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(e["REDIS_TLS_WRONG_HOST_CERT_FILE"], e["REDIS_TLS_WRONG_HOST_KEY_FILE"])
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				_ = conn.(*tls.Conn).Handshake()
			}()
		}
	}()
	return ln.Addr().String()
}

// TestSecureDeadLetterDenied: users that may read the input and write the
// output but not the dead letters. The malformed event must be
// dead-lettered, the write is refused, and the service exits with
// exitConfig naming the refusal, the event unacked.
func TestSecureDeadLetterDenied(t *testing.T) {
	e := secureEnv(t)
	model := llmtest.NewServer()
	defer model.Close()
	malformed := []byte(`{"id":1,"review":"not an object"}`)

	t.Run("Kafka", func(t *testing.T) {
		run := fmt.Sprintf("acl-%d", time.Now().UnixNano())
		plain := []string{e["KAFKA_SECURE_PLAIN_BROKERS"]}
		cfg := sarama.NewConfig()
		cfg.Version = sarama.V3_6_0_0
		cfg.Producer.Return.Successes = true
		admin, err := sarama.NewClusterAdmin(plain, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer admin.Close()
		for _, topic := range []string{run + ".in", run + ".out", run + ".dlq"} {
			if err := admin.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: 1, ReplicationFactor: 1}, false); err != nil {
				t.Fatal(err)
			}
			defer func() { _ = admin.DeleteTopic(topic) }()
		}
		user := e["KAFKA_SECURE_LIMITED_USER"]
		allow := func(res sarama.AclResourceType, name string, ops ...sarama.AclOperation) *sarama.ResourceAcls {
			ra := &sarama.ResourceAcls{Resource: sarama.Resource{ResourceType: res, ResourceName: name, ResourcePatternType: sarama.AclPatternLiteral}}
			for _, op := range ops {
				ra.Acls = append(ra.Acls, &sarama.Acl{Principal: "User:" + user, Host: "*", Operation: op, PermissionType: sarama.AclPermissionAllow})
			}
			return ra
		}
		if err := admin.CreateACLs([]*sarama.ResourceAcls{
			allow(sarama.AclResourceTopic, run+".in", sarama.AclOperationRead, sarama.AclOperationDescribe),
			allow(sarama.AclResourceTopic, run+".out", sarama.AclOperationWrite, sarama.AclOperationDescribe),
			allow(sarama.AclResourceGroup, run, sarama.AclOperationRead, sarama.AclOperationDescribe),
		}); err != nil {
			t.Fatal(err)
		}
		defer func() {
			principal := "User:" + user
			for _, n := range []string{run + ".in", run + ".out", run} {
				name := n
				_, _ = admin.DeleteACL(sarama.AclFilter{ResourceType: sarama.AclResourceAny, ResourceName: &name, ResourcePatternTypeFilter: sarama.AclPatternLiteral,
					Principal: &principal, Operation: sarama.AclOperationAny, PermissionType: sarama.AclPermissionAny}, false)
			}
		}()
		p, err := sarama.NewSyncProducer(plain, cfg)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := p.SendMessage(&sarama.ProducerMessage{Topic: run + ".in", Value: sarama.ByteEncoder(malformed)}); err != nil {
			t.Fatal(err)
		}
		_ = p.Close()

		env := with(baseEnv(model.BaseURL(), run), "SLUICE_SOURCE", "kafka", "SLUICE_BROKERS", e["KAFKA_SECURE_BROKERS"],
			"SLUICE_KAFKA_CA_FILE", e["KAFKA_SECURE_CA_FILE"], "SLUICE_KAFKA_SASL", "SCRAM-SHA-512",
			"SLUICE_KAFKA_SASL_USER", user, "SLUICE_KAFKA_SASL_PASSWORD", e["KAFKA_SECURE_LIMITED_PASSWORD"])
		code, out := runService(t, env, 90*time.Second)
		checkDenied(t, code, out, run+".dlq", e["KAFKA_SECURE_LIMITED_PASSWORD"])
		resp, err := admin.ListConsumerGroupOffsets(run, map[string][]int32{run + ".in": {0}})
		if err != nil {
			t.Fatal(err)
		}
		if b := resp.GetBlock(run+".in", 0); b != nil && b.Offset > 0 {
			t.Errorf("the group committed offset %d: the event was acked without its dead letter", b.Offset)
		}
	})

	t.Run("Redis", func(t *testing.T) {
		prefix := strings.TrimSuffix(e["REDIS_ACL_KEYS"], "*")
		run := fmt.Sprintf("%sacl-%d", prefix, time.Now().UnixNano())
		c := redis.NewClient(&redis.Options{Addr: e["REDIS_TLS_PLAIN_ADDR"]})
		defer c.Close()
		ctx := context.Background()
		dlq := "denied-" + run // outside the user's key pattern
		defer c.Del(ctx, run+".in", run+".out", dlq)
		if err := c.XAdd(ctx, &redis.XAddArgs{Stream: run + ".in", Values: []any{"payload", malformed}}).Err(); err != nil {
			t.Fatal(err)
		}
		env := with(baseEnv(model.BaseURL(), run), "SLUICE_SOURCE", "redis", "SLUICE_REDIS_ADDR", e["REDIS_TLS_ADDR"],
			"SLUICE_REDIS_CA_FILE", e["REDIS_TLS_CA_FILE"], "SLUICE_REDIS_USER", e["REDIS_ACL_USER"],
			"SLUICE_REDIS_PASSWORD", e["REDIS_ACL_PASSWORD"], "SLUICE_DEAD_LETTER", dlq)
		code, out := runService(t, env, 90*time.Second)
		checkDenied(t, code, out, dlq, e["REDIS_ACL_PASSWORD"])
		if n := c.XPending(ctx, run+".in", run).Val(); n == nil || n.Count != 1 {
			t.Errorf("pending after the refused dead letter: %+v; want the one entry, unacknowledged", n)
		}
	})
}

func checkDenied(t *testing.T, code int, out, dlq, password string) {
	t.Helper()
	if code != exitConfig {
		t.Errorf("exit status %d, want %d (configuration)", code, exitConfig)
	}
	for _, w := range []string{"the ACLs refused the user an operation", "access denied", dlq} {
		if !strings.Contains(out, w) {
			t.Errorf("the output does not say %q", w)
		}
	}
	if strings.Contains(out, password) {
		t.Error("the output shows the password")
	}
	if t.Failed() {
		t.Logf("output:\n%s", out)
	}
}
