package openai

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestSchemaValidate(t *testing.T) {
	schema := json.RawMessage(`{
		"type": "object",
		"description": "ignored",
		"properties": {
			"label": {"type": "string", "enum": ["a", "b"]},
			"score": {"type": "number", "minimum": -1, "maximum": 1},
			"n":     {"type": "integer", "minimum": 0},
			"tags":  {"type": "array", "items": {"type": "object", "properties": {"t": {"type": "string"}}, "required": ["t"], "additionalProperties": false}},
			"maybe": {"type": ["string", "null"]},
			"meta":  {"type": "object", "additionalProperties": {"type": "boolean"}}
		},
		"required": ["label", "score"],
		"additionalProperties": false
	}`)
	s, err := ParseSchema(schema)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		doc  string
		want string // "" means valid
	}{
		{`{"label":"a","score":0.5}`, ""},
		{`{"label":"b","score":-1,"n":3,"tags":[{"t":"x"}],"maybe":null,"meta":{"k":true}}`, ""},
		{`{"label":"a","score":1,"n":2.0}`, ""},
		{`{"label":"a","score":1,"maybe":"s"}`, ""},
		{`{"label":"c","score":0}`, `$.label: "c" is not one of "a", "b"`},
		{`{"label":"a"}`, `$: required property "score" is missing`},
		{`{"label":"a","score":2}`, `$.score: 2 is above the maximum 1`},
		{`{"label":"a","score":-1.5}`, `$.score: -1.5 is below the minimum -1`},
		{`{"label":"a","score":"high"}`, `$.score: is a string, want number`},
		{`{"label":"a","score":0,"n":1.5}`, `$.n: is a number, want integer`},
		{`{"label":"a","score":0,"n":-1}`, `$.n: -1 is below the minimum 0`},
		{`{"label":"a","score":0,"x":1}`, `$: property "x" is not allowed`},
		{`{"label":"a","score":0,"tags":[{"t":"x"},{"u":"y"}]}`, `$.tags[1]: required property "t" is missing`},
		{`{"label":"a","score":0,"tags":{}}`, `$.tags: is an object, want array`},
		{`{"label":"a","score":0,"maybe":1}`, `$.maybe: is an integer, want null or string`},
		{`{"label":"a","score":0,"meta":{"k":"yes"}}`, `$.meta.k: is a string, want boolean`},
		{`{"label":null,"score":0}`, `$.label: is null, want string`},
		{`[1]`, `$: is an array, want object`},
		{`{"label":"a","score":0} {}`, `more than one value`},
		{`{"label":`, `not valid JSON`},
	}
	for _, tc := range tests {
		err := s.Validate(json.RawMessage(tc.doc))
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: unexpected %v", tc.doc, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: got %v, want %q", tc.doc, err, tc.want)
		}
	}
	var ve *ValidationError
	if err := s.Validate(json.RawMessage(`{"label":"z","score":0}`)); !errors.As(err, &ve) || ve.Path != "$.label" {
		t.Errorf("want a *ValidationError at $.label, got %v", err)
	}
}

func TestParseSchemaErrors(t *testing.T) {
	for doc, want := range map[string]string{
		`[]`:                                     "not a JSON object",
		`{"type":"thing"}`:                       `$.type: value must be one of 'array', 'boolean'`,
		`{"type":[]}`:                            "$.type: value must be one of",
		`{"properties":{"a":{"anyOf":[]}}}`:      `$.properties.a.anyOf: minItems: got 0, want 1`,
		`{"enum":[]}`:                            "$.enum must be a non-empty list",
		`{"minimum":"0"}`:                        "$.minimum: got string, want number",
		`{"properties":{"a":{}},"required":[1]}`: "$.required[0]: got number, want string",
		`{"properties":{"a":{}},"required":["b"]}`:                `$.required names "b", which is not in properties`,
		`{"properties":{"a":{"properties":{},"required":["x"]}}}`: `$.a.required names "x"`,
		`{"$ref":"file:///etc/passwd"}`:                           "leaves the schema",
		`{"$ref":"https://example.com/schema.json"}`:              "leaves the schema",
		`{"properties":{"a":{"$ref":"#/$defs/missing"}}}`:         "missing",
		`{"type":"string","pattern":"("}`:                         "pattern",
	} {
		_, err := ParseSchema(json.RawMessage(doc))
		if !errors.Is(err, ErrSchema) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v, want %q", doc, err, want)
		}
		if err != nil && strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: the error takes more than one line: %v", doc, err)
		}
	}
}

