package redisstream

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sluicehq/sluice"
)

// HeaderEntryError is the header a [Source] puts on a message it could not
// map from its stream entry, with the reason as its value. The message's
// Value is empty, and a [Sink] refuses to write it (as a permanent failure),
// so it ends up as a dead letter; see the package documentation.
const HeaderEntryError = "redisstream_error"

var (
	// ErrMissingPayload matches, with errors.Is, the [*MissingFieldError]
	// of an entry that has no payload field (see [WithPayloadField]).
	ErrMissingPayload = errors.New("redisstream: entry has no payload field")
	// ErrNotJSONObject matches the failure of a message that must be written
	// as a field map (see [WithFieldsAsJSON]) but whose value is not a JSON
	// object.
	ErrNotJSONObject = errors.New("redisstream: value is not a JSON object")
	// ErrFieldCollision matches the failure of a message that has a header
	// named like a field its event is written to: the payload field, the key
	// field (see [WithKeyField]) or, with [WithFieldsAsJSON], a member of the
	// value. Written as a field, the header would replace part of the event.
	ErrFieldCollision = errors.New("redisstream: a header has the name of a field of the event")
)

// MissingFieldError is why an entry could not be mapped: it lacks the
// payload field. errors.Is(err, ErrMissingPayload) holds for it.
type MissingFieldError struct {
	Stream, ID, Field string
}

// Error implements error.
func (e *MissingFieldError) Error() string {
	return fmt.Sprintf("redisstream: entry %s of stream %q has no %q field", e.ID, e.Stream, e.Field)
}

// Is makes errors.Is(err, ErrMissingPayload) true.
func (e *MissingFieldError) Is(target error) bool { return target == ErrMissingPayload }

// codec maps stream entries to messages and back.
type codec struct {
	payload string
	key     string
	asJSON  bool
}

// decode turns an entry into a message. It reports a mapping problem as the
// second result instead of failing: the message still goes to the pipeline.
func (c codec) decode(stream string, e redis.XMessage) (*sluice.Message, error) {
	m := &sluice.Message{
		Origin:    sluice.Origin{Topic: stream, Offset: -1, ID: e.ID},
		Timestamp: idTime(e.ID),
	}
	if c.asJSON {
		m.Value = fieldsJSON(e.Values)
		return m, nil
	}
	m.Headers = make([]sluice.Header, 0, len(e.Values))
	found := false
	for k, raw := range e.Values {
		v := valueBytes(raw)
		switch {
		case k == c.payload:
			m.Value, found = v, true
		case c.key != "" && k == c.key:
			m.Key = v
		default:
			m.Headers = append(m.Headers, sluice.Header{Key: k, Value: v})
		}
	}
	slices.SortFunc(m.Headers, func(a, b sluice.Header) int { return strings.Compare(a.Key, b.Key) })
	if !found {
		err := &MissingFieldError{Stream: stream, ID: e.ID, Field: c.payload}
		m.Headers = append(m.Headers, sluice.Header{Key: HeaderEntryError, Value: []byte(err.Error())})
		m.Err = err // the pipeline dead-letters it without enriching it
		return m, err
	}
	return m, nil
}

// fields builds the XADD field list of an output message: the payload (or
// the members of the JSON value), the key, the headers, then the origin
// fields of [sluice.AppendOriginHeaders], later names replacing earlier
// ones.
func (c codec) fields(m *sluice.Message) ([]any, error) {
	b := fieldList{args: make([]any, 0, 2*(len(m.Headers)+4))}
	if c.asJSON {
		if err := b.addJSON(m.Value); err != nil {
			return nil, err
		}
	} else {
		b.add(c.payload, m.Value)
		if c.key != "" && m.Key != nil {
			b.add(c.key, m.Key)
		}
	}
	event := len(b.args) // the fields of the event come first
	for _, h := range m.Headers {
		if h.Key == HeaderEntryError {
			continue
		}
		if c.reserved(h.Key) || b.has(h.Key, event) {
			return nil, sluice.Permanent(fmt.Errorf("%w: header %q; rename the header, or write to a field of another name",
				ErrFieldCollision, h.Key))
		}
		b.add(h.Key, h.Value)
	}
	if o := m.Origin; o.ID != "" {
		b.addString(sluice.HeaderSourceStream, o.Topic)
		b.addString(sluice.HeaderSourceID, o.ID)
		b.addString(sluice.HeaderIdempotencyKey, o.Topic+"/"+o.ID)
	} else {
		for _, h := range sluice.AppendOriginHeaders(nil, o) {
			b.add(h.Key, h.Value)
		}
	}
	return b.args, nil
}

