package verify

import (
	"context"
	"testing"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/sluicehq/sluice"
)

func TestCounter(t *testing.T) {
	c := NewCounter()
	o := func(off int64) sluice.Origin { return sluice.Origin{Topic: "in", Partition: 1, Offset: off} }
	for i := range int64(5) {
		c.Input(o(i))
	}
	c.Enriched(o(0))
	c.Enriched(o(1))
	c.Enriched(o(1))   // duplicate after a redelivery
	c.DeadLetter(o(1)) // enriched once, dead-lettered on another delivery
	c.DeadLetter(o(2))
	c.Enriched(o(99)) // input no longer there
	c.NoOrigin()
	// o(3) and o(4) are missing.
	got := c.Report()
	want := Report{InputCount: 5, EnrichedCount: 2, DeadLetterCount: 1, MissingCount: 2,
		DuplicateCount: 2, EnrichmentRate: 0.4, UnmatchedCount: 2}
	if got != want {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
	if got.OK(0.1) {
		t.Error("OK with missing inputs")
	}
	if want := `{"input_count":5,"enriched_count":2,"dead_letter_count":1,"missing_count":2,"duplicate_count":2,"enrichment_rate":0.4,"unmatched_count":2,"replayed_count":0}`; got.JSON() != want {
		t.Errorf("JSON %s", got.JSON())
	}
	if (Report{}).EnrichmentRate != 0 || NewCounter().Report().EnrichmentRate != 0 {
		t.Error("rate without input")
	}
}

func TestOriginFromHeaders(t *testing.T) {
	get := func(m map[string]string) func(string) (string, bool) {
		return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
	}
	o, ok := OriginFromHeaders(get(map[string]string{"source_topic": "t", "source_partition": "3", "source_offset": "42"}))
	if !ok || o != (sluice.Origin{Topic: "t", Partition: 3, Offset: 42}) {
		t.Errorf("kafka origin %+v %v", o, ok)
	}
	o, ok = OriginFromHeaders(get(map[string]string{"source_stream": "s", "source_id": "1-2"}))
	if !ok || o != (sluice.Origin{Topic: "s", ID: "1-2", Offset: -1}) {
		t.Errorf("stream origin %+v %v", o, ok)
	}
	for _, m := range []map[string]string{{}, {"source_topic": "t", "source_partition": "x", "source_offset": "1"}, {"source_stream": "s"}} {
		if _, ok := OriginFromHeaders(get(m)); ok {
			t.Errorf("%v: want no origin", m)
		}
	}
}

func TestNextID(t *testing.T) {
	for in, want := range map[string]string{"5-0": "5-1", "7-18446744073709551615": "8-0"} {
		if got, err := nextID(in); err != nil || got != want {
			t.Errorf("nextID(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := nextID("bogus"); err == nil {
		t.Error("nextID(bogus): no error")
	}
}

// TestRedis pages through streams longer than one XRANGE page.
func TestRedis(t *testing.T) {
	srv := miniredis.RunT(t)
	c := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer c.Close()
	ctx := context.Background()
	n := redisPage + 10
	var ids []string
	for range n {
		ids = append(ids, c.XAdd(ctx, &redis.XAddArgs{Stream: "in", Values: []any{"payload", "{}"}}).Val())
	}
	for i, id := range ids {
		switch {
		case i%100 == 0:
			c.XAdd(ctx, &redis.XAddArgs{Stream: "dlq", Values: []any{"payload", "{}", "source_stream", "in", "source_id", id}})
		case i == 5: // missing
		default:
			c.XAdd(ctx, &redis.XAddArgs{Stream: "out", Values: []any{"payload", "{}", "source_stream", "in", "source_id", id}})
		}
	}
	c.XAdd(ctx, &redis.XAddArgs{Stream: "dlq", Values: []any{"payload", "{}", "source_stream", "other", "source_id", "1-1"}})
	got, err := Redis(ctx, c, Topics{Input: "in", Output: "out", DeadLetter: "dlq"})
	if err != nil {
		t.Fatal(err)
	}
	dead := (n + 99) / 100
	if got.InputCount != n || got.DeadLetterCount != dead || got.MissingCount != 1 || got.EnrichedCount != n-dead-1 || got.UnmatchedCount != 0 {
		t.Errorf("got %+v", got)
	}
}

// TestRedisReplayed: a replayed input is no new input, and its output
// counts for the event it replays, which is then enriched, not lost.
func TestRedisReplayed(t *testing.T) {
	srv := miniredis.RunT(t)
	c := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer c.Close()
	ctx := context.Background()
	orig := c.XAdd(ctx, &redis.XAddArgs{Stream: "in", Values: []any{"payload", "{}"}}).Val()
	c.XAdd(ctx, &redis.XAddArgs{Stream: "dlq", Values: []any{"payload", "{}", "failure_reason", "503", "source_stream", "in", "source_id", orig}})
	again := c.XAdd(ctx, &redis.XAddArgs{Stream: "in", Values: []any{"payload", "{}", "replay_count", "1", "replay_source_stream", "in", "replay_source_id", orig}}).Val()
	c.XAdd(ctx, &redis.XAddArgs{Stream: "out", Values: []any{"payload", "{}", "replay_source_stream", "in", "replay_source_id", orig, "source_stream", "in", "source_id", again}})
	got, err := Redis(ctx, c, Topics{Input: "in", Output: "out", DeadLetter: "dlq"})
	if err != nil {
		t.Fatal(err)
	}
	if got.InputCount != 1 || got.EnrichedCount != 1 || got.MissingCount != 0 || got.ReplayedCount != 1 || got.UnmatchedCount != 0 || got.EnrichmentRate != 1 {
		t.Errorf("got %+v", got)
	}
}
