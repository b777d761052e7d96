// Package replay puts dead letters back: it reads a dead-letter topic (Kafka)
// or stream (Redis) written by sluice's sinks, keeps the letters that match a
// [Filter], and republishes each original event (key, value and headers, the
// failure and origin headers removed, a replay counter added) to its input or
// to another topic or stream.
//
// A replay is a batch job with its own consumer group: it reads from where
// the group stopped up to the end the topic or stream had when the replay
// began, and commits (Kafka) or acknowledges (Redis) a batch only once every
// event of the batch has been written, so an interrupted replay resumes
// where it stopped and writes at least once. Letters that arrive during a
// replay, such as replayed events that fail again, wait for the next run.
//
// The examples/replay command is its front end.
package replay

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sluicehq/sluice"
)

// Headers a replayed event carries. replay_count counts the replays of the
// event (1 after the first); the replay_source_* headers name the event's
// first input (as the source_* headers of [sluice.AppendOriginHeaders] do),
// so that a verifier counts the replay's outcome for the original event.
const (
	HeaderReplayCount  = "replay_count"
	HeaderReplayPrefix = "replay_"
)

// maxReasons caps the distinct reasons a [Summary] counts one by one; the
// rest are counted under OtherReasons.
const maxReasons = 100

// OtherReasons is the [Summary.ByReason] key of the letters whose reason
// came after the first 100 distinct ones.
const OtherReasons = "(other reasons)"

// Filter selects dead letters. The zero Filter selects every letter.
type Filter struct {
	// Reason, when set, must match the letter's failure_reason.
	Reason *regexp.Regexp
	// Since and Until, when set, bound the letter's failure_time: Since
	// included, Until excluded.
	Since, Until time.Time
	// Origin, when set, must equal the topic or stream the event was first
	// read from (the letter's source_topic or source_stream).
	Origin string
}

// String describes the filter; equal filters give equal strings.
func (f Filter) String() string {
	var parts []string
	if f.Reason != nil {
		parts = append(parts, "reason="+f.Reason.String())
	}
	if !f.Since.IsZero() {
		parts = append(parts, "since="+f.Since.UTC().Format(time.RFC3339Nano))
	}
	if !f.Until.IsZero() {
		parts = append(parts, "until="+f.Until.UTC().Format(time.RFC3339Nano))
	}
	if f.Origin != "" {
		parts = append(parts, "origin="+f.Origin)
	}
	if len(parts) == 0 {
		return "all"
	}
	return strings.Join(parts, " ")
}

// Letter is what a filter looks at in a dead letter.
type Letter struct {
	Reason   string
	FailedAt time.Time // zero when the letter has no valid failure_time
	Origin   sluice.Origin
}

// Match reports whether the filter selects l.
func (f Filter) Match(l Letter) bool {
	if f.Reason != nil && !f.Reason.MatchString(l.Reason) {
		return false
	}
	if !f.Since.IsZero() && (l.FailedAt.IsZero() || l.FailedAt.Before(f.Since)) {
		return false
	}
	if !f.Until.IsZero() && (l.FailedAt.IsZero() || !l.FailedAt.Before(f.Until)) {
		return false
	}
	if f.Origin != "" && l.Origin.Topic != f.Origin {
		return false
	}
	return true
}

// Config is one replay.
type Config struct {
	// DeadLetter is the topic or stream to read.
	DeadLetter string
	// To is where replayed events go; empty means back to each event's own
	// input (its source_topic or source_stream).
	To string
	// Group is the replay's consumer group; empty means [Config.DefaultGroup].
	Group string
	// FilterKey names the filter in [Config.DefaultGroup]; empty means
	// Filter.String(). A command line passes its filter flags as given, so
	// that "-since 2h" names the same group on every run.
	FilterKey string
	// Filter selects the letters to replay.
	Filter Filter
	// DryRun reads and counts, and writes and commits nothing.
	DryRun bool
	// Limit, when above 0, stops the replay once it has replayed that many
	// events (the rest waits for the next run).
	Limit int
	// Batch is how many letters are written and committed together
	// (default 256).
	Batch int
	// Progress, when set, is called after each committed batch.
	Progress func(Summary)
}

func (c Config) batch() int {
	if c.Batch <= 0 {
		return 256
	}
	return c.Batch
}

// DefaultGroup is the consumer group of a replay that names none:
// "sluice-replay." followed by a hash of the dead-letter topic, the
// destination and the filter. Running the same replay again resumes it; a
// replay with another filter or destination starts from the oldest letter.
func (c Config) DefaultGroup() string {
	h := fnv.New64a()
	key := c.FilterKey
	if key == "" {
		key = c.Filter.String()
	}
	fmt.Fprintf(h, "%s\x00%s\x00%s", c.DeadLetter, c.To, key)
	return "sluice-replay." + strconv.FormatUint(h.Sum64(), 16)
}

func (c Config) group() string {
	if c.Group != "" {
		return c.Group
	}
	return c.DefaultGroup()
}

// Summary counts a replay's work. Its JSON field names are stable.
type Summary struct {
	DryRun     bool   `json:"dry_run"`
	DeadLetter string `json:"dead_letter"`
	Group      string `json:"group"`
	Filter     string `json:"filter"`
	// Read is how many records were read from the dead-letter topic.
	Read int `json:"read"`
	// Matched is how many of them the filter selected.
	Matched int `json:"matched"`
	// Replayed is how many events were written back (0 in a dry run).
	Replayed int `json:"replayed"`
	// Skipped counts the selected records that cannot be replayed: not a
	// dead letter (no failure_reason), or no destination (no -to and no
	// origin).
	Skipped int `json:"skipped"`
	// ByReason counts the selected letters by failure_reason.
	ByReason map[string]int `json:"by_reason"`
	// ByDestination counts the replayed (or, in a dry run, replayable)
	// events by the topic or stream they go to.
	ByDestination map[string]int `json:"by_destination"`
	// Remaining is true when the replay stopped at its -limit before the
	// end.
	Remaining bool `json:"remaining"`
}

