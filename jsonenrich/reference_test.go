package jsonenrich_test

// The implementation of Extract and Merge before the single-pass scanner,
// kept word for word (names prefixed with ref) as the reference that
// differential_test.go compares the package against.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/jsonenrich"
)

type Field = jsonenrich.Field

func refValidPath(p string) error {
	if p == "" || strings.HasPrefix(p, ".") || strings.HasSuffix(p, ".") || strings.Contains(p, "..") {
		return fmt.Errorf("text field path %q is malformed: use dot-separated keys such as \"review.body\"", p)
	}
	return nil
}

// Extract returns the text at each dot path of the JSON object value, in
// the order given. A path segment selects an object key, or an array element
// when it is a number ("items.0.text"). Every error is [sluice.Permanent] and says
// what is wrong: value is not valid JSON or not an object, or a field is
// missing, not a string, or empty.
func refExtract(value []byte, paths []string) ([]Field, error) {
	root, err := refObject(value)
	if err != nil {
		return nil, err
	}
	out := make([]Field, 0, len(paths))
	for _, p := range paths {
		if err := refValidPath(p); err != nil {
			return nil, sluice.Permanent(err)
		}
		raw, err := refLookup(root, p)
		if err != nil {
			return nil, sluice.Permanent(err)
		}
		var s string
		if raw = bytes.TrimSpace(raw); len(raw) == 0 || raw[0] != '"' || json.Unmarshal(raw, &s) != nil {
			return nil, sluice.Permanent(fmt.Errorf("text field %q is %s, not a string", p, refJSONKind(raw)))
		}
		if strings.TrimSpace(s) == "" {
			return nil, sluice.Permanent(fmt.Errorf("text field %q is empty", p))
		}
		out = append(out, Field{Path: p, Text: s})
	}
	return out, nil
}

func refObject(value []byte) (map[string]json.RawMessage, error) {
	if !json.Valid(value) {
		var x any
		err := json.Unmarshal(value, &x)
		if len(bytes.TrimSpace(value)) == 0 {
			err = errors.New("it is empty")
		}
		return nil, sluice.Permanent(fmt.Errorf("event is not valid JSON: %v", err))
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(value, &m); err != nil || m == nil {
		return nil, sluice.Permanent(fmt.Errorf("event is %s, not a JSON object", refJSONKind(value)))
	}
	return m, nil
}

func refLookup(root map[string]json.RawMessage, path string) (json.RawMessage, error) {
	segs := strings.Split(path, ".")
	var cur json.RawMessage
	obj := root
	for i, seg := range segs {
		here := strings.Join(segs[:i], ".")
		if obj != nil {
			v, ok := obj[seg]
			if !ok {
				return nil, fmt.Errorf("text field %q is missing", path)
			}
			cur = v
		} else {
			var arr []json.RawMessage
			if err := json.Unmarshal(cur, &arr); err != nil {
				return nil, fmt.Errorf("text field %q is missing: %q is %s, not an object or array", path, here, refJSONKind(cur))
			}
			n, err := strconv.Atoi(seg)
			if err != nil || n < 0 || n >= len(arr) {
				return nil, fmt.Errorf("text field %q is missing: %q has no element %q", path, here, seg)
			}
			cur = arr[n]
		}
		obj = nil
		if i < len(segs)-1 {
			var m map[string]json.RawMessage
			if json.Unmarshal(cur, &m) == nil && m != nil {
				obj = m
			}
		}
	}
	return cur, nil
}

func refJSONKind(raw []byte) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return "empty"
	}
	switch raw[0] {
	case '{':
		return "an object"
	case '[':
		return "an array"
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	default:
		return "a number"
	}
}

// Merge returns the JSON object value with answer stored under the
// top-level key. Every other byte of value is kept as it was: field order,
// spacing and number formatting do not change. An existing key is replaced
// (every copy of it, if the event repeats the key).
// It fails, with a [sluice.Permanent] error, if value is not a JSON object or
// answer is not valid JSON.
func refMerge(value []byte, key string, answer json.RawMessage) ([]byte, error) {
	if !json.Valid(answer) {
		return nil, sluice.Permanent(fmt.Errorf("enrichment answer is not valid JSON: %.200q", answer))
	}
	if _, err := refObject(value); err != nil {
		return nil, err
	}
	answer = bytes.TrimSpace(answer)
	dec := json.NewDecoder(bytes.NewReader(value))
	if _, err := dec.Token(); err != nil { // '{'
		return nil, sluice.Permanent(fmt.Errorf("event is not valid JSON: %v", err))
	}
	// Spans of the key's existing values. Every copy of a duplicated key is
	// replaced, so that whichever copy a reader keeps, it sees the answer.
	type span struct{ start, end int }
	var spans []span
	members := 0
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, sluice.Permanent(fmt.Errorf("event is not valid JSON: %v", err))
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, sluice.Permanent(fmt.Errorf("event is not valid JSON: %v", err))
		}
		members++
		if k, _ := t.(string); k == key {
			end := int(dec.InputOffset())
			spans = append(spans, span{end - len(raw), end})
		}
	}
	if len(spans) > 0 {
		out := make([]byte, 0, len(value)+len(spans)*len(answer))
		last := 0
		for _, sp := range spans {
			out = append(out, value[last:sp.start]...)
			out = append(out, answer...)
			last = sp.end
		}
		return append(out, value[last:]...), nil
	}
	closing := bytes.LastIndexByte(value, '}')
	qkey, _ := json.Marshal(key)
	out := make([]byte, 0, len(value)+len(qkey)+len(answer)+2)
	out = append(out, value[:closing]...)
	if members > 0 {
		out = append(out, ',')
	}
	out = append(out, qkey...)
	out = append(out, ':')
	out = append(out, answer...)
	return append(out, value[closing:]...), nil
}
