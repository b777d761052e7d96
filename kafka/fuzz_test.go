package kafka

import (
	"bytes"
	"strconv"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/sluicehq/sluice"
)

// FuzzRecordHeaders feeds arbitrary record headers through the source's
// conversion of a consumed record and the sink's headers of an output
// record and of a dead letter. Whatever comes in (keys that are not UTF-8,
// null and empty values, duplicates, nil entries in sarama's slice,
// extreme partitions and offsets), nothing panics and the headers
// round-trip: converted, then written out, every header comes back byte for
// byte, in order, null values staying null, followed by the origin headers
// of the record; a dead letter keeps them all, then adds its failure and
// origin headers.
//
// The headers come as key NUL value NUL key NUL value...; a value of one
// 0x01 byte stands for a null value, and a key of one 0x02 byte for a nil
// *RecordHeader in the consumed record (which the conversion skips).
func FuzzRecordHeaders(f *testing.F) {
	for _, s := range []struct {
		raw       string
		topic     string
		partition int32
		offset    int64
	}{
		{"trace\x00t1\x00tenant\x00acme", "in", 0, 0},
		{"dup\x00a\x00dup\x00b\x00dup\x00\x01", "in", 3, 42},
		{"\xff\xfe\x00\x00\x00\x01", "in", -1, -1},
		{"\x02\x00\x00k\x00v\x00\x02", "in", 2147483647, 9223372036854775807},
		{"source_topic\x00stale\x00source_offset\x00-5\x00failure_reason\x00old", "t", -2147483648, -9223372036854775808},
		{"", "", 0, 0},
		{"\x00", "\xff", 0, 1},
	} {
		f.Add([]byte(s.raw), s.topic, s.partition, s.offset)
	}
	f.Fuzz(func(t *testing.T, raw []byte, topic string, partition int32, offset int64) {
		// What the broker handed over.
		var consumed []*sarama.RecordHeader
		var want []sluice.Header
		if len(raw) > 0 {
			parts := bytes.Split(raw, []byte{0})
			for i := 0; i < len(parts); i += 2 {
				if bytes.Equal(parts[i], []byte{2}) {
					consumed = append(consumed, nil)
					continue
				}
				h := sluice.Header{Key: string(parts[i]), Value: []byte{}}
				if i+1 < len(parts) {
					h.Value = parts[i+1]
				}
				if bytes.Equal(h.Value, []byte{1}) {
					h.Value = nil
				}
				consumed = append(consumed, &sarama.RecordHeader{Key: []byte(h.Key), Value: h.Value})
				want = append(want, h)
			}
		}
		at := time.UnixMilli(offset % (1 << 40))
		rec := &sarama.ConsumerMessage{Topic: topic, Partition: partition, Offset: offset, Key: []byte("k"), Value: []byte("v"), Timestamp: at, Headers: consumed}
		m := convert(rec, nil)
		if m.Origin != (sluice.Origin{Topic: topic, Partition: partition, Offset: offset}) || !m.Timestamp.Equal(at) ||
			string(m.Key) != "k" || string(m.Value) != "v" {
			t.Fatalf("convert: %+v, origin %+v", m, m.Origin)
		}
		if !sameHeaders(m.Headers, want) {
			t.Fatalf("convert: headers %q, want %q", m.Headers, want)
		}

		// Written out (the sink keeps the input's origin on the output).
		origin := sluice.AppendOriginHeaders(nil, m.Origin)
		out := recordHeaders(m.Headers, m.Origin)
		if got := consume(out); !sameHeaders(got, append(append([]sluice.Header(nil), want...), origin...)) {
			t.Fatalf("output record headers %q, want %q then the origin %q", got, want, origin)
		}
		if v, _ := (&sluice.Message{Headers: consume(out)[len(want):]}).Header(sluice.HeaderSourceOffset); string(v) != strconv.FormatInt(offset, 10) {
			t.Fatalf("output record: source_offset %q, want %d", v, offset)
		}

		// Dead-lettered.
		d := sluice.DeadLetter{Msg: m, Reason: "model said no", Attempts: 3, FailedAt: time.Unix(1, 0)}
		got := consume(letterHeaders(d))
		if !sameHeaders(got[:len(want)], want) {
			t.Fatalf("dead letter headers %q, want %q first", got, want)
		}
		tail := &sluice.Message{Headers: got[len(want):]}
		if len(tail.Headers) != 3+len(origin) || !sameHeaders(tail.Headers[3:], origin) {
			t.Fatalf("dead letter headers after the record's: %q, want 3 failure headers then %q", tail.Headers, origin)
		}
		if v, _ := tail.Header(sluice.HeaderFailureReason); string(v) != d.Reason {
			t.Fatalf("dead letter failure_reason %q, want %q", v, d.Reason)
		}
		if v, _ := tail.Header(sluice.HeaderFailureAttempts); string(v) != "3" {
			t.Fatalf("dead letter failure_attempts %q, want 3", v)
		}
	})
}

// consume is what a consumer of records with headers rh sees after the
// conversion.
func consume(rh []sarama.RecordHeader) []sluice.Header {
	ptrs := make([]*sarama.RecordHeader, len(rh))
	for i := range rh {
		ptrs[i] = &rh[i]
	}
	return convert(&sarama.ConsumerMessage{Headers: ptrs}, nil).Headers
}

// sameHeaders compares headers byte for byte, a null value only equal to
// a null value.
func sameHeaders(a, b []sluice.Header) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Key != b[i].Key || !bytes.Equal(a[i].Value, b[i].Value) || (a[i].Value == nil) != (b[i].Value == nil) {
			return false
		}
	}
	return true
}
