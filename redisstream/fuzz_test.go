package redisstream

import (
	"bytes"
	"encoding/json"
	"errors"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/redis/go-redis/v9"

	"github.com/sluicehq/sluice"
)

// FuzzEntryCodec feeds arbitrary stream entries to the entry decoder, and
// arbitrary messages to the sink's encoder, under an arbitrary valid field
// mapping. Whatever comes in, nothing panics, and:
//   - the decoder turns any field list into a Message with the entry's
//     origin and time: the payload field as its value and the others as
//     sorted headers, or, without a payload field, an empty value with
//     Message.Err a MissingFieldError that names the field and the entry;
//   - what the decoder made, the sink writes as fields that decode to the
//     same value, key and headers (plus the origin fields);
//   - a message from elsewhere (say a Kafka record with any headers) is
//     written so that it decodes to its value, key and headers, or refused
//     as permanent when a header would replace part of the event; its dead
//     letter always keeps the event whole.
//
// The field list comes as name NUL value NUL name NUL value...; mode bit 0
// selects WithFieldsAsJSON, bit 1 an entry with no field map at all (a
// deleted entry), bit 2 gives the outgoing message a key, bit 3 a Kafka
// origin.
func FuzzEntryCodec(f *testing.F) {
	for _, s := range []struct {
		stream, id, payload, key string
		mode                     uint8
		value, fields            string
	}{
		{"in", "1700000000123-4", "payload", "key", 4, `{"a":1}`, "payload\x00{\"a\":1}\x00key\x00k1\x00zeta\x00z\x00alpha\x00a"},
		{"in", "1-0", "payload", "", 0, "v", "other\x00x"},
		{"in", "1-0", "payload", "", 0, "v", ""},
		{"in", "1-0", "payload", "", 2, "v", ""},
		{"in", "5-1", "payload", "key", 4, "v", "payload\x00p\x00source_id\x00stale\x00source_stream\x00old\x00redisstream_error\x00x"},
		{"in", "1-0", "payload", "", 1, `{"a":"A","n":3,"obj":{"k":[1]}}`, "b\x002\x00a\x00say \"hi\""},
		{"in", "1-0", "payload", "", 1, `[1,2]`, "a\x00\xff\xfe"},
		{"in", "1-0", "payload", "", 1, `{"payload":"x","a":"1"}`, "a\x00header wins?"},
		{"in", "1-0", "payload", "key", 12, "event", "payload\x00a header named like the payload\x00key\x00and the key"},
		{"in", "1-0", "data", "", 0, "event", "data\x00d\x00payload\x00p"},
		{"", "", "p", "k", 8, "", "\x00\x00\x00"},
		{"in", "99999999999999999999-0", "payload", "", 0, "v", "payload\x00\xff"},
		{"in", "-1-0", "payload", "", 0, "v", "payload\x00"},
		{"in", "9223372036854775807-18446744073709551615", "payload", "", 0, "v", "payload\x00x\x00payload\x00y"},
		{"in", "1-0", "source_id", "failure_reason", 4, "v", "source_id\x00x"},
	} {
		f.Add(s.stream, s.id, s.payload, s.key, s.mode, []byte(s.value), []byte(s.fields))
	}
	f.Fuzz(func(t *testing.T, stream, id, payload, key string, mode uint8, value, raw []byte) {
		// A mapping the options accept.
		c := codec{payload: payload, key: key, asJSON: mode&1 != 0}
		if c.payload == "" || slices.Contains(sinkFields, c.payload) {
			c.payload = DefaultPayloadField
		}
		if c.asJSON || c.key == c.payload || slices.Contains(sinkFields, c.key) {
			c.key = ""
		}
		pairs := splitPairs(raw)
		var values map[string]any
		if mode&2 == 0 {
			values = map[string]any{}
			for _, p := range pairs {
				values[p.Key] = string(p.Value)
			}
		}
		e := redis.XMessage{ID: id, Values: values}
		m, err := c.decode(stream, e)
		checkDecoded(t, c, stream, e, m, err)
		if err == nil {
			checkRewrite(t, c, m)
		}
		out := &sluice.Message{Value: value, Headers: pairs, Origin: sluice.Origin{Topic: stream, Offset: -1, ID: id}}
		if mode&4 != 0 {
			out.Key = []byte(id + "/key")
		}
		if mode&8 != 0 || id == "" {
			out.Origin = sluice.Origin{Topic: stream, Partition: int32(len(raw)), Offset: int64(len(value))}
		}
		checkForeign(t, c, out)
	})
}

