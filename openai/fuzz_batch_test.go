package openai

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"
)

// FuzzBatchAnswer feeds arbitrary model output to the parser of a batch
// answer, for a call of 2 to 9 events. Whatever comes in, it must not
// panic; it either fails as a whole with ErrInvalidAnswer (and then the
// output was not a JSON object) or returns exactly one part per requested
// id, in order, each either an answer that fits the task's schema and can
// be hashed, equal to what the object holds under that id, or an error
// matching ErrInvalidAnswer that names the id.
func FuzzBatchAnswer(f *testing.F) {
	const pos, neg = `{"label":"positive","score":0.9}`, `{"label":"negative","score":-0.5}`
	for _, seed := range []struct {
		content string
		events  uint8
	}{
		{`{"e1":` + pos + `,"e2":` + neg + `}`, 2},
		{`{"e2":` + neg + `,"e1":` + pos + `,"e3":` + pos + `}`, 3},
		{`{"e1":` + pos + `}`, 2},                                   // an id missing
		{`{"e1":` + pos + `,"e1":` + neg + `,"e2":` + pos + `}`, 2}, // an id twice
		{`{"e1":` + pos + `,"e2":{"label":"great","score":2}}`, 2},  // an answer off the schema
		{`{"e1":null,"e2":[],"e3":"positive","e4":1e999}`, 4},
		{`{"e\u0031":` + pos + `,"E2":` + neg + `,"e2 ":` + neg + `}`, 2},
		{`{"e1":` + pos + `,"e2":` + neg + `,"e10":` + pos + `,"":{}}`, 9},
		{"```json\n{\"e1\":" + pos + ",\"e2\":" + neg + "}\n```", 2},
		{"<think>{\"e1\":1}</think>Here: {\"e1\":" + pos + "} and {\"e2\":" + neg + "}", 2},
		{`{"e1":{"label":"positive","score":1e-400},"e2":{"label":"mixed","score":-0}}`, 2},
		{`{"e1":{"label":"positive","score":0.9,"label":"negative"}}`, 2},
		{`[{"e1":` + pos + `}]`, 2},
		{`{"e1":` + pos + `,`, 2},
		{`{"e1":` + strings.Repeat(`[`, 200) + strings.Repeat(`]`, 200) + `}`, 2},
		{"", 2},
	} {
		f.Add(seed.content, seed.events)
	}
	schema, err := Sentiment().compile(nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, content string, events uint8) {
		ids := make([]string, 2+int(events)%8)
		for k := range ids {
			ids[k] = "e" + strconv.Itoa(k+1)
		}
		ans, err := parseAnswer(content)
		if err != nil {
			if !errors.Is(err, ErrInvalidAnswer) {
				t.Fatalf("parseAnswer: error %v does not match ErrInvalidAnswer", err)
			}
			// The parser of the batch sees what a raw answer could hold too.
			ans = json.RawMessage(content)
		}
		parts, err := splitBatch(ans, ids, schema)
		var obj map[string]json.RawMessage
		isObject := json.Valid(ans) && json.Unmarshal(ans, &obj) == nil && obj != nil
		if err != nil {
			if !errors.Is(err, ErrInvalidAnswer) {
				t.Fatalf("splitBatch(%q): error %v does not match ErrInvalidAnswer", ans, err)
			}
			if parts != nil {
				t.Fatalf("splitBatch(%q) failed with %v but returned %d parts", ans, err, len(parts))
			}
			if isObject {
				t.Fatalf("splitBatch(%q) refused a JSON object: %v", ans, err)
			}
			return
		}
		if !isObject {
			t.Fatalf("splitBatch(%q) accepted what is not a JSON object", ans)
		}
		if len(parts) != len(ids) {
			t.Fatalf("splitBatch(%q) returned %d parts for %d ids", ans, len(parts), len(ids))
		}
		for k, p := range parts {
			id := ids[k]
			if (p.answer == nil) == (p.err == nil) {
				t.Fatalf("part %s of %q: answer %q and error %v; want exactly one", id, ans, p.answer, p.err)
			}
			if p.err != nil {
				if !errors.Is(p.err, ErrInvalidAnswer) || !strings.Contains(p.err.Error(), strconv.Quote(id)) {
					t.Fatalf("part %s of %q: error %q does not match ErrInvalidAnswer or does not name the id", id, ans, p.err)
				}
				continue
			}
			want, ok := obj[id]
			if !ok || !sameJSON(p.answer, want) {
				t.Fatalf("part %s of %q = %q, but the object holds %q", id, ans, p.answer, want)
			}
			if err := schema.Validate(p.answer); err != nil {
				t.Fatalf("part %s of %q = %q breaks the schema: %v", id, ans, p.answer, err)
			}
			if _, err := ResultHash(p.answer); err != nil {
				t.Fatalf("part %s of %q = %q fits the schema but cannot be hashed: %v", id, ans, p.answer, err)
			}
		}
	})
}

// sameJSON reports whether a and b are the same JSON text but for spacing.
func sameJSON(a, b []byte) bool {
	var ca, cb bytes.Buffer
	return json.Compact(&ca, a) == nil && json.Compact(&cb, b) == nil && bytes.Equal(ca.Bytes(), cb.Bytes())
}
