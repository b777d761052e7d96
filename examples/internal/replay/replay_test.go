package replay

import (
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice"
)

func h(k, v string) Header { return Header{Key: k, Value: []byte(v)} }

// TestReplayHeaders: the failure and origin headers a dead letter adds are
// dropped, the event's own headers kept in order (an upstream source_topic
// included), and a second replay counts 2 and keeps the first input.
func TestReplayHeaders(t *testing.T) {
	msg := &sluice.Message{
		Headers: []Header{h("trace", "abc"), h("source_topic", "upstream")},
		Origin:  sluice.Origin{Topic: "in", Partition: 2, Offset: 7},
	}
	dl := sluice.DeadLetter{Msg: msg, Reason: "HTTP 503", Attempts: 4, FailedAt: time.Now()}
	got := replayHeaders(dl.Headers(), msg.Origin)
	want := []Header{h("trace", "abc"), h("source_topic", "upstream"), h("replay_count", "1"),
		h("replay_source_topic", "in"), h("replay_source_partition", "2"), h("replay_source_offset", "7"),
		h("replay_idempotency_key", "in/2@7")}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("first replay:\n got %q\nwant %q", got, want)
	}
	// The replayed event fails again at its new offset.
	again := &sluice.Message{Headers: got, Origin: sluice.Origin{Topic: "in", Partition: 1, Offset: 900}}
	dl = sluice.DeadLetter{Msg: again, Reason: "HTTP 503 again"}
	got = replayHeaders(dl.Headers(), again.Origin)
	want = append(append(want[:2:2], want[3:]...), h("replay_count", "2"))
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("second replay:\n got %q\nwant %q", got, want)
	}
	// A record that is not a dead letter keeps its headers; a garbage
	// count restarts at 1.
	got = replayHeaders([]Header{h("replay_count", "many")}, sluice.Origin{})
	if !reflect.DeepEqual(got, []Header{h("replay_count", "1")}) {
		t.Fatalf("garbage count: %q", got)
	}
}

func TestReplayFields(t *testing.T) {
	values := map[string]any{
		"payload": `{"id":1}`, "trace": "abc", "redisstream_error": "x",
		"failure_reason": "HTTP 503", "failure_attempts": "1", "failure_time": "2026-01-01T00:00:00Z",
		"source_stream": "in", "source_id": "5-0", "idempotency_key": "in/5-0", "replay_count": "1",
		"replay_source_stream": "in", "replay_source_id": "1-0",
	}
	got := replayFields(values, sluice.Origin{Topic: "in", ID: "5-0", Offset: -1})
	want := []any{"payload", `{"id":1}`, "replay_source_id", "1-0", "replay_source_stream", "in", "trace", "abc", "replay_count", "2"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %q\nwant %q", got, want)
	}
	got = replayFields(map[string]any{"payload": "{}", "failure_reason": "r"}, sluice.Origin{Topic: "in", ID: "5-0", Offset: -1})
	want = []any{"payload", "{}", "replay_count", "1", "replay_source_stream", "in", "replay_source_id", "5-0", "replay_idempotency_key", "in/5-0"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("first replay: got %q\nwant %q", got, want)
	}
}

func TestFilter(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC)
	l := Letter{Reason: "openai: HTTP 503 server_error", FailedAt: t0, Origin: sluice.Origin{Topic: "reviews"}}
	for _, c := range []struct {
		f    Filter
		want bool
	}{
		{Filter{}, true},
		{Filter{Reason: regexp.MustCompile(`HTTP 5\d\d`)}, true},
		{Filter{Reason: regexp.MustCompile(`^HTTP`)}, false},
		{Filter{Since: t0}, true}, // Since included
		{Filter{Since: t0.Add(time.Nanosecond)}, false},
		{Filter{Until: t0}, false}, // Until excluded
		{Filter{Until: t0.Add(time.Second)}, true},
		{Filter{Origin: "reviews"}, true},
		{Filter{Origin: "other"}, false},
	} {
		if got := c.f.Match(l); got != c.want {
			t.Errorf("%s: Match = %v, want %v", c.f, got, c.want)
		}
	}
	// A letter without a valid failure_time is outside any time range.
	if (Filter{Since: t0}).Match(Letter{}) || (Filter{Until: t0}).Match(Letter{}) {
		t.Error("a letter without failure_time matched a time range")
	}
}

func TestDefaultGroup(t *testing.T) {
	a := Config{DeadLetter: "dlq", FilterKey: "reason=503"}
	same := Config{DeadLetter: "dlq", FilterKey: "reason=503", Limit: 7, DryRun: true}
	if a.DefaultGroup() != same.DefaultGroup() || a.group() != a.DefaultGroup() || !strings.HasPrefix(a.group(), "sluice-replay.") {
		t.Fatalf("DefaultGroup %q depends on more than the topic, destination and filter (%q)", a.DefaultGroup(), same.DefaultGroup())
	}
	for _, b := range []Config{{DeadLetter: "dlq2", FilterKey: "reason=503"}, {DeadLetter: "dlq", To: "x", FilterKey: "reason=503"}, {DeadLetter: "dlq"}} {
		if b.DefaultGroup() == a.DefaultGroup() {
			t.Errorf("%+v has the group of %+v", b, a)
		}
	}
	if (Config{Group: "mine"}).group() != "mine" {
		t.Error("Group ignored")
	}
}

func TestSummaryReasons(t *testing.T) {
	s := newSummary(Config{DeadLetter: "dlq"})
	for i := range maxReasons + 10 {
		s.countReason(string(rune('a'+i%26)) + string(rune('0'+i/26)))
	}
	if len(s.ByReason) != maxReasons+1 || s.ByReason[OtherReasons] != 10 {
		t.Fatalf("%d reasons, %d other", len(s.ByReason), s.ByReason[OtherReasons])
	}
}
