package openai

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
)

// FuzzParseAnswer feeds arbitrary model output to the answer parser and the
// schema validator. Whatever comes in, the parser must not panic, must
// return either ErrInvalidAnswer or one compact JSON object, and must
// return a bare JSON object unchanged but for spacing.
func FuzzParseAnswer(f *testing.F) {
	for _, seed := range []string{
		`{"label":"positive","score":0.9}`,
		"```json\n{\"is_spam\":true,\"confidence\":1}\n```",
		"Sure:\n{\"entities\":[{\"text\":\"Paris\",\"type\":\"location\"}]}\nDone.",
		"<think>hmm {</think>{\"a\":1}",
		`{"label":"positive","score"`,
		`[{"a":1}]`,
		"{{{{{{{{",
		"",
	} {
		f.Add(seed)
	}
	schema, err := Sentiment().compile(nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, content string) {
		got, err := parseAnswer(content)
		if err != nil {
			if !errors.Is(err, ErrInvalidAnswer) {
				t.Fatalf("error %v does not match ErrInvalidAnswer", err)
			}
			return
		}
		if !json.Valid(got) || len(got) == 0 || got[0] != '{' {
			t.Fatalf("parseAnswer(%q) = %q: not a JSON object", content, got)
		}
		var buf bytes.Buffer
		if err := json.Compact(&buf, got); err != nil || !bytes.Equal(buf.Bytes(), got) {
			t.Fatalf("parseAnswer(%q) = %q: not compact", content, got)
		}
		trimmed := bytes.TrimSpace([]byte(content))
		if len(trimmed) > 0 && trimmed[0] == '{' && json.Valid(trimmed) {
			buf.Reset()
			_ = json.Compact(&buf, trimmed)
			if !bytes.Equal(buf.Bytes(), got) {
				t.Fatalf("a bare object changed: %q -> %q", content, got)
			}
		}
		// Validation and hashing of any object must not panic either.
		_ = schema.Validate(got)
		if _, err := ResultHash(got); err != nil {
			t.Fatalf("ResultHash(%q): %v", got, err)
		}
	})
}
