// Package jsonenrich enriches JSON events: it extracts text fields by dot
// path, asks a model for an answer, and stores that answer under one
// top-level key, leaving every other byte of the event as it was.
//
// [New] builds a [sluice.Enricher] from a [ModelFunc]; [Extract] and [Merge]
// are the two halves, for enrichers that call their model some other way.
package jsonenrich

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/sluicehq/sluice"
)

// DefaultKey ("ai_enrichment") is the top-level field under which an
// [Enricher] adds the model's answer.
const DefaultKey = "ai_enrichment"

// Field is one text extracted from an event: its dot path and its text.
type Field struct {
	Path string `json:"path"`
	Text string `json:"text"`
}

// ModelFunc computes an enrichment from an event's text fields. It returns
// the answer as JSON. Its errors follow the rules of [sluice.Enricher].
type ModelFunc func(ctx context.Context, fields []Field, in *sluice.Message) (json.RawMessage, error)

// Enricher is a [sluice.Enricher] for JSON events: it extracts text fields by
// dot path, asks a [ModelFunc] for an answer, and adds that answer under one
// top-level key, leaving every other byte of the event as it was.
type Enricher struct {
	paths []string
	key   string
	model ModelFunc
}

// Option configures an [Enricher].
type Option func(*Enricher)

// WithKey sets the top-level key the answer is stored under. The default
// is [DefaultKey].
func WithKey(key string) Option {
	return func(e *Enricher) { e.key = key }
}

// New returns an enricher that extracts the text at each of paths (see
// [Extract]), calls model, and merges its answer into the event (see
// [Merge]). It fails if paths is empty or malformed, the key is empty, or
// model is nil; each error matches [sluice.ErrInvalidConfig].
func New(paths []string, model ModelFunc, opts ...Option) (*Enricher, error) {
	e := &Enricher{paths: paths, key: DefaultKey, model: model}
	for _, o := range opts {
		o(e)
	}
	var errs []error
	if len(paths) == 0 {
		errs = append(errs, fmt.Errorf("%w: jsonenrich.New needs at least one text field path", sluice.ErrInvalidConfig))
	}
	for _, p := range paths {
		if err := validPath(p); err != nil {
			errs = append(errs, fmt.Errorf("%w: %w", sluice.ErrInvalidConfig, err))
		}
	}
	if e.key == "" {
		errs = append(errs, fmt.Errorf("%w: enrichment key is empty", sluice.ErrInvalidConfig))
	}
	if model == nil {
		errs = append(errs, fmt.Errorf("%w: jsonenrich.New: model func is nil", sluice.ErrInvalidConfig))
	}
	return e, errors.Join(errs...)
}

// Enrich implements [sluice.Enricher].
func (e *Enricher) Enrich(ctx context.Context, in *sluice.Message) (*sluice.Message, error) {
	fields, err := Extract(in.Value, e.paths)
	if err != nil {
		return nil, err
	}
	answer, err := e.model(ctx, fields, in)
	if err != nil {
		return nil, err
	}
	out, err := Merge(in.Value, e.key, answer)
	if err != nil {
		return nil, err
	}
	return in.WithValue(out), nil
}

func validPath(p string) error {
	if p == "" || strings.HasPrefix(p, ".") || strings.HasSuffix(p, ".") || strings.Contains(p, "..") {
		return fmt.Errorf("text field path %q is malformed: use dot-separated keys such as \"review.body\"", p)
	}
	return nil
}

// Extract returns the text at each dot path of the JSON object value, in
// the order given. A path segment selects an object key, or an array element
// when it is a number ("items.0.text"). Every error is [sluice.Permanent] and says
// what is wrong: value is not valid JSON or not an object, or a field is
// missing, not a string, or empty. As with encoding/json, when an object
// repeats a key the last copy counts, and a text's invalid UTF-8 and lone
// surrogate escapes become U+FFFD.
func Extract(value []byte, paths []string) ([]Field, error) {
	if out, ok := extract(value, paths); ok {
		return out, nil
	}
	return extractSlow(value, paths)
}

// extract is Extract in one pass over value that validates it and finds
// the fields (see walker). It returns false wherever Extract fails, and may
// return false elsewhere too; extractSlow then decides and words the error.
func extract(value []byte, paths []string) ([]Field, bool) {
	var w walker
	if !w.init(value, paths) {
		return extractSkipping(value, paths)
	}
	i := skipWS(value, 0)
	if i == len(value) || value[i] != '{' {
		return nil, false
	}
	all := uint(1)<<len(paths) - 1
	if end := w.value(i, 0, 0, all); end < 0 || skipWS(value, end) != len(value) {
		return nil, false
	}
	out := make([]Field, 0, len(paths))
	for p, path := range paths {
		r := w.res[p]
		if r[0] < 0 || value[r[0]] != '"' {
			return nil, false
		}
		s, ok := text(value[r[0]:r[1]])
		if !ok || strings.TrimSpace(s) == "" {
			return nil, false
		}
		out = append(out, Field{Path: path, Text: s})
	}
	return out, true
}

