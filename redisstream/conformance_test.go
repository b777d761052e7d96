package redisstream_test

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/internal/testutil"
	"github.com/sluicehq/sluice/redisstream"
	"github.com/sluicehq/sluice/sluicetest/conformance"
)

// The conformance suite's harness: payload in "payload", key in "key", every
// other field a header.
func TestConformance(t *testing.T) {
	c := newClient(t)
	addr := redisAddr(t)
	h := conformanceHarness("redis", c, func(t *testing.T) string { return uniq(t, c, "topic") },
		[]redisstream.Option{redisstream.WithAddr(addr)})
	if script := restartScript(addr); script != "" {
		h.RestartServer = func(t *testing.T) {
			// The script runs the server without persistence: turn the
			// append-only file on, so that the data survives, and keep
			// it on across the restart.
			ctx := ctxT(t, 60*time.Second)
			if err := c.ConfigSet(ctx, "appendonly", "yes").Err(); err != nil {
				t.Fatalf("CONFIG SET appendonly yes: %v", err)
			}
			testutil.WaitFor(t, 60*time.Second, "the append-only file", func() (bool, string) {
				info := c.Info(ctx, "persistence").Val()
				return strings.Contains(info, "aof_enabled:1") && strings.Contains(info, "aof_rewrite_in_progress:0") &&
					!strings.Contains(info, "aof_rewrite_scheduled:1"), "INFO persistence"
			})
			cmd := exec.Command("bash", script, "restart")
			cmd.Env = append(os.Environ(), "SLUICE_REDIS_ARGS=--appendonly yes")
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("%s restart: %v\n%s", script, err, out)
			}
			testutil.WaitFor(t, 60*time.Second, "the server to come back", func() (bool, string) {
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				defer cancel()
				err := c.Ping(ctx).Err()
				return err == nil, "PING: " + errString(err)
			})
		}
	}
	conformance.Run(t, h)
}

// conformanceHarness connects the suite to the server: sources and sinks
// connect with conn (address, TLS, credentials), and the suite's own
// publishing and reading go through the client c; newTopic names fresh
// streams.
func conformanceHarness(name string, c *redis.Client, newTopic func(t *testing.T) string, conn []redisstream.Option) conformance.Harness {
	const minIdle, claimEvery = time.Second, 200 * time.Millisecond
	return conformance.Harness{
		Name: name,
		NewTopic: func(t *testing.T, _ int) string {
			return newTopic(t)
		},
		Publish: func(t *testing.T, topic string, msgs []*sluice.Message) {
			entries := make([][]any, len(msgs))
			for i, m := range msgs {
				f := []any{"payload", m.Value}
				if m.Key != nil {
					f = append(f, "key", m.Key)
				}
				for _, h := range m.Headers {
					f = append(f, h.Key, h.Value)
				}
				entries[i] = f
			}
			add(t, c, topic, entries...)
		},
		NewSource: func(t *testing.T, topic, group, member string) sluice.Source {
			opts := []redisstream.SourceOption{redisstream.WithConsumer(member),
				redisstream.WithKeyField("key"), redisstream.WithBlock(50 * time.Millisecond),
				redisstream.WithMinIdle(minIdle), redisstream.WithClaimInterval(claimEvery),
				redisstream.WithLogger(testutil.Logger(t))}
			for _, o := range conn {
				opts = append(opts, o)
			}
			src, err := redisstream.NewSource(context.Background(), topic, group, opts...)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = src.Close() })
			return src
		},
		NewSink: func(t *testing.T, out, dlq string) sluice.Sink {
			opts := []redisstream.SinkOption{redisstream.WithDeadLetterStream(dlq),
				redisstream.WithKeyField("key"), redisstream.WithLogger(testutil.Logger(t))}
			for _, o := range conn {
				opts = append(opts, o)
			}
			sink, err := redisstream.NewSink(context.Background(), out, opts...)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = sink.Close() })
			return sink
		},
		ReadAll: func(t *testing.T, topic string) []*sluice.Message {
			entries := readStream(t, c, topic)
			out := make([]*sluice.Message, len(entries))
			for i, e := range entries {
				out[i] = redisstream.DecodeEntry(topic, "payload", "key", e)
			}
			return out
		},
		RedeliveryDelay: minIdle + claimEvery,
		Timeout:         60 * time.Second,
		Events:          200,
	}
}

// restartScript returns the server script when the tests use the server it
// runs and SLUICE_SERVER_RESTART=1, so that the ServerRestart subtest can
// restart it. scripts/test.sh sets it in a pass of its own, when nothing
// else uses the server.
func restartScript(addr string) string {
	const script = "../scripts/redis.sh"
	if os.Getenv("SLUICE_SERVER_RESTART") != "1" {
		return ""
	}
	if addr != "127.0.0.1:6379" && addr != "localhost:6379" {
		return ""
	}
	if _, err := os.Stat(script); err != nil {
		return ""
	}
	return script
}

func errString(err error) string {
	if err == nil {
		return "ok"
	}
	return err.Error()
}
