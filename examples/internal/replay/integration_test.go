package replay

import (
	"context"
	"errors"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/redis/go-redis/v9"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/kafka"
)

// serverAddr reads env, or skips the test saying how to get a server; under
// CI=true it fails instead.
func serverAddr(t *testing.T, env, help string) string {
	t.Helper()
	if v := os.Getenv(env); v != "" {
		return v
	}
	if os.Getenv("CI") == "true" {
		t.Fatal(help)
	}
	t.Skip(help)
	return ""
}

// letters returns n dead letters of input events with key k<i>, value
// {"id":i} and a trace header, the odd ones failed with a 503, the even
// ones with a 400.
func letters(n int, origin func(i int) sluice.Origin) []sluice.DeadLetter {
	out := make([]sluice.DeadLetter, n)
	for i := range out {
		reason := "openai: HTTP 503 server_error"
		if i%2 == 0 {
			reason = "openai: HTTP 400 invalid_request"
		}
		out[i] = sluice.DeadLetter{
			Msg: &sluice.Message{Key: fmt.Appendf(nil, "k%d", i), Value: fmt.Appendf(nil, `{"id":%d}`, i),
				Headers: []sluice.Header{h("trace", fmt.Sprint(i))}, Origin: origin(i)},
			Reason: reason, Attempts: 4, FailedAt: time.Now(),
		}
	}
	return out
}

// TestKafkaWriteFailure: when the events cannot be written, nothing is
// committed, and the next run replays every one, with the original key,
// value and headers; a third run finds nothing left.
func TestKafkaWriteFailure(t *testing.T) {
	brokers := strings.Split(serverAddr(t, "KAFKA_BROKERS", "no Kafka broker: run scripts/kafka.sh start and set KAFKA_BROKERS"), ",")
	ctx := context.Background()
	base, err := kafka.ClientConfig(kafka.WithClientID("replay-test"))
	if err != nil {
		t.Fatal(err)
	}
	client, err := sarama.NewClient(brokers, base)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	admin, err := sarama.NewClusterAdminFromClient(client)
	if err != nil {
		t.Fatal(err)
	}
	run := fmt.Sprintf("replay-unit-%d", time.Now().UnixNano())
	dlq, dest := run+".dlq", run+".dest"
	if err := admin.CreateTopic(dlq, &sarama.TopicDetail{NumPartitions: 2, ReplicationFactor: 1}, false); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = admin.DeleteTopic(dlq); _ = admin.DeleteTopic(dest) })
	const n = 20
	ls := letters(n, func(i int) sluice.Origin {
		return sluice.Origin{Topic: "in", Partition: int32(i % 3), Offset: int64(i)}
	})
	sink, err := kafka.NewSink(ctx, brokers, run+".unused", kafka.WithDeadLetterTopic(dlq))
	if err != nil {
		t.Fatal(err)
	}
	if err := sink.WriteDeadLetters(ctx, ls); err != nil {
		t.Fatal(err)
	}
	_ = sink.Close()

	cfg := Config{DeadLetter: dlq, To: dest, Filter: Filter{Reason: regexpOf(t, "HTTP 503")}, Batch: 4}
	sum, err := Kafka(ctx, brokers, base, cfg)
	if err == nil {
		t.Fatalf("replay into a topic that does not exist: no error (%+v)", sum)
	}
	t.Logf("expected failure: %v", err)
	committed, err := fetchCommitted(client, cfg.group(), dlq, []int32{0, 1})
	if err != nil {
		t.Fatal(err)
	}
	if committed[0] != -1 || committed[1] != -1 || sum.Replayed != 0 {
		t.Fatalf("after a failed write: committed %v, replayed %d", committed, sum.Replayed)
	}

	if err := admin.CreateTopic(dest, &sarama.TopicDetail{NumPartitions: 1, ReplicationFactor: 1}, false); err != nil {
		t.Fatal(err)
	}
	if err := client.RefreshMetadata(dest); err != nil {
		t.Fatal(err)
	}
	sum, err = Kafka(ctx, brokers, base, cfg)
	if err != nil || sum.Replayed != n/2 || sum.Read != n || sum.Matched != n/2 {
		t.Fatalf("second run: %+v, %v; want %d of %d replayed", sum, err, n/2, n)
	}
	if sum, err = Kafka(ctx, brokers, base, cfg); err != nil || sum.Replayed != 0 || sum.Read != 0 {
		t.Fatalf("third run: %+v, %v; want nothing left", sum, err)
	}

	// What was written: the odd events, each once, as they were.
	consumer, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		t.Fatal(err)
	}
	defer consumer.Close()
	pc, err := consumer.ConsumePartition(dest, 0, sarama.OffsetOldest)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	seen := map[string]bool{}
	for range n / 2 {
		var m *sarama.ConsumerMessage
		select {
		case m = <-pc.Messages():
		case <-time.After(30 * time.Second):
			t.Fatalf("only %d events in %s", len(seen), dest)
		}
		var i int
		if _, err := fmt.Sscanf(string(m.Key), "k%d", &i); err != nil || i%2 != 1 || seen[string(m.Key)] {
			t.Fatalf("unexpected key %q (seen %v)", m.Key, seen[string(m.Key)])
		}
		seen[string(m.Key)] = true
		var hs []Header
		for _, rh := range m.Headers {
			hs = append(hs, Header{Key: string(rh.Key), Value: rh.Value})
		}
		want := []Header{h("trace", fmt.Sprint(i)), h("replay_count", "1"), h("replay_source_topic", "in"),
			h("replay_source_partition", fmt.Sprint(i%3)), h("replay_source_offset", fmt.Sprint(i)),
			h("replay_idempotency_key", fmt.Sprintf("in/%d@%d", i%3, i))}
		if string(m.Value) != fmt.Sprintf(`{"id":%d}`, i) || !reflect.DeepEqual(hs, want) {
			t.Fatalf("event %d: value %s headers %q", i, m.Value, hs)
		}
	}
}

