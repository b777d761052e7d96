package conformance

import (
	"bytes"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sluicehq/sluice"
)

// HeaderEventID is the header the suite puts on every input event with a
// unique id, so that it can tell its inputs apart however the broker
// assigns origins.
const HeaderEventID = "conformance-id"

// makeEvents returns n input events whose ids start with prefix. Every
// fifth event has no key; the others share a few keys, so keyed events land
// on several partitions.
func makeEvents(prefix string, n int) []*sluice.Message {
	out := make([]*sluice.Message, n)
	for i := range n {
		id := fmt.Sprintf("%s-%04d", prefix, i)
		var key []byte
		if i%5 != 0 {
			key = []byte(fmt.Sprintf("key-%d", i%7))
		}
		out[i] = &sluice.Message{
			Key:   key,
			Value: []byte(fmt.Sprintf(`{"id":%q,"n":%d,"text":"event number %d"}`, id, i, i)),
			Headers: []sluice.Header{
				{Key: HeaderEventID, Value: []byte(id)},
				{Key: "conformance-note", Value: []byte("h\u00e9llo")},
			},
		}
	}
	return out
}

// inputs are the events of one subtest as the broker stored them.
type inputs struct {
	topic    string
	byOrigin map[string]*sluice.Message
	order    []string // origin keys in publish order
	index    map[string]int
}

// publish publishes events to topic and reads them back to learn their
// origins.
func (e *env) publish(topic string, events []*sluice.Message, into *inputs) *inputs {
	e.t.Helper()
	if into == nil {
		into = &inputs{topic: topic, byOrigin: map[string]*sluice.Message{}, index: map[string]int{}}
	}
	e.h.Publish(e.t, topic, events)
	want := map[string]*sluice.Message{}
	for _, m := range events {
		id, _ := m.Header(HeaderEventID)
		want[string(id)] = m
	}
	recs := e.h.ReadAll(e.t, topic)
	found := 0
	for _, r := range recs {
		id, ok := r.Header(HeaderEventID)
		if !ok {
			e.t.Fatalf("ReadAll(%q) returned a record without the %s header the suite published: %s", topic, HeaderEventID, r.Origin)
		}
		pub, ok := want[string(id)]
		if !ok {
			continue // published earlier
		}
		found++
		k := originKey(r.Origin)
		if r.Origin.Topic != topic {
			e.t.Fatalf("ReadAll(%q) returned event %s with Origin.Topic %q", topic, id, r.Origin.Topic)
		}
		if r.Origin.ID == "" && r.Origin.Offset < 0 {
			e.t.Fatalf("ReadAll(%q) returned event %s without an Offset or ID in its Origin", topic, id)
		}
		if _, dup := into.byOrigin[k]; dup {
			e.t.Fatalf("ReadAll(%q) returned origin %s twice", topic, k)
		}
		if !bytes.Equal(r.Value, pub.Value) || !bytes.Equal(r.Key, pub.Key) {
			e.t.Fatalf("ReadAll(%q) returned event %s with key %q value %q, published key %q value %q", topic, id, r.Key, r.Value, pub.Key, pub.Value)
		}
		into.byOrigin[k] = r
		into.index[k] = len(into.order)
		into.order = append(into.order, k)
	}
	if found != len(events) {
		e.t.Fatalf("ReadAll(%q) returned %d of the %d events just published", topic, found, len(events))
	}
	return into
}

func originKey(o sluice.Origin) string {
	if o.ID != "" {
		return o.Topic + "/" + o.ID
	}
	return o.Topic + "/" + strconv.FormatInt(int64(o.Partition), 10) + "@" + strconv.FormatInt(o.Offset, 10)
}

// originOf reads the origin headers of an output or dead-letter record.
func originOf(m *sluice.Message) (string, error) {
	if s, ok := m.Header(sluice.HeaderSourceStream); ok {
		id, ok := m.Header(sluice.HeaderSourceID)
		if !ok || len(id) == 0 {
			return "", fmt.Errorf("has %s but no %s header", sluice.HeaderSourceStream, sluice.HeaderSourceID)
		}
		return string(s) + "/" + string(id), nil
	}
	topic, ok1 := m.Header(sluice.HeaderSourceTopic)
	part, ok2 := m.Header(sluice.HeaderSourcePartition)
	off, ok3 := m.Header(sluice.HeaderSourceOffset)
	if !ok1 || !ok2 || !ok3 {
		return "", fmt.Errorf("lacks origin headers (%s/%s/%s or %s/%s)", sluice.HeaderSourceTopic, sluice.HeaderSourcePartition,
			sluice.HeaderSourceOffset, sluice.HeaderSourceStream, sluice.HeaderSourceID)
	}
	p, err := strconv.ParseInt(string(part), 10, 32)
	if err != nil {
		return "", fmt.Errorf("bad %s header %q", sluice.HeaderSourcePartition, part)
	}
	o, err := strconv.ParseInt(string(off), 10, 64)
	if err != nil {
		return "", fmt.Errorf("bad %s header %q", sluice.HeaderSourceOffset, off)
	}
	return originKey(sluice.Origin{Topic: string(topic), Partition: int32(p), Offset: o}), nil
}

