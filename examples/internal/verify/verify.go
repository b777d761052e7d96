// Package verify checks a finished pipeline run end to end: it reads the
// input, output and dead-letter topics (or streams) and matches every output
// record and dead letter to the input it came from, by the origin headers
// that sluice's sinks write (source_topic, source_partition and source_offset,
// or source_stream and source_id).
//
// The examples/verify command and the quickstart both print its [Report].
package verify

import (
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/sluicehq/sluice"
)

// Report is the outcome of a verification. Its JSON field names are a stable
// contract.
type Report struct {
	// InputCount is the number of distinct input events.
	InputCount int `json:"input_count"`
	// EnrichedCount is the number of distinct inputs with at least one
	// enriched output record.
	EnrichedCount int `json:"enriched_count"`
	// DeadLetterCount is the number of distinct inputs that were
	// dead-lettered and never enriched.
	DeadLetterCount int `json:"dead_letter_count"`
	// MissingCount is the number of inputs neither enriched nor
	// dead-lettered: events the pipeline lost or has not finished yet.
	MissingCount int `json:"missing_count"`
	// DuplicateCount is the number of output records and dead letters
	// beyond the first one for their input, as at-least-once delivery
	// allows after a crash or a rebalance.
	DuplicateCount int `json:"duplicate_count"`
	// EnrichmentRate is EnrichedCount / InputCount, or 0 without input.
	EnrichmentRate float64 `json:"enrichment_rate"`
	// UnmatchedCount is the number of output records and dead letters that
	// name this input topic or stream but match no input event read (for
	// example an input trimmed by retention), or carry no origin at all.
	UnmatchedCount int `json:"unmatched_count"`
	// ReplayedCount is the number of input records that are replays of
	// dead letters (they carry replay_source_* headers, see
	// examples/replay). They are not counted as inputs: their outputs and
	// dead letters count for the event they replay.
	ReplayedCount int `json:"replayed_count"`
}

// OK reports whether the run passes: no input is missing and the enrichment
// rate is at least minRate.
func (r Report) OK(minRate float64) bool {
	return r.MissingCount == 0 && r.EnrichmentRate >= minRate
}

// JSON returns the report as one line of JSON.
func (r Report) JSON() string {
	b, err := json.Marshal(r)
	if err != nil { // cannot happen: every field is a number
		return fmt.Sprintf(`{"error":%q}`, err.Error())
	}
	return string(b)
}

// Counter matches records to inputs. Feed it every input with Input, then
// every output record with Enriched and every dead letter with DeadLetter, in
// any order, and read the result with Report. Origins are the strings of
// [sluice.Origin.String]. A Counter is not safe for concurrent use.
type Counter struct {
	inputs   map[string]struct{}
	enriched map[string]int
	dead     map[string]int
	noOrigin int
	replayed int
}

// NewCounter returns an empty Counter.
func NewCounter() *Counter {
	return &Counter{
		inputs:   map[string]struct{}{},
		enriched: map[string]int{},
		dead:     map[string]int{},
	}
}

// Input records an input event.
func (c *Counter) Input(origin sluice.Origin) { c.inputs[key(origin)] = struct{}{} }

// Enriched records an output record that came from origin.
func (c *Counter) Enriched(origin sluice.Origin) { c.enriched[key(origin)]++ }

// DeadLetter records a dead letter of the event at origin.
func (c *Counter) DeadLetter(origin sluice.Origin) { c.dead[key(origin)]++ }

// NoOrigin records an output record or dead letter without origin headers.
func (c *Counter) NoOrigin() { c.noOrigin++ }

// Replayed records an input record that replays an earlier event.
func (c *Counter) Replayed() { c.replayed++ }

// Report computes the report.
func (c *Counter) Report() Report {
	r := Report{InputCount: len(c.inputs), UnmatchedCount: c.noOrigin, ReplayedCount: c.replayed}
	for k := range c.inputs {
		e, d := c.enriched[k], c.dead[k]
		switch {
		case e > 0:
			r.EnrichedCount++
		case d > 0:
			r.DeadLetterCount++
		default:
			r.MissingCount++
		}
		if e+d > 1 {
			r.DuplicateCount += e + d - 1
		}
	}
	for _, m := range []map[string]int{c.enriched, c.dead} {
		for k, n := range m {
			if _, ok := c.inputs[k]; !ok {
				r.UnmatchedCount += n
			}
		}
	}
	if r.InputCount > 0 {
		r.EnrichmentRate = float64(r.EnrichedCount) / float64(r.InputCount)
	}
	return r
}

// key identifies an input. Timestamps and delivery counts play no part.
func key(o sluice.Origin) string {
	if o.ID != "" {
		return o.Topic + "/" + o.ID
	}
	return o.Topic + "/" + strconv.FormatInt(int64(o.Partition), 10) + "@" + strconv.FormatInt(o.Offset, 10)
}

// replayPrefix prefixes the origin headers that a replayed event carries
// (replay_source_topic, ...): they name the event's first input.
const replayPrefix = "replay_"

// ReplayOrigin reads the replay_source_* headers of a record through get:
// the first input of a replayed event. It reports false for a record that
// is not a replay.
func ReplayOrigin(get func(name string) (string, bool)) (sluice.Origin, bool) {
	return OriginFromHeaders(func(name string) (string, bool) { return get(replayPrefix + name) })
}

// OutputOrigin is the input an output record or dead letter counts for:
// the first input of a replayed event ([ReplayOrigin]), or else the record's
// origin ([OriginFromHeaders]).
func OutputOrigin(get func(name string) (string, bool)) (sluice.Origin, bool) {
	if o, ok := ReplayOrigin(get); ok {
		return o, true
	}
	return OriginFromHeaders(get)
}

// OriginFromHeaders reads the origin headers of an output record or dead
// letter through get, which returns a header's (or stream field's) value.
// It reports false when the record carries no complete origin.
func OriginFromHeaders(get func(name string) (string, bool)) (sluice.Origin, bool) {
	if stream, ok := get(sluice.HeaderSourceStream); ok {
		id, ok := get(sluice.HeaderSourceID)
		if !ok || id == "" {
			return sluice.Origin{}, false
		}
		return sluice.Origin{Topic: stream, ID: id, Offset: -1}, true
	}
	topic, ok1 := get(sluice.HeaderSourceTopic)
	ps, ok2 := get(sluice.HeaderSourcePartition)
	os, ok3 := get(sluice.HeaderSourceOffset)
	if !ok1 || !ok2 || !ok3 {
		return sluice.Origin{}, false
	}
	p, err1 := strconv.ParseInt(ps, 10, 32)
	off, err2 := strconv.ParseInt(os, 10, 64)
	if err1 != nil || err2 != nil {
		return sluice.Origin{}, false
	}
	return sluice.Origin{Topic: topic, Partition: int32(p), Offset: off}, true
}