// splitPairs reads name NUL value NUL ... as headers; a name without a
// value gets an empty one.
func splitPairs(raw []byte) []sluice.Header {
	if len(raw) == 0 {
		return nil
	}
	parts := bytes.Split(raw, []byte{0})
	var hs []sluice.Header
	for i := 0; i < len(parts); i += 2 {
		h := sluice.Header{Key: string(parts[i]), Value: []byte{}}
		if i+1 < len(parts) {
			h.Value = parts[i+1]
		}
		hs = append(hs, h)
	}
	return hs
}

// checkDecoded holds the decoder to its contract for entry e of stream.
func checkDecoded(t *testing.T, c codec, stream string, e redis.XMessage, m *sluice.Message, err error) {
	t.Helper()
	if m == nil {
		t.Fatalf("decode(%v) returned no message (err %v)", e, err)
	}
	if want := (sluice.Origin{Topic: stream, Offset: -1, ID: e.ID}); m.Origin != want {
		t.Fatalf("decode(%v): origin %+v, want %+v", e, m.Origin, want)
	}
	wantTime := time.Time{}
	if ms, _, _ := strings.Cut(e.ID, "-"); ms != "" {
		if n, perr := strconv.ParseInt(ms, 10, 64); perr == nil {
			wantTime = time.UnixMilli(n).UTC()
		}
	}
	if !m.Timestamp.Equal(wantTime) {
		t.Fatalf("decode(%v): timestamp %v, want %v", e, m.Timestamp, wantTime)
	}
	if c.asJSON {
		if err != nil || m.Err != nil || len(m.Headers) != 0 {
			t.Fatalf("decode(%v) as JSON: err %v, Err %v, headers %q; want none", e, err, m.Err, m.Headers)
		}
		var got map[string]string
		if json.Unmarshal(m.Value, &got) != nil || got == nil {
			t.Fatalf("decode(%v) as JSON: value %q is not an object of strings", e, m.Value)
		}
		if validFields(e.Values) {
			want := map[string]string{}
			for k, v := range e.Values {
				want[k] = v.(string)
			}
			if !maps.Equal(got, want) {
				t.Fatalf("decode(%v) as JSON: value %q, want the fields %q", e, m.Value, want)
			}
		}
		return
	}
	_, hasKey := e.Values[c.key]
	hasKey = hasKey && c.key != ""
	p, found := e.Values[c.payload]
	headers := m.Headers
	if found {
		if err != nil || m.Err != nil {
			t.Fatalf("decode(%v): err %v, Err %v; want none", e, err, m.Err)
		}
		if !bytes.Equal(m.Value, []byte(p.(string))) {
			t.Fatalf("decode(%v): value %q, want %q", e, m.Value, p)
		}
	} else {
		var mf *MissingFieldError
		if !errors.As(err, &mf) || !errors.Is(err, ErrMissingPayload) || m.Err != err {
			t.Fatalf("decode(%v) without its payload field: err %v, Err %v; want a MissingFieldError in both", e, err, m.Err)
		}
		if msg := err.Error(); !strings.Contains(msg, strconv.Quote(c.payload)) || !strings.Contains(msg, e.ID) {
			t.Fatalf("decode(%v): reason %q does not name the field %q and the entry", e, msg, c.payload)
		}
		if len(m.Value) != 0 {
			t.Fatalf("decode(%v) without its payload field: value %q, want none", e, m.Value)
		}
		last := headers[len(headers)-1]
		if last.Key != HeaderEntryError || string(last.Value) != err.Error() {
			t.Fatalf("decode(%v): last header %q, want %s with the reason", e, last, HeaderEntryError)
		}
		headers = headers[:len(headers)-1]
	}
	if hasKey {
		if !bytes.Equal(m.Key, []byte(e.Values[c.key].(string))) || m.Key == nil {
			t.Fatalf("decode(%v): key %q, want %q", e, m.Key, e.Values[c.key])
		}
	} else if m.Key != nil {
		t.Fatalf("decode(%v): key %q, want none", e, m.Key)
	}
	if want := len(e.Values) - btoi(found) - btoi(hasKey); len(headers) != want {
		t.Fatalf("decode(%v): %d headers %q, want %d", e, len(headers), headers, want)
	}
	for i, h := range headers {
		if i > 0 && headers[i-1].Key >= h.Key {
			t.Fatalf("decode(%v): headers %q are not sorted by name", e, headers)
		}
		if v, ok := e.Values[h.Key]; !ok || string(h.Value) != v.(string) {
			t.Fatalf("decode(%v): header %q is not a field of the entry", e, h)
		}
	}
}