// extractSkipping is extract for more paths, or longer ones, than the
// walker takes: it validates value, then skips to each field.
func extractSkipping(value []byte, paths []string) ([]Field, bool) {
	start, ok := validObject(value)
	if !ok {
		return nil, false
	}
	out := make([]Field, 0, len(paths))
	for _, p := range paths {
		if validPath(p) != nil {
			return nil, false
		}
		raw, ok := find(value, start, p)
		if !ok || raw[0] != '"' {
			return nil, false
		}
		s, ok := text(raw)
		if !ok || strings.TrimSpace(s) == "" {
			return nil, false
		}
		out = append(out, Field{Path: p, Text: s})
	}
	return out, true
}

// extractSlow is Extract by way of encoding/json, which words its errors.
func extractSlow(value []byte, paths []string) ([]Field, error) {
	root, err := object(value)
	if err != nil {
		return nil, err
	}
	out := make([]Field, 0, len(paths))
	for _, p := range paths {
		if err := validPath(p); err != nil {
			return nil, sluice.Permanent(err)
		}
		raw, err := lookup(root, p)
		if err != nil {
			return nil, sluice.Permanent(err)
		}
		var s string
		if raw = bytes.TrimSpace(raw); len(raw) == 0 || raw[0] != '"' || json.Unmarshal(raw, &s) != nil {
			return nil, sluice.Permanent(fmt.Errorf("text field %q is %s, not a string", p, jsonKind(raw)))
		}
		if strings.TrimSpace(s) == "" {
			return nil, sluice.Permanent(fmt.Errorf("text field %q is empty", p))
		}
		out = append(out, Field{Path: p, Text: s})
	}
	return out, nil
}

func object(value []byte) (map[string]json.RawMessage, error) {
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
		return nil, sluice.Permanent(fmt.Errorf("event is %s, not a JSON object", jsonKind(value)))
	}
	return m, nil
}

func lookup(root map[string]json.RawMessage, path string) (json.RawMessage, error) {
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
				return nil, fmt.Errorf("text field %q is missing: %q is %s, not an object or array", path, here, jsonKind(cur))
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

func jsonKind(raw []byte) string {
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
func Merge(value []byte, key string, answer json.RawMessage) ([]byte, error) {
	if out, ok := merge(value, key, answer); ok {
		return out, nil
	}
	return mergeSlow(value, key, answer)
}

// merge is Merge in one validating pass over value's top-level members. It
// returns false wherever Merge fails; mergeSlow then words the error.
func merge(value []byte, key string, answer json.RawMessage) ([]byte, bool) {
	if !validJSON(answer) {
		return nil, false
	}
	answer = bytes.TrimSpace(answer)
	i := skipWS(value, 0)
	if i == len(value) || value[i] != '{' {
		return nil, false
	}
	// Spans of the key's existing values, as in mergeSlow.
	var buf [4][2]int
	spans := buf[:0]
	members := 0
	i = skipWS(value, i+1)
	if i < len(value) && value[i] == '}' {
		i++
	} else {
		for {
			if i >= len(value) || value[i] != '"' {
				return nil, false
			}
			end := validString(value, i)
			if end < 0 {
				return nil, false
			}
			match := keyIs(value[i+1:end-1], key)
			if i = skipWS(value, end); i >= len(value) || value[i] != ':' {
				return nil, false
			}
			i = skipWS(value, i+1)
			if end = validValue(value, i, 1); end < 0 {
				return nil, false
			}
			members++
			if match {
				spans = append(spans, [2]int{i, end})
			}
			if i = skipWS(value, end); i >= len(value) {
				return nil, false
			}
			if value[i] == '}' {
				i++
				break
			}
			if value[i] != ',' {
				return nil, false
			}
			i = skipWS(value, i+1)
		}
	}
	if skipWS(value, i) != len(value) {
		return nil, false
	}
	if len(spans) > 0 {
		out := make([]byte, 0, len(value)+len(spans)*len(answer))
		last := 0
		for _, sp := range spans {
			out = append(out, value[last:sp[0]]...)
			out = append(out, answer...)
			last = sp[1]
		}
		return append(out, value[last:]...), true
	}
	closing := i - 1
	out := make([]byte, 0, len(value)+len(key)+len(answer)+4)
	out = append(out, value[:closing]...)
	if members > 0 {
		out = append(out, ',')
	}
	out = appendKey(out, key)
	out = append(out, ':')
	out = append(out, answer...)
	return append(out, value[closing:]...), true
}

// appendKey appends json.Marshal(key), without its cost for plain ASCII.
func appendKey(out []byte, key string) []byte {
	for i := 0; i < len(key); i++ {
		if c := key[i]; c < 0x20 || c >= utf8.RuneSelf || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(key)
			return append(out, q...)
		}
	}
	out = append(out, '"')
	out = append(out, key...)
	return append(out, '"')
}

// mergeSlow is Merge by way of encoding/json, which words its errors.
func mergeSlow(value []byte, key string, answer json.RawMessage) ([]byte, error) {
	if !json.Valid(answer) {
		return nil, sluice.Permanent(fmt.Errorf("enrichment answer is not valid JSON: %.200q", answer))
	}
	if _, err := object(value); err != nil {
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