// dest is where an input event should end up.
type dest int

const (
	toOutput dest = iota
	toDLQ
)

// expect describes what a subtest's outputs should look like.
type expect struct {
	// dest classifies an input; nil sends everything to the output.
	dest func(in *sluice.Message) dest
	// attempts is the expected failure_attempts of a dead letter, or 0 to
	// skip the check.
	attempts func(in *sluice.Message) int
	// reason is a substring expected in failure_reason.
	reason func(in *sluice.Message) string
}

func (x expect) destOf(in *sluice.Message) dest {
	if x.dest == nil {
		return toOutput
	}
	return x.dest(in)
}

// tally counts how the records of an output and a DLQ topic cover inputs.
type tally struct {
	out, dlq map[string]int // origin key → records
	unknown  []string       // records that match no input
}

func (in *inputs) tally(outs, dlqs []*sluice.Message) tally {
	t := tally{out: map[string]int{}, dlq: map[string]int{}}
	for _, side := range []struct {
		recs []*sluice.Message
		m    map[string]int
	}{{outs, t.out}, {dlqs, t.dlq}} {
		for _, r := range side.recs {
			k, err := originOf(r)
			if err != nil {
				t.unknown = append(t.unknown, fmt.Sprintf("record %s %v", r.Origin, err))
				continue
			}
			if _, ok := in.byOrigin[k]; !ok {
				t.unknown = append(t.unknown, fmt.Sprintf("record %s names origin %s, which is no input", r.Origin, k))
				continue
			}
			side.m[k]++
		}
	}
	return t
}

// missing returns the inputs not yet found where x says they go.
func (in *inputs) missing(t tally, x expect) []string {
	var miss []string
	for _, k := range in.order {
		m := t.out
		if x.destOf(in.byOrigin[k]) == toDLQ {
			m = t.dlq
		}
		if m[k] == 0 {
			miss = append(miss, k)
		}
	}
	return miss
}

// waitAll polls the output and DLQ topics until every input is where x
// says, the wait exceeds timeout, or a watched pipeline stops. It returns
// the records read last.
func (e *env) waitAll(in *inputs, out, dlq string, x expect, timeout time.Duration, watch ...*runner) (outs, dlqs []*sluice.Message) {
	e.t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(e.h.PollInterval)
	defer tick.Stop()
	for {
		outs = e.h.ReadAll(e.t, out)
		dlqs = e.h.ReadAll(e.t, dlq)
		miss := in.missing(in.tally(outs, dlqs), x)
		if len(miss) == 0 {
			return outs, dlqs
		}
		for _, r := range watch {
			if r.stopped() {
				e.t.Fatalf("pipeline %s stopped (Run returned %v) with %s of %d still missing, first %s",
					r.name, r.err, plural(len(miss), "event"), len(in.order), strings.Join(head(miss, 5), ", "))
			}
		}
		if time.Now().After(deadline) {
			if u := in.tally(outs, dlqs).unknown; len(u) > 0 {
				e.t.Errorf("%s in %s/%s match no input, first: %s", plural(len(u), "record"), out, dlq, strings.Join(head(u, 3), "; "))
			}
			e.t.Fatalf("timed out after %s: %s of %d missing from %s/%s (lost, or not delivered in time), first %s",
				timeout, plural(len(miss), "event"), len(in.order), out, dlq, strings.Join(head(miss, 5), ", "))
		}
		<-tick.C
	}
}

// waitCount polls until the output topic holds records for at least n
// distinct inputs.
func (e *env) waitCount(in *inputs, out string, n int, watch ...*runner) {
	e.t.Helper()
	deadline := time.Now().Add(e.h.Timeout)
	tick := time.NewTicker(e.h.PollInterval)
	defer tick.Stop()
	for {
		have := len(in.tally(e.h.ReadAll(e.t, out), nil).out)
		if have >= n {
			return
		}
		for _, r := range watch {
			if r.stopped() {
				e.t.Fatalf("pipeline %s stopped (Run returned %v) with %d of %d outputs", r.name, r.err, have, n)
			}
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("timed out after %s waiting for %d outputs in %s; have %d", e.h.Timeout, n, out, have)
		}
		<-tick.C
	}
}

