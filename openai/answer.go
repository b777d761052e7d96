package openai

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// Enrichment is what the Enricher stores under the enrichment key of each
// event: {"task":"sentiment","model":"...","result":{...},"hash":"sha256:..."}.
// Hash is [ResultHash] of Result, so a consumer can spot an event enriched
// twice after a redelivery.
type Enrichment struct {
	Task   string          `json:"task"`
	Model  string          `json:"model"`
	Result json.RawMessage `json:"result"`
	Hash   string          `json:"hash"`
}

// ResultHash returns "sha256:" and the hex SHA-256 of the canonical form
// (see [Canonical]) of result.
func ResultHash(result json.RawMessage) (string, error) {
	c, err := Canonical(result)
	if err != nil {
		return "", err
	}
	return hashCanonical(c), nil
}

func hashCanonical(c []byte) string {
	sum := sha256.Sum256(c)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// invalid wraps a problem with a model answer.
func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalidAnswer}, args...)...)
}

// readAnswer takes the answer object out of a completion.
func readAnswer(r *chatResponse) (json.RawMessage, error) {
	if len(r.Choices) == 0 {
		return nil, invalid("the completion has no choices")
	}
	c := r.Choices[0]
	if c.Message.Refusal != nil && strings.TrimSpace(*c.Message.Refusal) != "" {
		return nil, invalid("the model refused: %q", truncate(*c.Message.Refusal, 200))
	}
	content := ""
	if c.Message.Content != nil {
		content = *c.Message.Content
	}
	switch c.FinishReason {
	case "length":
		return nil, invalid("the answer was cut off at the token limit (finish_reason \"length\"): %q", truncate(content, 120))
	case "content_filter":
		return nil, invalid("the answer was withheld by the content filter (finish_reason \"content_filter\")")
	}
	return parseAnswer(content)
}

// maxScans bounds how many '{' parseAnswer tries, so that prose full of
// braces costs little.
const maxScans = 16

// parseAnswer finds the JSON object in a model's answer. It takes a bare
// object, an object in a Markdown code fence, or the first object in
// surrounding prose, and skips a leading <think>…</think> block that
// reasoning models emit. The result is compact JSON.
func parseAnswer(content string) (json.RawMessage, error) {
	s := strings.TrimSpace(content)
	if rest, ok := strings.CutPrefix(s, "<think>"); ok {
		if _, after, found := strings.Cut(rest, "</think>"); found {
			s = strings.TrimSpace(after)
		}
	}
	if s == "" {
		return nil, invalid("the answer is empty")
	}
	if obj, ok := asObject(s); ok {
		return obj, nil
	}
	if _, rest, ok := strings.Cut(s, "```"); ok {
		if !strings.HasPrefix(strings.TrimSpace(rest), "{") {
			if _, after, ok := strings.Cut(rest, "\n"); ok {
				rest = after
			}
		}
		if body, _, ok := strings.Cut(rest, "```"); ok {
			rest = body
		}
		if obj, ok := asObject(strings.TrimSpace(rest)); ok {
			return obj, nil
		}
	}
	off := 0
	for range maxScans {
		i := strings.IndexByte(s[off:], '{')
		if i < 0 {
			break
		}
		dec := json.NewDecoder(strings.NewReader(s[off+i:]))
		var raw json.RawMessage
		if dec.Decode(&raw) == nil && len(raw) > 0 && raw[0] == '{' {
			return compact(raw), nil
		}
		off += i + 1
	}
	return nil, invalid("the answer is not a JSON object: %q", truncate(s, 200))
}

func asObject(s string) (json.RawMessage, bool) {
	if !strings.HasPrefix(s, "{") || !json.Valid([]byte(s)) {
		return nil, false
	}
	return compact([]byte(s)), true
}

// batchPart is one event's share of a batch answer: its answer, or why the
// event must be asked for again on its own (an error matching
// [ErrInvalidAnswer]). Exactly one of the two is set.
type batchPart struct {
	answer json.RawMessage
	err    error
}

// splitBatch splits the answer of a batch call, an object keyed by the ids
// of the call, into one part per id, in the order of ids. An id that is
// missing, answered more than once, or whose answer breaks schema gets an
// error of its own; keys that are not ids are ignored. It fails as a whole,
// with an error matching [ErrInvalidAnswer], only when ans is not a JSON
// object.
func splitBatch(ans json.RawMessage, ids []string, schema *Schema) ([]batchPart, error) {
	want := make(map[string]int, len(ids))
	for k, id := range ids {
		want[id] = k
	}
	found := make([]json.RawMessage, len(ids))
	twice := make([]bool, len(ids))
	dec := json.NewDecoder(bytes.NewReader(ans))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil, invalid("the batch answer is not a JSON object: %q", truncate(string(ans), 200))
	}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, invalid("the batch answer is not a JSON object: %v", err)
		}
		key, _ := t.(string) // an object's keys are strings
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, invalid("the batch answer is not a JSON object: %v", err)
		}
		if k, ok := want[key]; ok {
			twice[k] = twice[k] || found[k] != nil
			found[k] = v
		}
	}
	if t, err := dec.Token(); err != nil || t != json.Delim('}') {
		return nil, invalid("the batch answer is not a JSON object")
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, invalid("the batch answer has more after its object")
	}
	parts := make([]batchPart, len(ids))
	for k, id := range ids {
		switch {
		case found[k] == nil:
			parts[k].err = invalid("the batch answer has no %q", id)
		case twice[k]:
			parts[k].err = invalid("the batch answer has %q more than once", id)
		default:
			if err := schema.Validate(found[k]); err != nil {
				parts[k].err = invalid("the answer for %q: %w", id, err)
			} else {
				parts[k].answer = found[k]
			}
		}
	}
	return parts, nil
}
