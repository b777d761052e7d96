package openai

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/sluicehq/sluice/internal/jsonkeys"
)

// ErrSchema matches every error [ParseSchema] returns.
var ErrSchema = errors.New("openai: unsupported or malformed JSON schema")

// Schema is a compiled JSON schema of the subset that structured outputs
// use: type (one name or a list, including "null"), properties, required,
// additionalProperties (a boolean or a schema), enum, items, minimum and
// maximum. Annotations (description, title, $schema, default, examples,
// format) are accepted and ignored; any other keyword is refused, so that
// a schema is never silently checked less strictly than it reads.
type Schema struct {
	raw        json.RawMessage
	types      []string
	properties map[string]*Schema
	order      []string // property names in schema order
	required   []string
	addlBool   *bool
	addl       *Schema
	enum       []string // canonical JSON of each allowed value
	items      *Schema
	minimum    *float64
	maximum    *float64
}

var annotations = map[string]bool{
	"description": true, "title": true, "$schema": true, "default": true,
	"examples": true, "format": true, "$id": true, "$comment": true,
}

var knownTypes = map[string]bool{
	"object": true, "array": true, "string": true, "number": true,
	"integer": true, "boolean": true, "null": true,
}

// ParseSchema compiles a JSON schema.
func ParseSchema(raw json.RawMessage) (*Schema, error) {
	return parseSchema(raw, "$")
}

func parseSchema(raw json.RawMessage, at string) (*Schema, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil || m == nil {
		return nil, fmt.Errorf("%w: %s is not a JSON object", ErrSchema, at)
	}
	s := &Schema{raw: compact(raw)}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		v := m[k]
		switch k {
		case "type":
			var one string
			if json.Unmarshal(v, &one) == nil {
				s.types = []string{one}
			} else if err := json.Unmarshal(v, &s.types); err != nil || len(s.types) == 0 {
				return nil, fmt.Errorf("%w: %s.type must be a type name or a list of them", ErrSchema, at)
			}
			for _, t := range s.types {
				if !knownTypes[t] {
					return nil, fmt.Errorf("%w: %s.type %q is not a JSON schema type", ErrSchema, at, t)
				}
			}
		case "properties":
			var props map[string]json.RawMessage
			if err := json.Unmarshal(v, &props); err != nil || props == nil {
				return nil, fmt.Errorf("%w: %s.properties must be an object", ErrSchema, at)
			}
			s.properties = make(map[string]*Schema, len(props))
			for name, ps := range props {
				sub, err := parseSchema(ps, at+"."+name)
				if err != nil {
					return nil, err
				}
				s.properties[name] = sub
			}
			s.order = jsonkeys.Of(v)
		case "required":
			if err := json.Unmarshal(v, &s.required); err != nil {
				return nil, fmt.Errorf("%w: %s.required must be a list of names", ErrSchema, at)
			}
		case "additionalProperties":
			var b bool
			if json.Unmarshal(v, &b) == nil {
				s.addlBool = &b
				continue
			}
			sub, err := parseSchema(v, at+".additionalProperties")
			if err != nil {
				return nil, err
			}
			s.addl = sub
		case "enum":
			var vals []json.RawMessage
			if err := json.Unmarshal(v, &vals); err != nil || len(vals) == 0 {
				return nil, fmt.Errorf("%w: %s.enum must be a non-empty list", ErrSchema, at)
			}
			for _, e := range vals {
				c, err := Canonical(e)
				if err != nil {
					return nil, fmt.Errorf("%w: %s.enum: %v", ErrSchema, at, err)
				}
				s.enum = append(s.enum, string(c))
			}
		case "items":
			sub, err := parseSchema(v, at+"[]")
			if err != nil {
				return nil, err
			}
			s.items = sub
		case "minimum", "maximum":
			var f float64
			if err := json.Unmarshal(v, &f); err != nil {
				return nil, fmt.Errorf("%w: %s.%s must be a number", ErrSchema, at, k)
			}
			if k == "minimum" {
				s.minimum = &f
			} else {
				s.maximum = &f
			}
		default:
			if !annotations[k] {
				return nil, fmt.Errorf("%w: %s uses keyword %q; supported are type, properties, required, additionalProperties, enum, items, minimum and maximum", ErrSchema, at, k)
			}
		}
	}
	for _, r := range s.required {
		if _, ok := s.properties[r]; !ok && s.properties != nil {
			return nil, fmt.Errorf("%w: %s.required names %q, which is not in properties", ErrSchema, at, r)
		}
	}
	return s, nil
}

