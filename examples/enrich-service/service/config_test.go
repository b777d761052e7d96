package service

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
)

func TestConfigEnvAndFlags(t *testing.T) {
	t.Setenv("SLUICE_SOURCE", "redis")
	t.Setenv("SLUICE_RATE_LIMIT", "12.5")
	t.Setenv("SLUICE_FIELDS", "review.title, review.body")
	t.Setenv("SLUICE_CONCURRENCY", "99") // the flag below wins
	t.Setenv("SLUICE_MODEL_API_KEY", "sk-very-secret")
	t.Setenv("SLUICE_MODEL_URL", "https://user:pw@example.com/v1?key=abc")
	c, err := parseConfig([]string{"-concurrency", "4"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.Source != "redis" || c.RateLimit != 12.5 || c.Concurrency != 4 || c.DeadLetter != "dead_letter" ||
		c.HealthAddr != "127.0.0.1:8080" || strings.Join(c.Fields, "|") != "review.title|review.body" {
		t.Errorf("config %+v", c)
	}
	dump := fmt.Sprint(c.redacted())
	for _, secret := range []string{"sk-very-secret", "pw", "abc"} {
		if strings.Contains(dump, secret) {
			t.Errorf("redacted config shows %q: %s", secret, dump)
		}
	}
	if !strings.Contains(dump, "model_api_key:set (redacted)") {
		t.Errorf("redacted config does not say the key is set: %s", dump)
	}
}

func TestConfigErrors(t *testing.T) {
	_, err := parseConfig([]string{"-source", "nats", "-task", "poetry", "-concurrency", "0"}, io.Discard)
	if !errors.Is(err, errUsage) {
		t.Fatalf("err %v, want errUsage", err)
	}
	for _, want := range []string{"-source", "-task", "-concurrency"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not name %s: %v", want, err)
		}
	}
	t.Setenv("SLUICE_RATE_LIMIT", "lots")
	if _, err := parseConfig(nil, io.Discard); err == nil || !strings.Contains(err.Error(), "SLUICE_RATE_LIMIT") {
		t.Errorf("bad variable: %v", err)
	}
}

func TestExitStatuses(t *testing.T) {
	if code := Main([]string{"-version"}, io.Discard, io.Discard); code != exitOK {
		t.Errorf("-version: exit %d", code)
	}
	if code := Main([]string{"-task", "poetry"}, io.Discard, io.Discard); code != exitConfig {
		t.Errorf("bad task: exit %d", code)
	}
	// Nothing listens on port 1: startup fails with status 1.
	if code := Main([]string{"-skip-preflight", "-source", "redis", "-redis-addr", "127.0.0.1:1"}, io.Discard, io.Discard); code != exitFailure {
		t.Errorf("unreachable Redis: exit %d", code)
	}
}

func TestConfigConnectionSecurity(t *testing.T) {
	t.Setenv("SLUICE_KAFKA_SASL_PASSWORD", "kafka-pw-123")
	c, err := parseConfig([]string{"-kafka-sasl", "SCRAM-SHA-512", "-kafka-sasl-user", "svc", "-kafka-ca-file", "/etc/ca.pem"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !c.KafkaTLS {
		t.Error("-kafka-ca-file does not imply TLS")
	}
	dump := fmt.Sprint(c.redacted())
	if strings.Contains(dump, "kafka-pw-123") || !strings.Contains(dump, "kafka_sasl_password:set (redacted)") {
		t.Errorf("redacted config: %s", dump)
	}

	t.Setenv("SLUICE_KAFKA_SASL_PASSWORD", "")
	_, err = parseConfig([]string{"-kafka-sasl", "GSSAPI", "-kafka-cert-file", "c.pem"}, io.Discard)
	for _, want := range []string{`-kafka-sasl "GSSAPI"`, "-kafka-cert-file and -kafka-key-file"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not name %s", err, want)
		}
	}
	_, err = parseConfig([]string{"-kafka-sasl", "PLAIN", "-kafka-sasl-user", "svc"}, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "SLUICE_KAFKA_SASL_PASSWORD") {
		t.Errorf("missing password: %v", err)
	}
}

func TestConfigCache(t *testing.T) {
	c, err := parseConfig(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.Cache.Kind != "memory" || c.Cache.Size != 64<<20 || c.Cache.RedisAddr != c.RedisAddr {
		t.Errorf("default cache %+v", c.Cache)
	}
	c, err = parseConfig([]string{"-cache", "redis", "-cache-redis-addr", "10.0.0.1:6380", "-cache-ttl", "2h", "-cache-size", "512KiB"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.Cache.Kind != "redis" || c.Cache.RedisAddr != "10.0.0.1:6380" || c.Cache.TTL.String() != "2h0m0s" || c.Cache.Size != 512<<10 {
		t.Errorf("cache %+v", c.Cache)
	}
	if d := fmt.Sprint(c.redacted()); !strings.Contains(d, "cache:redis") || !strings.Contains(d, "cache_ttl:2h0m0s") {
		t.Errorf("redacted config: %s", d)
	}

	_, err = parseConfig([]string{"-cache", "disk", "-cache-ttl", "0s"}, io.Discard)
	if !errors.Is(err, errUsage) || !strings.Contains(err.Error(), `-cache "disk"`) {
		t.Errorf("bad -cache: %v", err)
	}
	_, err = parseConfig([]string{"-cache", "redis", "-cache-ttl", "10ms"}, io.Discard)
	if !errors.Is(err, errUsage) || !strings.Contains(err.Error(), "-cache-ttl") {
		t.Errorf("bad -cache-ttl: %v", err)
	}
	_, err = parseConfig([]string{"-cache-size", "12XB"}, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "not a size") {
		t.Errorf("bad -cache-size: %v", err)
	}
	_, err = parseConfig([]string{"-cache-size", "0"}, io.Discard)
	if !errors.Is(err, errUsage) || !strings.Contains(err.Error(), "-cache-size") {
		t.Errorf("zero -cache-size: %v", err)
	}
}

func TestByteSize(t *testing.T) {
	for in, want := range map[string]int64{"64MiB": 64 << 20, "1GiB": 1 << 30, "512 KiB": 512 << 10, "1000": 1000, "10B": 10} {
		var b byteSize
		if err := b.Set(in); err != nil || int64(b) != want {
			t.Errorf("%q: %d %v, want %d", in, b, err, want)
		}
	}
	for _, in := range []string{"", "-1", "1.5MiB", "MiB", "99999999999GiB"} {
		var b byteSize
		if err := b.Set(in); err == nil {
			t.Errorf("%q accepted as %d", in, b)
		}
	}
	b := byteSize(64 << 20)
	if b.String() != "64MiB" {
		t.Errorf("String %q", b.String())
	}
}

func TestConfigDeliveryModes(t *testing.T) {
	c, err := parseConfig([]string{"-exactly-once", "-source", "kafka"}, io.Discard)
	if err != nil || !c.ExactlyOnce {
		t.Fatalf("-exactly-once on Kafka: %+v, %v", c, err)
	}
	_, err = parseConfig([]string{"-exactly-once", "-source", "redis", "-redis-wait-replicas", "-1"}, io.Discard)
	for _, want := range []string{"-exactly-once: Kafka only", "-redis-wait-replicas -1"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not name %s", err, want)
		}
	}
	_, err = parseConfig([]string{"-source", "redis", "-redis-wait-replicas", "1", "-redis-wait-timeout", "0s"}, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "-redis-wait-timeout") {
		t.Errorf("a zero wait timeout: %v", err)
	}
	_, err = parseConfig([]string{"-source", "redis", "-redis-wait-replicas", "1", "-redis-atomic-ack"}, io.Discard)
	if !errors.Is(err, errUsage) || !strings.Contains(err.Error(), "choose one") {
		t.Errorf("-redis-atomic-ack with -redis-wait-replicas: %v", err)
	}
}
