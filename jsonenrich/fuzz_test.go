package jsonenrich_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/internal/jsonkeys"
	"github.com/sluicehq/sluice/jsonenrich"
)

// hasDuplicates reports whether a key other than except repeats.
func hasDuplicates(keys []string, except string) bool {
	seen := map[string]bool{}
	for _, k := range keys {
		if seen[k] && k != except {
			return true
		}
		seen[k] = true
	}
	return false
}

// FuzzExtractMerge checks Extract and Merge on arbitrary events,
// paths and answers: they never panic, every error is permanent, extracted
// texts are non-empty strings, and a merge yields valid JSON holding the
// answer under the key, every other member unchanged byte for byte, and is
// idempotent.
func FuzzExtractMerge(f *testing.F) {
	f.Add([]byte(`{"review":{"body":"Great phone","stars":5}}`), "review.body", []byte(`{"label":"positive"}`))
	f.Add([]byte(`{ "items" : [ {"text":"a"}, {"text":"b"} ] , "n": 1.50e3 }`), "items.1.text", []byte(`[1, 2]`))
	f.Add([]byte(`{}`), "x", []byte(`null`))
	f.Add([]byte(` {"ai_enrichment":{"old":true},"t":"x"} `), "t", []byte(`"new"`))
	f.Add([]byte(`{"t":""}`), "t", []byte(`{}`))
	f.Add([]byte(`[1,2]`), "0", []byte(`1`))
	f.Add([]byte(`{"a":"\u00e9\ud83d\ude00"}`), "a", []byte(`{"x":"</script>"}`))
	f.Fuzz(func(t *testing.T, value []byte, path string, answer []byte) {
		fields, err := jsonenrich.Extract(value, []string{path})
		if err != nil {
			if !errors.Is(err, sluice.ErrPermanent) {
				t.Fatalf("Extract error is not permanent: %v", err)
			}
		} else {
			if len(fields) != 1 || fields[0].Path != path || strings.TrimSpace(fields[0].Text) == "" {
				t.Fatalf("Extract(%q, %q) = %+v", value, path, fields)
			}
		}

		const key = jsonenrich.DefaultKey
		out, err := jsonenrich.Merge(value, key, answer)
		if err != nil {
			if !errors.Is(err, sluice.ErrPermanent) {
				t.Fatalf("Merge error is not permanent: %v", err)
			}
			return
		}
		if !json.Valid(out) {
			t.Fatalf("Merge(%q, %q) = %q: not valid JSON", value, answer, out)
		}
		before := jsonkeys.Of(value)
		if hasDuplicates(before, key) {
			// A member other than the key repeated at the top level: which
			// copy wins is up to the decoder, so the checks below do not
			// apply. (A repeated key is replaced in every copy.)
			return
		}
		var in, got map[string]json.RawMessage
		if err := json.Unmarshal(value, &in); err != nil {
			t.Fatalf("Merge accepted a value that is not an object: %q", value)
		}
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("Merge output is not an object: %q", out)
		}
		var want bytes.Buffer
		_ = json.Compact(&want, answer)
		var have bytes.Buffer
		_ = json.Compact(&have, got[key])
		if !bytes.Equal(want.Bytes(), have.Bytes()) {
			t.Fatalf("answer under %q is %q, want %q", key, got[key], answer)
		}
		for k, v := range in {
			if k != key && !bytes.Equal(got[k], v) {
				t.Fatalf("member %q changed: %q -> %q", k, v, got[k])
			}
		}
		if len(got) != len(in)+btoi(in[key] == nil) {
			t.Fatalf("members: %d before, %d after", len(in), len(got))
		}
		again, err := jsonenrich.Merge(out, key, answer)
		if err != nil || !bytes.Equal(again, out) {
			t.Fatalf("merging twice changed the event: %q -> %q (%v)", out, again, err)
		}
	})
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
