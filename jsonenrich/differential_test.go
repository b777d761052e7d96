package jsonenrich_test

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/jsonenrich"
)

// same runs Extract and Merge and their reference (the slow path, see export_test.go) on
// one input and fails unless they agree: the same fields or the same error
// message, the same output bytes or the same error message.
func same(t *testing.T, value []byte, paths []string, key string, answer []byte) {
	t.Helper()
	got, gerr := jsonenrich.Extract(value, paths)
	want, werr := jsonenrich.ReferenceExtract(value, paths)
	if fmt.Sprint(gerr) != fmt.Sprint(werr) || !equalFields(got, want) {
		t.Fatalf("Extract(%q, %q):\n got %q, %v\nwant %q, %v", value, paths, got, gerr, want, werr)
	}
	out, gerr := jsonenrich.Merge(value, key, answer)
	ref, werr := jsonenrich.ReferenceMerge(value, key, answer)
	if fmt.Sprint(gerr) != fmt.Sprint(werr) || !bytes.Equal(out, ref) || (out == nil) != (ref == nil) {
		t.Fatalf("Merge(%q, %q, %q):\n got %q, %v\nwant %q, %v", value, key, answer, out, gerr, ref, werr)
	}
}

func equalFields(a, b []jsonenrich.Field) bool {
	if len(a) != len(b) || (a == nil) != (b == nil) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// corpus reads the seed files of FuzzExtractMerge.
func corpus(t *testing.T) [][3][]byte {
	files, err := filepath.Glob("testdata/fuzz/FuzzExtractMerge/*")
	if err != nil || len(files) == 0 {
		t.Fatalf("no corpus: %v", err)
	}
	var out [][3][]byte
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")[1:]
		var c [3][]byte
		for i, l := range lines[:3] {
			l = l[strings.IndexByte(l, '(')+1 : len(l)-1]
			s, err := strconv.Unquote(l)
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			c[i] = []byte(s)
		}
		out = append(out, c)
	}
	return out
}

var diffEvents = []string{
	``, ` `, `{`, `}`, `{}`, ` { } `, `[]`, `null`, `"s"`, `1`, `true`, `{"a":1}x`, `{"a":1}{}`,
	`{"a":"x"}`, `{"a" : "x" , "b":2}`, `{"a":"x",}`, `{,}`, `{"a"}`, `{"a":}`, `{"a":01}`, `{"a":1.}`,
	`{"a":-}`, `{"a":-0.0e+0}`, `{"a":1E9}`, `{"a":.5}`, `{"a":tru}`, `{"a":nul}`, `{"a":[1,2,]}`,
	`{"a":"\u00e9\ud83d\ude00"}`, `{"a":"\ud83d"}`, `{"a":"\ude00x"}`, `{"a":"\ud83d\u0041"}`, `{"a":"\uD83D\uDE00"}`,
	`{"a":"\x"}`, `{"a":"\u12"}`, `{"a":"\u12g4"}`, "{\"a\":\"\x01\"}", "{\"a\":\"\xff\xfe\"}", "{\"a\":\"ok\xc3\"}",
	"{\"\xff\":\"x\"}", `{"a":"\"quoted\" \\ \/ \b\f\n\r\t"}`, `{"a":"   "}`, `{"a":"\t\n"}`, `{"a":"\u0020"}`,
	`{"a":null}`, `{"a":1}`, `{"a":true}`, `{"a":{}}`, `{"a":[]}`, `{"a":"x","a":"y"}`, `{"a":"x","a":1}`,
	`{"a":{"b":"x"},"a":{"c":"y"}}`, `{"a":{"b":"x"},"a":{"b":"y"}}`, `{"a":{"b":"x"},"a":5}`,
	`{"\u0061":"esc"}`, `{"a\u002eb":"dot"}`, `{"a.b":"dotkey"}`, `{"a":{"b":{"c":"deep"}}}`,
	`{"a":[{"b":"x"},{"b":"y"}]}`, `{"a":["x","y","z"]}`, `{"a":{"0":"zero","1":"one"}}`, `{"a":[[["n"]]]}`,
	`{"ai_enrichment":1}`, `{"ai_enrichment":1,"ai_enrichment":2}`, `{"x":1,"ai_enrichment":{"a":[1,{"b":2}]},"y":"}"}`,
	`{"ai_\u0065nrichment":0}`, " \t\r\n{\"a\" \t:\r\n\"x\" }\n", `{"a":"x"}` + "\v", `{"a":"x"}` + "\u00a0",
	`{"a":"x", "b":"}"}`, `{"b":"{","a":"x"}`, `{"a":"x\\"}`, `{"a":"x\\\"y"}`, `{"a":"é ü ✓ 😀"}`,
	strings.Repeat(`[`, 10001) + strings.Repeat(`]`, 10001), `{"a":` + strings.Repeat(`[`, 9999) + strings.Repeat(`]`, 9999) + `,"b":"x"}`,
	`{"a":` + strings.Repeat(`[`, 10000) + strings.Repeat(`]`, 10000) + `,"b":"x"}`,
}