func newSummary(c Config) Summary {
	return Summary{DryRun: c.DryRun, DeadLetter: c.DeadLetter, Group: c.group(), Filter: c.Filter.String(),
		ByReason: map[string]int{}, ByDestination: map[string]int{}}
}

func (s *Summary) countReason(reason string) {
	if _, ok := s.ByReason[reason]; !ok && len(s.ByReason) >= maxReasons {
		reason = OtherReasons
	}
	s.ByReason[reason]++
}

// JSON returns the summary as one line of JSON.
func (s Summary) JSON() string {
	b, err := json.Marshal(s)
	if err != nil { // cannot happen: strings, numbers and maps of them
		return fmt.Sprintf(`{"error":%q}`, err.Error())
	}
	return string(b)
}

// Text renders the summary for people: totals, then counts by reason, most
// frequent first.
func (s Summary) Text() string {
	var b strings.Builder
	verb := "replayed"
	if s.DryRun {
		verb = "would replay"
	}
	fmt.Fprintf(&b, "%s: read %d, matched %d (%s), %s %d, skipped %d (group %s)\n",
		s.DeadLetter, s.Read, s.Matched, s.Filter, verb, s.replayable(), s.Skipped, s.Group)
	type kv struct {
		k string
		v int
	}
	var rs []kv
	for k, v := range s.ByReason {
		rs = append(rs, kv{k, v})
	}
	slices.SortFunc(rs, func(a, b kv) int {
		if a.v != b.v {
			return b.v - a.v
		}
		return strings.Compare(a.k, b.k)
	})
	for _, r := range rs {
		fmt.Fprintf(&b, "%8d  %s\n", r.v, r.k)
	}
	return b.String()
}

func (s Summary) replayable() int {
	if s.DryRun {
		return s.Matched - s.Skipped
	}
	return s.Replayed
}

// Header is a record header or stream field, in order.
type Header = sluice.Header

// letterOf reads the filter's view of a dead letter through get, which
// returns the value of the named header (the last one of that name). It
// reports false for a record without failure_reason: not a dead letter.
func letterOf(get func(string) (string, bool)) (Letter, bool) {
	reason, ok := get(sluice.HeaderFailureReason)
	if !ok {
		return Letter{}, false
	}
	l := Letter{Reason: reason}
	if ts, ok := get(sluice.HeaderFailureTime); ok {
		if t, err := time.Parse(time.RFC3339Nano, ts); err == nil {
			l.FailedAt = t
		}
	}
	if s, ok := get(sluice.HeaderSourceStream); ok {
		id, _ := get(sluice.HeaderSourceID)
		l.Origin = sluice.Origin{Topic: s, ID: id, Offset: -1}
	} else if t, ok := get(sluice.HeaderSourceTopic); ok {
		p, _ := get(sluice.HeaderSourcePartition)
		o, _ := get(sluice.HeaderSourceOffset)
		pn, _ := strconv.ParseInt(p, 10, 32)
		on, err := strconv.ParseInt(o, 10, 64)
		if err != nil {
			on = -1
		}
		l.Origin = sluice.Origin{Topic: t, Partition: int32(pn), Offset: on}
	}
	return l, true
}

// replayHeaders turns the headers of a dead letter into those of the event
// to replay. A dead letter's headers are the event's own, then the ones
// [sluice.DeadLetter.Headers] appends from the last failure_reason on:
// those are dropped. Then replay_count is set to one more than the event
// had, and the replay_source_* headers are set to the letter's origin unless
// the event already names an earlier one.
func replayHeaders(hs []Header, origin sluice.Origin) []Header {
	cut := len(hs)
	for i := len(hs) - 1; i >= 0; i-- {
		if hs[i].Key == sluice.HeaderFailureReason {
			cut = i
			break
		}
	}
	out := make([]Header, 0, cut+4)
	count := 0
	hasOrigin := false
	for _, h := range hs[:cut] {
		switch {
		case h.Key == HeaderReplayCount:
			if n, err := strconv.Atoi(string(h.Value)); err == nil && n > count {
				count = n
			}
			continue
		case isFailureHeader(h.Key):
			continue
		case strings.HasPrefix(h.Key, HeaderReplayPrefix+"source_"):
			hasOrigin = true
		}
		out = append(out, h)
	}
	out = append(out, Header{Key: HeaderReplayCount, Value: strconv.AppendInt(nil, int64(count+1), 10)})
	if !hasOrigin && origin.Topic != "" {
		for _, h := range sluice.AppendOriginHeaders(nil, origin) {
			out = append(out, Header{Key: HeaderReplayPrefix + h.Key, Value: h.Value})
		}
	}
	return out
}

// isFailureHeader reports whether a header describes a failure: the
// pipeline's failure_* headers and the Redis source's mapping error.
func isFailureHeader(k string) bool {
	return strings.HasPrefix(k, "failure_") || k == "redisstream_error"
}

// destination is where an event goes: c.To, or its origin.
func (c Config) destination(l Letter) string {
	if c.To != "" {
		return c.To
	}
	return l.Origin.Topic
}