// What strict structured outputs accept, the validator enforces.
func TestSchemaKeywordsOfStrictMode(t *testing.T) {
	schema := json.RawMessage(`{
		"type": "object",
		"$defs": {"tag": {"type": "string", "pattern": "^[a-z]+$"}},
		"properties": {
			"kind":  {"const": "review"},
			"tags":  {"type": "array", "items": {"$ref": "#/$defs/tag"}, "minItems": 1, "maxItems": 3},
			"score": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
			"when":  {"type": "string", "format": "date"}
		},
		"required": ["kind", "tags", "score", "when"],
		"additionalProperties": false
	}`)
	s, err := ParseSchema(schema)
	if err != nil {
		t.Fatal(err)
	}
	if !s.Strict() {
		t.Error("a schema of strict mode's keywords is not strict")
	}
	for doc, want := range map[string]string{
		`{"kind":"review","tags":["a"],"score":1e20,"when":"2026-12-02"}`: "",
		`{"kind":"review","tags":["a","b"],"score":null,"when":"x"}`:      "",
		`{"kind":"other","tags":["a"],"score":1,"when":"x"}`:              `$.kind: "other" is not "review"`,
		`{"kind":"review","tags":[],"score":1,"when":"x"}`:                "$.tags: minItems",
		`{"kind":"review","tags":["a","b","c","d"],"score":1,"when":"x"}`: "$.tags: maxItems",
		`{"kind":"review","tags":["A"],"score":1,"when":"x"}`:             "$.tags[0]:",
		`{"kind":"review","tags":["a"],"score":1.5,"when":"x"}`:           "$.score",
	} {
		err := s.Validate(json.RawMessage(doc))
		if want == "" {
			if err != nil {
				t.Errorf("%s: %v", doc, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v, want %q", doc, err, want)
		}
	}
}

func TestSchemaStrict(t *testing.T) {
	for _, task := range []Task{Sentiment(), Entities(), Translate("French"), Spam()} {
		s, err := task.compile([]string{"a.b", "c"})
		if err != nil {
			t.Fatal(err)
		}
		if !s.Strict() {
			t.Errorf("%s: the built-in schema must be strict-compatible", task.Name)
		}
	}
	for doc, want := range map[string]bool{
		`{"type":"object","properties":{"a":{"type":"string"}},"required":["a"],"additionalProperties":false}`:                                          true,
		`{"type":"object","properties":{"a":{"type":"string"}},"required":[],"additionalProperties":false}`:                                             false,
		`{"type":"object","properties":{"a":{"type":"string"}},"required":["a"]}`:                                                                       false,
		`{"type":"object","properties":{"a":{"type":"array","items":{"type":"object","properties":{}}}},"required":["a"],"additionalProperties":false}`: false,
		`{"anyOf":[{"type":"object"}]}`: false,
		`{"type":"object","properties":{"a":{"oneOf":[{"type":"string"}]}},"required":["a"],"additionalProperties":false}`:                                                             false,
		`{"type":"object","$defs":{"o":{"type":"object","properties":{"x":{"type":"string"}}}},"properties":{"a":{"$ref":"#/$defs/o"}},"required":["a"],"additionalProperties":false}`: false,
	} {
		s, err := ParseSchema(json.RawMessage(doc))
		if err != nil {
			t.Fatal(err)
		}
		if s.Strict() != want {
			t.Errorf("%s: Strict() = %v", doc, !want)
		}
	}
}

func TestParseAnswerForms(t *testing.T) {
	want := `{"a":1}`
	for _, content := range []string{
		`{"a":1}`,
		"  {\n  \"a\": 1\n}\n",
		"```json\n{\"a\": 1}\n```",
		"```\n{\"a\":1}\n```",
		"```{\"a\":1}```",
		"Sure! Here it is:\n```json\n{\"a\":1}\n```\nAnything else?",
		`The answer is {"a":1}. Hope that helps {`,
		"<think>the user wants {json}</think>\n{\"a\":1}",
		`{broken {"a":1}`,
	} {
		got, err := parseAnswer(content)
		if err != nil || string(got) != want {
			t.Errorf("%q: got %s, %v", content, got, err)
		}
	}
	for _, content := range []string{"", "   ", "no json here", `["a"]`, `"a"`, `{"a":`, "<think>x</think>"} {
		if got, err := parseAnswer(content); !errors.Is(err, ErrInvalidAnswer) {
			t.Errorf("%q: got %s, want ErrInvalidAnswer", content, got)
		}
	}
}

func TestCanonicalAndHash(t *testing.T) {
	a, _ := Canonical(json.RawMessage(`{ "b": [1, 2.50, "<x>"], "a": {"d": true, "c": null} }`))
	if want := `{"a":{"c":null,"d":true},"b":[1,2.50,"<x>"]}`; string(a) != want {
		t.Errorf("canonical %s, want %s", a, want)
	}
	h1, _ := ResultHash(json.RawMessage(`{"x":1,"y":2}`))
	h2, _ := ResultHash(json.RawMessage(`{ "y":2, "x":1 }`))
	if h1 != h2 || len(h1) != len("sha256:")+64 {
		t.Errorf("hashes %s, %s", h1, h2)
	}
}

// An answer with several mismatches names the same one every time, the
// first by its path, although the validator meets them in map order.
func TestSchemaValidateNamesTheSameMismatchEveryTime(t *testing.T) {
	s, err := ParseSchema(json.RawMessage(`{"type":"object","properties":{
		"a":{"type":"string"},"b":{"type":"integer"},"c":{"type":"array","items":{"type":"string"}},"d":{"enum":["x"]}},
		"required":["a","b","c","d"]}`))
	if err != nil {
		t.Fatal(err)
	}
	doc := json.RawMessage(`{"d":"y","c":["ok",1,2,3,4,5,6,7,8,9,10,11],"b":"no","a":7}`)
	for i := 0; i < 200; i++ {
		if err := s.Validate(doc); err == nil || !strings.HasPrefix(err.Error(), "$.a: ") {
			t.Fatalf("run %d: %v, want the mismatch at $.a", i, err)
		}
	}
	doc = json.RawMessage(`{"a":"","b":1,"d":"x","c":["ok",1,2,3,4,5,6,7,8,9,10,11]}`)
	for i := 0; i < 200; i++ {
		if err := s.Validate(doc); err == nil || !strings.HasPrefix(err.Error(), "$.c[1]: ") {
			t.Fatalf("run %d: %v, want the mismatch at $.c[1]", i, err)
		}
	}
}