// checkRewrite writes m, as decoded from an entry, the way the sink does,
// and decodes the result: the same event must come back.
func checkRewrite(t *testing.T, c codec, m *sluice.Message) {
	t.Helper()
	args, err := c.fields(m)
	if err != nil {
		t.Fatalf("fields(%q) of a decoded message: %v", m.Value, err)
	}
	got := decodeArgs(t, c, args)
	if c.asJSON {
		var want map[string]string
		if err := json.Unmarshal(m.Value, &want); err != nil {
			t.Fatal(err)
		}
		for _, h := range sluice.AppendOriginHeaders(nil, m.Origin) {
			want[h.Key] = string(h.Value)
		}
		checkFieldsJSON(t, got.Value, want, m.Value, m.Origin.Topic, m.Origin.ID)
		return
	}
	if !bytes.Equal(got.Value, m.Value) || !bytes.Equal(got.Key, m.Key) || (got.Key == nil) != (m.Key == nil) {
		t.Fatalf("rewritten %q/%q came back as %q/%q", m.Value, m.Key, got.Value, got.Key)
	}
	// A field named like the marker of an unmappable entry is not written.
	want := withOrigin(slices.DeleteFunc(slices.Clone(m.Headers), func(h sluice.Header) bool { return h.Key == HeaderEntryError }), m.Origin)
	if !slices.EqualFunc(got.Headers, want, sameHeader) {
		t.Fatalf("rewritten headers %q came back as %q, want %q", m.Headers, got.Headers, want)
	}
}

// checkForeign writes a message from another source (any headers, in any
// order, duplicates included) and decodes it, and writes its dead letter.
func checkForeign(t *testing.T, c codec, m *sluice.Message) {
	t.Helper()
	var members map[string]json.RawMessage
	if c.asJSON {
		if err := json.Unmarshal(m.Value, &members); err != nil || members == nil {
			_, err := c.fields(m)
			if !errors.Is(err, ErrNotJSONObject) || !errors.Is(err, sluice.ErrPermanent) {
				t.Fatalf("fields(%q) as JSON: err %v, want a permanent ErrNotJSONObject", m.Value, err)
			}
			checkDeadLetter(t, c, m)
			return
		}
	}
	collides, collision := "", false
	for _, h := range m.Headers {
		if h.Key == HeaderEntryError {
			continue
		}
		if _, ok := members[h.Key]; ok || (!c.asJSON && (h.Key == c.payload || (c.key != "" && h.Key == c.key))) {
			collides, collision = h.Key, true
			break
		}
	}
	args, err := c.fields(m)
	if collision {
		if !errors.Is(err, ErrFieldCollision) || !errors.Is(err, sluice.ErrPermanent) || !strings.Contains(err.Error(), strconv.Quote(collides)) {
			t.Fatalf("fields(%q) with header %q: err %v, want a permanent ErrFieldCollision naming it", m.Value, collides, err)
		}
		checkDeadLetter(t, c, m)
		return
	}
	if err != nil {
		t.Fatalf("fields(%q, headers %q): %v", m.Value, m.Headers, err)
	}
	got := decodeArgs(t, c, args)
	var headers []sluice.Header
	for _, h := range m.Headers {
		if h.Key != HeaderEntryError {
			headers = setHeader(headers, h)
		}
	}
	headers = withOrigin(headers, m.Origin)
	if c.asJSON {
		want := map[string]string{}
		for k, raw := range members {
			var s string
			if json.Unmarshal(raw, &s) != nil {
				s = string(bytes.TrimSpace(raw))
			}
			want[k] = s
		}
		for _, h := range headers {
			want[h.Key] = string(h.Value)
		}
		checkFieldsJSON(t, got.Value, want, m.Value, m.Headers, m.Origin.Topic, m.Origin.ID)
		return
	}
	wantKey := m.Key
	if c.key == "" {
		wantKey = nil // the mapping has no key field
	}
	if !bytes.Equal(got.Value, m.Value) || !bytes.Equal(got.Key, wantKey) || (got.Key == nil) != (wantKey == nil) {
		t.Fatalf("written %q/%q came back as %q/%q", m.Value, m.Key, got.Value, got.Key)
	}
	slices.SortFunc(headers, func(a, b sluice.Header) int { return strings.Compare(a.Key, b.Key) })
	if !slices.EqualFunc(got.Headers, headers, sameHeader) {
		t.Fatalf("written headers %q came back as %q, want %q", m.Headers, got.Headers, headers)
	}
}