// TestRedisWriteFailure: Redis refuses the writes (WRONGTYPE), so nothing
// is acknowledged; once the destination is fixed, the next run replays the
// pending entries, then the rest, each once.
func TestRedisWriteFailure(t *testing.T) {
	addr := serverAddr(t, "REDIS_ADDR", "no Redis server: run scripts/redis.sh start and set REDIS_ADDR")
	ctx := context.Background()
	client := redis.NewClient(&redis.Options{Addr: addr})
	defer client.Close()
	run := fmt.Sprintf("replay-unit-%d", time.Now().UnixNano())
	dlq, dest := run+".dlq", run+".dest"
	t.Cleanup(func() { client.Del(context.Background(), dlq, dest) })
	const n = 20
	ls := letters(n, func(i int) sluice.Origin { return sluice.Origin{Topic: "in", ID: fmt.Sprintf("%d-0", i+1), Offset: -1} })
	for _, l := range ls {
		values := []any{"payload", string(l.Msg.Value), "key", string(l.Msg.Key)}
		for _, hd := range l.Headers() {
			values = append(values, hd.Key, string(hd.Value))
		}
		if err := client.XAdd(ctx, &redis.XAddArgs{Stream: dlq, Values: values}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if err := client.Set(ctx, dest, "not a stream", 0).Err(); err != nil {
		t.Fatal(err)
	}
	cfg := Config{DeadLetter: dlq, To: dest, Batch: 8}
	sum, err := Redis(ctx, client, cfg)
	if err == nil || !strings.Contains(err.Error(), "WRONGTYPE") || sum.Replayed != 0 {
		t.Fatalf("replay into a string key: %+v, %v; want a WRONGTYPE error", sum, err)
	}
	pending, err := client.XPending(ctx, dlq, cfg.group()).Result()
	if err != nil || pending.Count != 8 {
		t.Fatalf("after the failed batch: %+v, %v; want its 8 entries pending", pending, err)
	}

	client.Del(ctx, dest)
	dry, err := Redis(ctx, client, Config{DeadLetter: dlq, To: dest, Batch: 8, DryRun: true})
	if err != nil || dry.Matched != n || dry.Replayed != 0 || dry.ByReason["openai: HTTP 503 server_error"] != n/2 {
		t.Fatalf("dry run: %+v, %v", dry, err)
	}
	sum, err = Redis(ctx, client, cfg)
	if err != nil || sum.Replayed != n {
		t.Fatalf("second run: %+v, %v; want all %d replayed", sum, err, n)
	}
	if sum, err = Redis(ctx, client, cfg); err != nil || sum.Replayed != 0 {
		t.Fatalf("third run: %+v, %v; want nothing left", sum, err)
	}
	if dry, err = Redis(ctx, client, Config{DeadLetter: dlq, To: dest, Batch: 8, DryRun: true}); err != nil || dry.Matched != 0 {
		t.Fatalf("dry run after the replay: %+v, %v; want nothing left", dry, err)
	}
	entries, err := client.XRange(ctx, dest, "-", "+").Result()
	if err != nil || len(entries) != n {
		t.Fatalf("%d entries in %s (%v), want %d", len(entries), dest, err, n)
	}
	for i, e := range entries {
		want := map[string]any{"payload": fmt.Sprintf(`{"id":%d}`, i), "key": fmt.Sprintf("k%d", i), "trace": fmt.Sprint(i),
			"replay_count": "1", "replay_source_stream": "in", "replay_source_id": fmt.Sprintf("%d-0", i+1),
			"replay_idempotency_key": fmt.Sprintf("in/%d-0", i+1)}
		if !reflect.DeepEqual(e.Values, want) {
			t.Fatalf("entry %d: %v\nwant %v", i, e.Values, want)
		}
	}
	if _, err := Redis(ctx, client, Config{DeadLetter: run + ".missing"}); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("missing stream: %v", err)
	}
}

func regexpOf(t *testing.T, s string) *regexp.Regexp {
	t.Helper()
	return regexp.MustCompile(s)
}

// TestInterruptedReplayResumes cancels each replay right after its first
// committed batch, as a SIGTERM would, and runs it again until it is done:
// every event arrives, and none twice (a cancelled replay commits what it
// wrote before it stops).
func TestInterruptedReplayResumes(t *testing.T) {
	const n, batch = 50, 8
	t.Run("kafka", func(t *testing.T) {
		brokers := strings.Split(serverAddr(t, "KAFKA_BROKERS", "no Kafka broker: run scripts/kafka.sh start and set KAFKA_BROKERS"), ",")
		ctx := context.Background()
		base, err := kafka.ClientConfig(kafka.WithClientID("replay-test"))
		if err != nil {
			t.Fatal(err)
		}
		admin, err := sarama.NewClusterAdmin(brokers, base)
		if err != nil {
			t.Fatal(err)
		}
		defer admin.Close()
		run := fmt.Sprintf("replay-int-%d", time.Now().UnixNano())
		dlq, dest := run+".dlq", run+".dest"
		for _, topic := range []string{dlq, dest} {
			if err := admin.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: 1, ReplicationFactor: 1}, false); err != nil {
				t.Fatal(err)
			}
		}
		t.Cleanup(func() { _ = admin.DeleteTopic(dlq); _ = admin.DeleteTopic(dest) })
		sink, err := kafka.NewSink(ctx, brokers, run+".unused", kafka.WithDeadLetterTopic(dlq))
		if err != nil {
			t.Fatal(err)
		}
		if err := sink.WriteDeadLetters(ctx, letters(n, func(i int) sluice.Origin { return sluice.Origin{Topic: "in", Offset: int64(i)} })); err != nil {
			t.Fatal(err)
		}
		_ = sink.Close()
		total, runs := interruptUntilDone(t, func(ctx context.Context, c Config) (Summary, error) {
			return Kafka(ctx, brokers, base, c)
		}, Config{DeadLetter: dlq, To: dest, Batch: batch})
		client, err := sarama.NewClient(brokers, base)
		if err != nil {
			t.Fatal(err)
		}
		defer client.Close()
		end, err := client.GetOffset(dest, 0, sarama.OffsetNewest)
		if err != nil || total != n || end != n {
			t.Fatalf("%d runs replayed %d events, %s holds %d (%v); want %d", runs, total, dest, end, err, n)
		}
	})
	t.Run("redis", func(t *testing.T) {
		addr := serverAddr(t, "REDIS_ADDR", "no Redis server: run scripts/redis.sh start and set REDIS_ADDR")
		ctx := context.Background()
		client := redis.NewClient(&redis.Options{Addr: addr})
		defer client.Close()
		run := fmt.Sprintf("replay-int-%d", time.Now().UnixNano())
		dlq, dest := run+".dlq", run+".dest"
		t.Cleanup(func() { client.Del(context.Background(), dlq, dest) })
		for _, l := range letters(n, func(i int) sluice.Origin { return sluice.Origin{Topic: "in", ID: fmt.Sprintf("%d-0", i+1), Offset: -1} }) {
			values := []any{"payload", string(l.Msg.Value)}
			for _, hd := range l.Headers() {
				values = append(values, hd.Key, string(hd.Value))
			}
			client.XAdd(ctx, &redis.XAddArgs{Stream: dlq, Values: values})
		}
		total, runs := interruptUntilDone(t, func(ctx context.Context, c Config) (Summary, error) {
			return Redis(ctx, client, c)
		}, Config{DeadLetter: dlq, To: dest, Batch: batch})
		if got := client.XLen(ctx, dest).Val(); total != n || got != n {
			t.Fatalf("%d runs replayed %d events, %s holds %d; want %d", runs, total, dest, got, n)
		}
	})
}

// interruptUntilDone runs replay with a context cancelled after the first
// committed batch of each run, until a run ends on its own; it returns the
// events replayed in all and the number of runs.
func interruptUntilDone(t *testing.T, replay func(context.Context, Config) (Summary, error), c Config) (total, runs int) {
	t.Helper()
	for runs = 1; runs <= 50; runs++ {
		ctx, cancel := context.WithCancel(context.Background())
		c.Progress = func(s Summary) {
			if s.Replayed > 0 {
				cancel()
			}
		}
		sum, err := replay(ctx, c)
		cancel()
		total += sum.Replayed
		if err == nil {
			return total, runs
		}
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("run %d: %v", runs, err)
		}
	}
	t.Fatalf("not done after %d interrupted runs (%d replayed)", runs-1, total)
	return total, runs
}