func head(s []string, n int) []string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// verify checks every record of outs and dlqs against its input: each
// input must be where x says (missing must be 0), records must carry the
// input's key, headers and origin, enriched values must be the suite's
// enrichment of the input and dead letters the input's exact bytes with
// the failure headers. Duplicates are allowed and logged.
func (e *env) verify(in *inputs, outs, dlqs []*sluice.Message, x expect) {
	e.t.Helper()
	t := in.tally(outs, dlqs)
	for _, u := range head(t.unknown, 10) {
		e.t.Errorf("unexpected record: %s", u)
	}
	if len(t.unknown) > 10 {
		e.t.Errorf("... and %d more unexpected records", len(t.unknown)-10)
	}
	if miss := in.missing(t, x); len(miss) > 0 {
		e.t.Errorf("%s of %d lost (missing 0 wanted), first %s", plural(len(miss), "event"), len(in.order), strings.Join(head(miss, 10), ", "))
	}
	var misplaced []string
	for _, k := range in.order {
		if x.destOf(in.byOrigin[k]) == toOutput && t.dlq[k] > 0 {
			misplaced = append(misplaced, k+" (dead-lettered)")
		}
		if x.destOf(in.byOrigin[k]) == toDLQ && t.out[k] > 0 {
			misplaced = append(misplaced, k+" (enriched)")
		}
	}
	if len(misplaced) > 0 {
		e.t.Errorf("%s ended up in the wrong topic: %s", plural(len(misplaced), "event"), strings.Join(head(misplaced, 10), ", "))
	}
	dups := 0
	for _, m := range []map[string]int{t.out, t.dlq} {
		for _, n := range m {
			dups += max(n-1, 0)
		}
	}
	e.t.Logf("%s: %d inputs, %d output records, %d dead letters, %d duplicates", e.h.Name, len(in.order), len(outs), len(dlqs), dups)

	bad := 0
	report := func(format string, args ...any) {
		bad++
		if bad <= 10 {
			e.t.Errorf(format, args...)
		}
	}
	for _, r := range outs {
		k, err := originOf(r)
		src := in.byOrigin[k]
		if err != nil || src == nil {
			continue
		}
		if !bytes.Equal(r.Key, src.Key) {
			report("output for %s has key %q, want the input's key %q", k, r.Key, src.Key)
		}
		if want := enrichValue(src.Value); !bytes.Equal(r.Value, want) {
			report("output for %s has value %q, want %q", k, r.Value, want)
		}
		if h := missingHeaders(src.Headers, r.Headers); h != "" {
			report("output for %s lacks the input's header %s", k, h)
		}
	}
	for _, r := range dlqs {
		k, err := originOf(r)
		src := in.byOrigin[k]
		if err != nil || src == nil {
			continue
		}
		if !bytes.Equal(r.Value, src.Value) {
			report("dead letter for %s has value %q, want the input's bytes %q", k, r.Value, src.Value)
		}
		if !bytes.Equal(r.Key, src.Key) {
			report("dead letter for %s has key %q, want the input's key %q", k, r.Key, src.Key)
		}
		if h := missingHeaders(src.Headers, r.Headers); h != "" {
			report("dead letter for %s lacks the input's header %s", k, h)
		}
		reason, ok := r.Header(sluice.HeaderFailureReason)
		switch {
		case !ok || len(reason) == 0:
			report("dead letter for %s has no %s header", k, sluice.HeaderFailureReason)
		case x.reason != nil && !strings.Contains(string(reason), x.reason(src)):
			report("dead letter for %s has %s %q, want it to mention %q", k, sluice.HeaderFailureReason, reason, x.reason(src))
		}
		att, ok := r.Header(sluice.HeaderFailureAttempts)
		n, err := strconv.Atoi(string(att))
		switch {
		case !ok || err != nil:
			report("dead letter for %s has %s %q, want a number", k, sluice.HeaderFailureAttempts, att)
		case x.attempts != nil && x.attempts(src) != 0 && n != x.attempts(src):
			report("dead letter for %s has %s %d, want %d", k, sluice.HeaderFailureAttempts, n, x.attempts(src))
		}
		ft, ok := r.Header(sluice.HeaderFailureTime)
		if ts, err := time.Parse(time.RFC3339Nano, string(ft)); !ok || err != nil {
			report("dead letter for %s has %s %q, want an RFC 3339 time", k, sluice.HeaderFailureTime, ft)
		} else if d := time.Since(ts); d < -time.Hour || d > time.Hour {
			report("dead letter for %s has %s %s, far from now", k, sluice.HeaderFailureTime, ft)
		}
	}
	if bad > 10 {
		e.t.Errorf("... and %d more bad records", bad-10)
	}
}

// missingHeaders returns the first header of want that got lacks, or "".
func missingHeaders(want, got []sluice.Header) string {
	for _, w := range want {
		if !slices.ContainsFunc(got, func(g sluice.Header) bool { return g.Key == w.Key && bytes.Equal(g.Value, w.Value) }) {
			return fmt.Sprintf("%s=%q", w.Key, w.Value)
		}
	}
	return ""
}
