package e2e_test

import (
	"fmt"
	"math/rand/v2"
	"syscall"
	"testing"
	"time"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/llmtest"
)

// cacheEvents is the size of the cache runs.
const cacheEvents = 10000

// cacheValues returns n events of which about repeat (a share) carry the
// text of an earlier event, and the number of distinct texts. Texts carry
// run, so that no other run's answers are in a shared cache.
func cacheValues(run string, n int, repeat float64) (values [][]byte, distinct int) {
	rng := rand.New(rand.NewPCG(7, 11))
	var texts []string
	for i := range n {
		text := fmt.Sprintf("a great product, %s number %d", run, i)
		if i > 0 && rng.Float64() < repeat {
			text = texts[rng.IntN(len(texts))]
		} else {
			distinct++
		}
		texts = append(texts, text)
		values = append(values, fmt.Appendf(nil, `{"id":%d,"review":{"body":%q}}`, i, text))
	}
	return values, distinct
}

// cacheRun is one enrich-service configuration over a Kafka topic with a
// Redis cache.
func cacheEnv(b backend, run, group, input string, model *llmtest.Server, redisAddr string) []string {
	return append([]string{
		"SLUICE_GROUP=" + group,
		"SLUICE_INPUT=" + input,
		"SLUICE_OUTPUT=" + run + ".out",
		"SLUICE_DEAD_LETTER=" + run + ".dlq",
		"SLUICE_MODEL_URL=" + model.BaseURL(),
		"SLUICE_MODEL=llmtest",
		"SLUICE_TASK=sentiment",
		"SLUICE_FIELDS=review.body",
		"SLUICE_CONCURRENCY=16",
		"SLUICE_INSTANCE_ID=" + group + "-0",
		"SLUICE_HEALTH_ADDR=127.0.0.1:0",
		"SLUICE_LOG_FORMAT=json",
		"SLUICE_CACHE=redis",
		// The preflight's one-token call would count as an answered
		// event: the test counts the model's answers to the events alone.
		"SLUICE_SKIP_PREFLIGHT=true",
		"SLUICE_CACHE_REDIS_ADDR=" + redisAddr,
	}, b.flags...)
}

// drained waits until the service has processed want events with nothing
// left to consume, and returns its health.
func drained(t *testing.T, s *service, want int) sluice.Health {
	t.Helper()
	return waitHealth(t, s, 120*time.Second, fmt.Sprintf("%d events processed, lag 0", want), func(h sluice.Health) bool {
		return h.ConsumerLag == 0 && h.InFlight == 0 && h.Processed >= uint64(want)
	})
}

// cacheHits reads the cache's hit count from the health document.
func cacheHits(h sluice.Health) float64 {
	m, _ := h.Parts["model"].(map[string]any)
	c, _ := m["cache"].(map[string]any)
	v, _ := c["hits"].(float64)
	return v
}

