package openai

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/big"
	"slices"
	"strconv"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
)

// ErrSchema matches every error [ParseSchema] returns.
var ErrSchema = errors.New("openai: unsupported or malformed JSON schema")

// Schema is a compiled JSON Schema (draft 2020-12 unless the schema names
// another with $schema), checked by a full validator: every keyword of the
// draft is enforced, including those OpenAI's strict structured outputs
// accept (anyOf, $defs and $ref, const, pattern, format, minItems, ...).
// A $ref may point only inside the schema itself; references to files or
// URLs are refused.
type Schema struct {
	raw      json.RawMessage
	compiled *jsonschema.Schema
	strict   bool
	object   bool // the top level says "type": "object"
}

// ParseSchema compiles a JSON schema. Besides what the validator checks, a
// "required" list must name properties the object declares.
func ParseSchema(raw json.RawMessage) (*Schema, error) {
	doc, err := decodeNumbers(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: $ is %v", ErrSchema, err)
	}
	root, ok := doc.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%w: $ is not a JSON object", ErrSchema)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.UseLoader(noExternalRefs{})
	const loc = "sluice:///schema.json"
	if err := c.AddResource(loc, doc); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrSchema, err)
	}
	compiled, err := c.Compile(loc)
	if err != nil {
		var sve *jsonschema.SchemaValidationError
		var ve *jsonschema.ValidationError
		if errors.As(err, &sve) && errors.As(sve.Err, &ve) {
			leaf := firstLeaf(ve)
			return nil, fmt.Errorf("%w: %s: %s", ErrSchema, instancePath(leaf.InstanceLocation), leaf.ErrorKind.LocalizedString(printer))
		}
		return nil, fmt.Errorf("%w: %s", ErrSchema, strings.ReplaceAll(err.Error(), loc, "$"))
	}
	if err := checkSchema(root, "$"); err != nil {
		return nil, err
	}
	return &Schema{raw: compact(raw), compiled: compiled, strict: strictOK(root, true), object: root["type"] == "object"}, nil
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

// noExternalRefs refuses every $ref that leaves the schema.
type noExternalRefs struct{}

func (noExternalRefs) Load(url string) (any, error) {
	return nil, fmt.Errorf("$ref %q leaves the schema; only references inside it (#/$defs/...) are allowed", url)
}

// subschemas calls fn for each subschema of s with its path.
func subschemas(s map[string]any, at string, fn func(sub map[string]any, at string) bool) bool {
	visit := func(v any, at string) bool {
		m, ok := v.(map[string]any)
		return !ok || fn(m, at)
	}
	for _, k := range []string{"properties", "$defs", "definitions", "patternProperties"} {
		if m, ok := s[k].(map[string]any); ok {
			for _, name := range slices.Sorted(maps.Keys(m)) {
				p := at + "." + name
				if k != "properties" {
					p = at + "." + k + "." + name
				}
				if !visit(m[name], p) {
					return false
				}
			}
		}
	}
	for _, k := range []string{"items", "additionalProperties", "not", "contains", "if", "then", "else"} {
		if v, ok := s[k]; ok && !visit(v, at+"."+k) {
			return false
		}
	}
	for _, k := range []string{"anyOf", "oneOf", "allOf", "prefixItems"} {
		if l, ok := s[k].([]any); ok {
			for i, v := range l {
				if !visit(v, fmt.Sprintf("%s.%s[%d]", at, k, i)) {
					return false
				}
			}
		}
	}
	return true
}

// checkSchema reports what the draft allows but no answer could meet: a
// "required" list naming a property the object does not declare, or an
// empty enum.
func checkSchema(s map[string]any, at string) error {
	var err error
	var walk func(m map[string]any, at string) bool
	walk = func(m map[string]any, at string) bool {
		if e, ok := m["enum"].([]any); ok && len(e) == 0 {
			err = fmt.Errorf("%w: %s.enum must be a non-empty list: no value would match", ErrSchema, at)
			return false
		}
		props, hasProps := m["properties"].(map[string]any)
		if req, ok := m["required"].([]any); ok && hasProps {
			for _, r := range req {
				name, _ := r.(string)
				if _, ok := props[name]; !ok {
					err = fmt.Errorf("%w: %s.required names %q, which is not in properties", ErrSchema, at, name)
					return false
				}
			}
		}
		return subschemas(m, at, walk)
	}
	walk(s, at)
	return err
}

// strictKeywords are the keywords OpenAI's strict structured outputs accept.
var strictKeywords = map[string]bool{
	"type": true, "properties": true, "required": true, "additionalProperties": true, "items": true,
	"enum": true, "const": true, "anyOf": true, "$defs": true, "$ref": true, "description": true,
	"title": true, "$schema": true, "$id": true, "$comment": true, "default": true, "examples": true,
	"pattern": true, "format": true, "minimum": true, "maximum": true, "exclusiveMinimum": true,
	"exclusiveMaximum": true, "multipleOf": true, "minItems": true, "maxItems": true,
}

