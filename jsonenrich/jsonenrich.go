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
// missing, not a string, or empty.
func Extract(value []byte, paths []string) ([]Field, error) {
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