// Two consumer groups read the same 10,000 events: the second pass makes no
// model call at all. Then, events whose texts repeat 30 % of the time cost
// model calls for about 70 % of them.
func TestCacheSavesModelCallsKafka(t *testing.T) {
	b := kafkaBackend(t)
	redisAddr := serverAddr(t, "REDIS_ADDR", "no Redis server for the shared cache: run `scripts/redis.sh start` and set REDIS_ADDR=127.0.0.1:6379")
	bin := buildBinaries(t)
	run := fmt.Sprintf("e2e-cache-%d", time.Now().UnixNano())
	input := run + ".in"
	t.Cleanup(func() { b.remove(input, run+".out", run+".dlq", run+".rep") })
	model := llmtest.NewServer(llmtest.WithLatency(llmtest.Fixed(time.Millisecond)))
	defer model.Close()

	values, distinct := cacheValues(run, cacheEvents, 0)
	b.publish(t, input, values)
	for pass, group := range []string{run + "-a", run + "-b"} {
		before := model.Stats().Events
		s := startService(t, bin, cacheEnv(b, run, group, input, model, redisAddr), group)
		h := drained(t, s, cacheEvents)
		s.stop(t, syscall.SIGTERM, 0)
		calls := model.Stats().Events - before
		t.Logf("pass %d (group %s): %d events, %d answered by the model, %.0f cache hits", pass+1, group, h.Processed, calls, cacheHits(h))
		switch pass {
		case 0:
			if calls != int64(distinct) {
				t.Errorf("first pass: the model answered %d events, want %d", calls, distinct)
			}
		case 1:
			if calls != 0 {
				t.Errorf("second pass: the model answered %d events, want 0", calls)
			}
			if cacheHits(h) != cacheEvents {
				t.Errorf("second pass: %.0f cache hits in /healthz, want %d", cacheHits(h), cacheEvents)
			}
		}
	}

	// 30 % repeats.
	rep := run + ".rep"
	values, distinct = cacheValues(run+"-rep", cacheEvents, 0.3)
	b.publish(t, rep, values)
	before := model.Stats().Events
	s := startService(t, bin, cacheEnv(b, run, run+"-rep", rep, model, redisAddr), "repeats")
	drained(t, s, cacheEvents)
	s.stop(t, syscall.SIGTERM, 0)
	calls := model.Stats().Events - before
	share := float64(calls) / cacheEvents
	t.Logf("30 %% repeats: %d distinct texts in %d events, %d answered by the model (%.1f %%)", distinct, cacheEvents, calls, 100*share)
	// Two events with the same text in flight at once both miss; with 16
	// calls at once that is rare.
	if calls < int64(distinct) || float64(calls) > float64(distinct)*1.02 {
		t.Errorf("the model answered %d events, want %d (the distinct texts) up to 2 %% more", calls, distinct)
	}
}

// SIGKILLs mid-stream: the events delivered again after each kill were
// answered before, and cost no second call; only the calls in flight at the
// moment of a kill (at most the concurrency) are paid twice.
func TestCacheSparesRedeliveriesAfterSIGKILLKafka(t *testing.T) {
	b := kafkaBackend(t)
	redisAddr := serverAddr(t, "REDIS_ADDR", "no Redis server for the shared cache: run `scripts/redis.sh start` and set REDIS_ADDR=127.0.0.1:6379")
	bin := buildBinaries(t)
	run := fmt.Sprintf("e2e-cachekill-%d", time.Now().UnixNano())
	input := run + ".in"
	t.Cleanup(func() { b.remove(input, run+".out", run+".dlq") })
	model := llmtest.NewServer(llmtest.WithLatency(llmtest.Fixed(5 * time.Millisecond)))
	defer model.Close()
	const n, kills, concurrency = 6000, 3, 16
	values, distinct := cacheValues(run, n, 0)
	b.publish(t, input, values)
	env := cacheEnv(b, run, run, input, model, redisAddr)
	var redelivered uint64
	for k := range kills {
		s := startService(t, bin, env, fmt.Sprintf("run%d", k+1))
		// Counts are the process's own: each run takes a share, or what is
		// left.
		h := waitHealth(t, s, 120*time.Second, "a share of the events processed", func(h sluice.Health) bool {
			return h.Processed >= n/(kills+1) || (h.ConsumerLag == 0 && h.InFlight == 0 && h.Processed > 0)
		})
		_ = s.cmd.Process.Signal(syscall.SIGKILL)
		s.wait(t, 30*time.Second)
		redelivered += uint64(cacheHits(h))
	}
	s := startService(t, bin, env, "final")
	h := drained(t, s, 1)
	s.stop(t, syscall.SIGTERM, 0)
	calls := model.Stats().Events
	t.Logf("%d SIGKILLs over %d events: the model answered %d events for %d distinct texts; the last run had %.0f cache hits",
		kills, n, calls, distinct, cacheHits(h))
	if calls < int64(distinct) {
		t.Fatalf("the model answered %d events, fewer than the %d distinct texts: events were lost", calls, distinct)
	}
	if extra := calls - int64(distinct); extra > kills*concurrency {
		t.Errorf("%d extra model calls after %d kills, want at most %d (the calls in flight at each kill)", extra, kills, kills*concurrency)
	}
	if cacheHits(h) == 0 && redelivered == 0 {
		t.Errorf("no cache hit after %d kills: redelivered events were answered again", kills)
	}
}