// JSON returns the schema as compact JSON.
func (s *Schema) JSON() json.RawMessage { return s.raw }

// Strict reports whether the schema meets the rules of OpenAI's strict
// structured outputs: every object lists all its properties as required and
// forbids additional properties.
func (s *Schema) Strict() bool {
	if s.is("object") || s.properties != nil {
		if s.addlBool == nil || *s.addlBool || len(s.required) != len(s.properties) {
			return false
		}
		for _, p := range s.properties {
			if !p.Strict() {
				return false
			}
		}
	}
	if s.items != nil && !s.items.Strict() {
		return false
	}
	return true
}

func (s *Schema) is(t string) bool { return slices.Contains(s.types, t) }

// ValidationError is a value that does not match a schema: where (a path
// like "$.entities[2].type") and what is wrong.
type ValidationError struct {
	Path    string
	Problem string
}

// Error implements error.
func (e *ValidationError) Error() string { return e.Path + ": " + e.Problem }

// Validate checks the JSON document doc against the schema and returns a
// [*ValidationError] for the first mismatch, or an error if doc is not JSON.
func (s *Schema) Validate(doc json.RawMessage) error {
	v, err := decodeNumbers(doc)
	if err != nil {
		return err
	}
	return s.validate(v, "$")
}

func decodeNumbers(doc []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("not valid JSON: %w", err)
	}
	if _, err := dec.Token(); err == nil {
		return nil, errors.New("not valid JSON: more than one value")
	}
	return v, nil
}

func kindOf(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case string:
		return "string"
	case json.Number:
		if _, err := strconv.ParseInt(x.String(), 10, 64); err == nil {
			return "integer"
		}
		return "number"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	}
	return fmt.Sprintf("%T", v)
}

func (s *Schema) validate(v any, at string) error {
	fail := func(format string, args ...any) error {
		return &ValidationError{Path: at, Problem: fmt.Sprintf(format, args...)}
	}
	if len(s.types) > 0 {
		k := kindOf(v)
		ok := s.is(k) || (k == "integer" && s.is("number"))
		if !ok && k == "number" && s.is("integer") {
			// 2.0 is an integer in JSON schema.
			if f, err := v.(json.Number).Float64(); err == nil && f == float64(int64(f)) {
				ok = true
			}
		}
		if !ok {
			return fail("is %s, want %s", aKind(k), strings.Join(s.types, " or "))
		}
	}
	if s.enum != nil {
		c, _ := json.Marshal(v)
		c, _ = Canonical(c)
		if !slices.Contains(s.enum, string(c)) {
			return fail("%s is not one of %s", truncate(string(c), 60), strings.Join(s.enum, ", "))
		}
	}
	switch x := v.(type) {
	case json.Number:
		f, err := x.Float64()
		if err != nil {
			return fail("number %s is out of range", x)
		}
		if s.minimum != nil && f < *s.minimum {
			return fail("%s is below the minimum %v", x, *s.minimum)
		}
		if s.maximum != nil && f > *s.maximum {
			return fail("%s is above the maximum %v", x, *s.maximum)
		}
	case []any:
		if s.items != nil {
			for i, e := range x {
				if err := s.items.validate(e, fmt.Sprintf("%s[%d]", at, i)); err != nil {
					return err
				}
			}
		}
	case map[string]any:
		for _, r := range s.required {
			if _, ok := x[r]; !ok {
				return fail("required property %q is missing", r)
			}
		}
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			sub := x[k]
			if ps, ok := s.properties[k]; ok {
				if err := ps.validate(sub, at+"."+k); err != nil {
					return err
				}
				continue
			}
			if s.addlBool != nil && !*s.addlBool {
				return fail("property %q is not allowed", k)
			}
			if s.addl != nil {
				if err := s.addl.validate(sub, at+"."+k); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func aKind(kind string) string {
	switch kind {
	case "object", "array", "integer":
		return "an " + kind
	case "null":
		return kind
	}
	return "a " + kind
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// Canonical returns doc in a canonical form: compact, object keys sorted,
// no HTML escaping, numbers as written. Equal JSON values have equal
// canonical forms (up to number spelling, such as 1.0 and 1).
func Canonical(doc json.RawMessage) ([]byte, error) {
	v, err := decodeNumbers(doc)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(buf.Bytes(), "\n"), nil
}

func compact(raw []byte) json.RawMessage {
	var buf bytes.Buffer
	if json.Compact(&buf, raw) != nil {
		return raw
	}
	return buf.Bytes()
}