// deadLetterFields builds the XADD field list of a dead letter: the original
// payload (or field map) and the headers of [sluice.DeadLetter.Headers]. An
// original value that is not a JSON object, in field-map mode, is kept whole
// under the payload field. The event is kept whole: a header named like one
// of its fields (see [ErrFieldCollision]) is left out.
func (c codec) deadLetterFields(d sluice.DeadLetter) []any {
	var b fieldList
	if !c.asJSON || b.addJSON(d.Msg.Value) != nil {
		b.args = b.args[:0]
		b.add(c.payload, d.Msg.Value)
	}
	if !c.asJSON && c.key != "" && d.Msg.Key != nil {
		b.add(c.key, d.Msg.Key)
	}
	event := len(b.args)
	for _, h := range d.Headers() {
		if c.reserved(h.Key) || b.has(h.Key, event) {
			continue
		}
		b.add(h.Key, h.Value)
	}
	return b.args
}

// reserved reports whether name is the payload or the key field, which no
// header may replace. With WithFieldsAsJSON the members of the value are
// the event's fields instead.
func (c codec) reserved(name string) bool {
	return !c.asJSON && (name == c.payload || (c.key != "" && name == c.key))
}

// fieldList is an XADD field list (name, value, name, value, ...) in which a
// later name replaces the value of an earlier one.
type fieldList struct {
	args []any
}

func (b *fieldList) add(name string, v []byte) {
	if v == nil {
		v = []byte{}
	}
	b.set(name, v)
}

func (b *fieldList) addString(name, v string) { b.set(name, v) }

// has reports whether one of the first n/2 fields is called name.
func (b *fieldList) has(name string, n int) bool {
	for i := 0; i < n; i += 2 {
		if b.args[i].(string) == name {
			return true
		}
	}
	return false
}

func (b *fieldList) set(name string, v any) {
	for i := 0; i < len(b.args); i += 2 {
		if b.args[i].(string) == name {
			b.args[i+1] = v
			return
		}
	}
	b.args = append(b.args, name, v)
}

func (b *fieldList) addJSON(value []byte) error {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(value, &obj); err != nil || obj == nil {
		return sluice.Permanent(ErrNotJSONObject)
	}
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		raw := bytes.TrimSpace(obj[k])
		if len(raw) > 0 && raw[0] == '"' {
			var s string
			if err := json.Unmarshal(raw, &s); err == nil {
				b.addString(k, s)
				continue
			}
		}
		b.add(k, raw)
	}
	return nil
}

// fieldsJSON renders a field map as a JSON object with sorted keys and
// string values.
func fieldsJSON(values map[string]any) []byte {
	keys := make([]string, 0, len(values))
	for k := range values {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var buf bytes.Buffer
	buf.WriteByte('{')
	for i, k := range keys {
		if i > 0 {
			buf.WriteByte(',')
		}
		kb, _ := json.Marshal(k)
		vb, _ := json.Marshal(string(valueBytes(values[k])))
		buf.Write(kb)
		buf.WriteByte(':')
		buf.Write(vb)
	}
	buf.WriteByte('}')
	return buf.Bytes()
}

func valueBytes(v any) []byte {
	switch x := v.(type) {
	case string:
		return []byte(x)
	case []byte:
		return bytes.Clone(x)
	case nil:
		return nil
	default:
		return fmt.Append(nil, x)
	}
}

// idTime returns the time part of an entry ID.
func idTime(id string) time.Time {
	ms, _, _ := strings.Cut(id, "-")
	n, err := strconv.ParseInt(ms, 10, 64)
	if err != nil {
		return time.Time{}
	}
	return time.UnixMilli(n).UTC()
}