// strictOK reports whether s meets the rules of strict structured outputs:
// only the keywords they know; every object lists all its properties as
// required and forbids additional properties; the root is an object, not an
// anyOf.
func strictOK(s map[string]any, root bool) bool {
	for k := range s {
		if !strictKeywords[k] {
			return false
		}
	}
	if root {
		if _, ok := s["anyOf"]; ok {
			return false
		}
	}
	if props, ok := s["properties"].(map[string]any); ok || s["type"] == "object" {
		if s["additionalProperties"] != false {
			return false
		}
		req, _ := s["required"].([]any)
		if len(req) != len(props) {
			return false
		}
	}
	return subschemas(s, "", func(sub map[string]any, _ string) bool { return strictOK(sub, false) })
}

// JSON returns the schema as compact JSON.
func (s *Schema) JSON() json.RawMessage { return s.raw }

// Strict reports whether the schema meets the rules of OpenAI's strict
// structured outputs: only the keywords strict mode knows, every object
// lists all its properties as required and forbids additional properties,
// and the root is an object.
func (s *Schema) Strict() bool { return s.strict }

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
	err = s.compiled.Validate(v)
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return err
	}
	leaf := firstLeaf(ve)
	return &ValidationError{Path: instancePath(leaf.InstanceLocation), Problem: problem(leaf.ErrorKind, valueAt(v, leaf.InstanceLocation))}
}

// valueAt is the value of doc at a JSON pointer's tokens, or nil.
func valueAt(doc any, tokens []string) any {
	for _, t := range tokens {
		switch x := doc.(type) {
		case map[string]any:
			doc = x[t]
		case []any:
			i, err := strconv.Atoi(t)
			if err != nil || i < 0 || i >= len(x) {
				return nil
			}
			doc = x[i]
		default:
			return nil
		}
	}
	return doc
}

// kindOf names the JSON type of a decoded value, telling integers from
// other numbers.
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

// firstLeaf is the most specific cause of a validation error that comes
// first: the validator walks an object's properties in map order, so its
// causes come in a different order from run to run, and the one reported is
// chosen by the answer's path (then the schema's location) instead.
func firstLeaf(ve *jsonschema.ValidationError) *jsonschema.ValidationError {
	if len(ve.Causes) == 0 {
		return ve
	}
	var best *jsonschema.ValidationError
	for _, c := range ve.Causes {
		if l := firstLeaf(c); best == nil || leafBefore(l, best) {
			best = l
		}
	}
	return best
}

// leafBefore orders validation errors by instance location, token by token
// (array indexes as numbers), then by the schema location.
func leafBefore(a, b *jsonschema.ValidationError) bool {
	x, y := a.InstanceLocation, b.InstanceLocation
	for i := 0; i < len(x) && i < len(y); i++ {
		if x[i] == y[i] {
			continue
		}
		m, errM := strconv.Atoi(x[i])
		n, errN := strconv.Atoi(y[i])
		if errM == nil && errN == nil {
			return m < n
		}
		return x[i] < y[i]
	}
	if len(x) != len(y) {
		return len(x) < len(y)
	}
	return a.SchemaURL < b.SchemaURL
}

// instancePath spells a JSON pointer's tokens as $.a.b[2].
func instancePath(tokens []string) string {
	var b strings.Builder
	b.WriteString("$")
	for _, t := range tokens {
		if _, err := strconv.Atoi(t); err == nil {
			b.WriteString("[" + t + "]")
		} else {
			b.WriteString("." + t)
		}
	}
	return b.String()
}

var printer = message.NewPrinter(language.English)

// problem words the common mismatches as answers go wrong, and the rest as
// the validator does.
func problem(k jsonschema.ErrorKind, got any) string {
	switch k := k.(type) {
	case *kind.Type:
		return fmt.Sprintf("is %s, want %s", aKind(kindOf(got)), strings.Join(k.Want, " or "))
	case *kind.Enum:
		want := make([]string, len(k.Want))
		for i, w := range k.Want {
			want[i] = canonicalValue(w)
		}
		return fmt.Sprintf("%s is not one of %s", truncate(canonicalValue(k.Got), 60), strings.Join(want, ", "))
	case *kind.Const:
		return fmt.Sprintf("%s is not %s", truncate(canonicalValue(k.Got), 60), canonicalValue(k.Want))
	case *kind.Required:
		return fmt.Sprintf("required property %q is missing", k.Missing[0])
	case *kind.AdditionalProperties:
		return fmt.Sprintf("property %q is not allowed", k.Properties[0])
	case *kind.Minimum:
		return fmt.Sprintf("%s is below the minimum %s", ratString(k.Got), ratString(k.Want))
	case *kind.Maximum:
		return fmt.Sprintf("%s is above the maximum %s", ratString(k.Got), ratString(k.Want))
	}
	return k.LocalizedString(printer)
}

func canonicalValue(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	if c, err := Canonical(b); err == nil {
		return string(c)
	}
	return string(b)
}

func ratString(r *big.Rat) string {
	if r.IsInt() {
		return r.Num().String()
	}
	f, _ := r.Float64()
	return strconv.FormatFloat(f, 'g', -1, 64)
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