var diffPaths = [][]string{
	{"a"}, {"b"}, {"a.b"}, {"a.b.c"}, {"a.0"}, {"a.1"}, {"a.2"}, {"a.0.b"}, {"a.1.b"}, {"a.+1"}, {"a.-0"}, {"a.01"},
	{"a.-1"}, {"a.x"}, {"a.0.0.0"}, {"\ufffd"}, {"a.b", "a"}, {"a", "a"}, {"a", "b"}, {"ai_enrichment"},
	{""}, {".a"}, {"a."}, {"a..b"}, {"a.99999999999999999999"}, {"a.b.c.d.e.f.g"},
	{"a", "a", "a", "a", "a", "a", "a", "a", "a"},
}

var diffAnswers = []string{`{"label":"positive"}`, ` 1 `, `null`, `"x"`, `[1, 2]`, `{`, ``, ` `, `01`, "\t{}\n", `{"a":"\ud800"}`}

var diffKeys = []string{jsonenrich.DefaultKey, "a", "b", "k", "<&>", "\xff", "ai_enrichment\u2028", `q"uote`}

// TestDifferential compares Extract and Merge with the reference on the
// fuzz corpus, on hand-picked edge cases and on random mutations of them.
func TestDifferential(t *testing.T) {
	for _, c := range corpus(t) {
		same(t, c[0], []string{string(c[1])}, jsonenrich.DefaultKey, c[2])
		same(t, c[0], []string{string(c[1]), string(c[1])}, "a", c[2])
	}
	for _, ev := range diffEvents {
		for _, p := range diffPaths {
			same(t, []byte(ev), p, jsonenrich.DefaultKey, []byte(`{"label":"positive"}`))
		}
		for _, a := range diffAnswers {
			for _, k := range diffKeys {
				same(t, []byte(ev), []string{"a"}, k, []byte(a))
			}
		}
	}
	same(t, benchEvent, benchPaths, jsonenrich.DefaultKey, benchAnswer)

	// Random mutations: byte flips, insertions and deletions of JSON
	// punctuation in the events above.
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []byte("{}[],:\"\\ u0123456789abcdefABCDEF.-+eEtrunlsx\x00\x1f\x7f\xc3\xa9\xff")
	seeds := append(append([]string{string(benchEvent)}, diffEvents[:len(diffEvents)-3]...), func() []string {
		var s []string
		for _, c := range corpus(t) {
			s = append(s, string(c[0]))
		}
		return s
	}()...)
	n := 20000
	if testing.Short() {
		n = 2000
	}
	for range n {
		ev := []byte(seeds[rng.IntN(len(seeds))])
		for range 1 + rng.IntN(3) {
			if len(ev) == 0 {
				ev = append(ev, alphabet[rng.IntN(len(alphabet))])
				continue
			}
			i := rng.IntN(len(ev))
			switch rng.IntN(3) {
			case 0:
				ev[i] = alphabet[rng.IntN(len(alphabet))]
			case 1:
				ev = append(ev[:i], append([]byte{alphabet[rng.IntN(len(alphabet))]}, ev[i:]...)...)
			default:
				ev = append(ev[:i], ev[i+1:]...)
			}
		}
		paths := diffPaths[rng.IntN(len(diffPaths))]
		if rng.IntN(2) == 0 {
			paths = benchPaths
		}
		same(t, ev, paths, diffKeys[rng.IntN(len(diffKeys))], []byte(diffAnswers[rng.IntN(len(diffAnswers))]))
	}
}

// FuzzDifferential compares Extract and Merge with the reference on
// arbitrary inputs.
func FuzzDifferential(f *testing.F) {
	f.Add(benchEvent, "review.body", "review.title", []byte(benchAnswer), jsonenrich.DefaultKey)
	for _, ev := range diffEvents[:len(diffEvents)-3] {
		f.Add([]byte(ev), "a", "a.b", []byte(`{"x":1}`), "a")
	}
	f.Fuzz(func(t *testing.T, value []byte, p1, p2 string, answer []byte, key string) {
		same(t, value, []string{p1}, key, answer)
		same(t, value, []string{p1, p2}, jsonenrich.DefaultKey, answer)
	})
}