// checkDeadLetter writes m's dead letter and checks that it decodes to the
// whole event with its reason.
func checkDeadLetter(t *testing.T, c codec, m *sluice.Message) {
	t.Helper()
	d := sluice.DeadLetter{Msg: m, Reason: "refused", Attempts: 1, FailedAt: time.Unix(1, 0)}
	args := c.deadLetterFields(d)
	if c.asJSON {
		// The members of an object value are fields of their own; any
		// other value is kept whole under the payload field.
		var obj map[string]json.RawMessage
		if json.Unmarshal(m.Value, &obj) == nil && obj != nil {
			return
		}
	}
	got := decodeArgs(t, codec{payload: c.payload, key: c.key}, args)
	if v, _ := got.Header(sluice.HeaderFailureReason); string(v) != "refused" {
		t.Fatalf("dead letter of %q: failure_reason %q", m.Value, v)
	}
	wantKey := m.Key
	if c.key == "" {
		wantKey = nil
	}
	if !bytes.Equal(got.Value, m.Value) || !bytes.Equal(got.Key, wantKey) {
		t.Fatalf("dead letter of %q/%q came back as %q/%q", m.Value, m.Key, got.Value, got.Key)
	}
}

// decodeArgs turns an XADD field list into the entry Redis would return and
// decodes it.
func decodeArgs(t *testing.T, c codec, args []any) *sluice.Message {
	t.Helper()
	if len(args)%2 != 0 {
		t.Fatalf("odd field list %q", args)
	}
	values := map[string]any{}
	for i := 0; i < len(args); i += 2 {
		name, ok := args[i].(string)
		if !ok {
			t.Fatalf("field name %v is a %T", args[i], args[i])
		}
		if _, dup := values[name]; dup {
			t.Fatalf("field %q written twice in %q", name, args)
		}
		switch v := args[i+1].(type) {
		case []byte:
			values[name] = string(v)
		case string:
			values[name] = v
		default:
			t.Fatalf("field %q has a %T value", name, v)
		}
	}
	m, err := c.decode("out", redis.XMessage{ID: "2-0", Values: values})
	if err != nil {
		t.Fatalf("decode of the written fields %q: %v", args, err)
	}
	return m
}

// checkFieldsJSON compares a field map read back as JSON with want, where
// the input was valid UTF-8 (JSON text cannot carry other bytes).
func checkFieldsJSON(t *testing.T, value []byte, want map[string]string, inputs ...any) {
	t.Helper()
	var got map[string]string
	if err := json.Unmarshal(value, &got); err != nil || got == nil {
		t.Fatalf("value %q read back is not an object of strings", value)
	}
	for _, in := range inputs {
		switch x := in.(type) {
		case []byte:
			if !utf8.Valid(x) {
				return
			}
		case string:
			if !utf8.ValidString(x) {
				return
			}
		case []sluice.Header:
			for _, h := range x {
				if !utf8.ValidString(h.Key) || !utf8.Valid(h.Value) {
					return
				}
			}
		}
	}
	if !maps.Equal(got, want) {
		t.Fatalf("fields read back %q, want %q", got, want)
	}
}

// withOrigin is hs without the origin headers of an ID-based origin, with
// the origin headers of o set, sorted by name.
func withOrigin(hs []sluice.Header, o sluice.Origin) []sluice.Header {
	out := slices.Clone(hs)
	for _, h := range sluice.AppendOriginHeaders(nil, o) {
		out = setHeader(out, h)
	}
	slices.SortFunc(out, func(a, b sluice.Header) int { return strings.Compare(a.Key, b.Key) })
	return out
}

// setHeader replaces the header of h's name in hs, or appends h.
func setHeader(hs []sluice.Header, h sluice.Header) []sluice.Header {
	for i := range hs {
		if hs[i].Key == h.Key {
			hs[i] = h
			return hs
		}
	}
	return append(hs, h)
}

func sameHeader(a, b sluice.Header) bool { return a.Key == b.Key && bytes.Equal(a.Value, b.Value) }

// validFields reports whether every name and value is valid UTF-8.
func validFields(values map[string]any) bool {
	for k, v := range values {
		if !utf8.ValidString(k) || !utf8.ValidString(v.(string)) {
			return false
		}
	}
	return true
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
