package llmtest

import (
	"bytes"
	"encoding/json"
	"math"
	"strings"
	"unicode"
)

// Word lists behind the deterministic answers. Matching is on lower-cased
// words with punctuation trimmed.
var (
	positiveWords = wordSet("good great love loved lovely excellent happy amazing best wonderful fantastic like liked nice awesome perfect superb delighted glad enjoy enjoyed fast recommend thanks")
	negativeWords = wordSet("bad terrible hate hated awful worst poor sad horrible broken disappointing disappointed slow refund angry useless crash crashed bug buggy never annoying rude")
	spamWords     = wordSet("free winner win prize click casino viagra crypto bitcoin urgent lottery offer cash guaranteed unsubscribe $$$ limited deal")
	locations     = wordSet("paris london berlin tokyo madrid rome amsterdam france germany japan spain italy europe america york")
	organizations = wordSet("acme google microsoft openai apple amazon ibm netflix spotify sluice")
	months        = wordSet("january february march april may june july august september october november december monday tuesday wednesday thursday friday saturday sunday")
)

func wordSet(s string) map[string]bool {
	m := map[string]bool{}
	for _, w := range strings.Fields(s) {
		m[w] = true
	}
	return m
}

func words(text string) []string {
	return strings.FieldsFunc(text, func(r rune) bool {
		return unicode.IsSpace(r) || (unicode.IsPunct(r) && r != '$' && r != '\'' && r != '-')
	})
}

// Sentiment returns the fake's sentiment answer for text: the label and the
// polarity score in [-1, 1] from counts of positive and negative words.
func Sentiment(text string) (label string, score float64) {
	pos, neg := 0, 0
	for _, w := range words(text) {
		w = strings.ToLower(w)
		switch {
		case positiveWords[w]:
			pos++
		case negativeWords[w]:
			neg++
		}
	}
	switch {
	case pos == 0 && neg == 0:
		return "neutral", 0
	case pos > neg:
		label = "positive"
	case neg > pos:
		label = "negative"
	default:
		label = "mixed"
	}
	return label, math.Round(float64(pos-neg)/float64(pos+neg)*100) / 100
}

// Spam returns the fake's spam answer for text: spam when it has two or
// more spam words, or one and a link.
func Spam(text string) (isSpam bool, confidence float64) {
	n := 0
	for _, w := range words(text) {
		if spamWords[strings.ToLower(w)] {
			n++
		}
	}
	link := strings.Contains(text, "http://") || strings.Contains(text, "https://")
	if n >= 2 || (n == 1 && link) {
		return true, math.Min(0.99, 0.6+0.1*float64(n))
	}
	return false, math.Max(0.5, 0.95-0.2*float64(n))
}

// Entity is one named entity found by the fake.
type Entity struct {
	Text string `json:"text"`
	Type string `json:"type"`
}

// Entities returns the fake's entity answer for text: runs of capitalised
// words, typed from small dictionaries of locations, organizations and
// dates ("other" otherwise). A capitalised word that starts a sentence
// counts only when it is in a dictionary.
func Entities(text string) []Entity {
	out := []Entity{}
	seen := map[string]bool{}
	var run []string
	typ := "other"
	flush := func() {
		if len(run) > 0 {
			t := strings.Join(run, " ")
			if !seen[t] {
				seen[t] = true
				out = append(out, Entity{Text: t, Type: typ})
			}
		}
		run, typ = nil, "other"
	}
	sentenceStart := true
	for _, f := range strings.Fields(text) {
		w := strings.TrimFunc(f, func(r rune) bool { return unicode.IsPunct(r) && r != '-' && r != '\'' })
		r := []rune(w)
		capital := len(r) > 0 && unicode.IsUpper(r[0])
		lw := strings.ToLower(w)
		known := locations[lw] || organizations[lw] || months[lw]
		if capital && (!sentenceStart || known || len(run) > 0) {
			run = append(run, w)
			switch {
			case locations[lw]:
				typ = "location"
			case organizations[lw]:
				typ = "organization"
			case months[lw]:
				typ = "date"
			}
		} else {
			flush()
		}
		end := strings.ContainsAny(f[len(f)-1:], ".!?")
		if end || (len(w) < len(f) && strings.ContainsAny(f, ",;:")) {
			flush()
		}
		sentenceStart = end
	}
	flush()
	return out
}

// Translate returns the fake's translation of text: the text prefixed with
// the target language in brackets.
func Translate(text, lang string) string { return "[" + lang + "] " + text }

// input is one event's input: the text fields in order, or a rendered
// prompt.
type input struct {
	keys  []string
	texts []string
}

func (in input) text() string { return strings.Join(in.texts, "\n") }

// parseInput reads an event's input: a JSON object of text fields, a JSON
// string, or raw text.
func parseInput(raw json.RawMessage) input {
	raw = bytes.TrimSpace(raw)
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return input{keys: []string{"text"}, texts: []string{s}}
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	var in input
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return input{keys: []string{"text"}, texts: []string{string(raw)}}
	}
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			break
		}
		var v any
		if dec.Decode(&v) != nil {
			break
		}
		key, _ := k.(string)
		in.keys = append(in.keys, key)
		in.texts = append(in.texts, strings.Join(collectStrings(v, nil), "\n"))
	}
	return in
}

func collectStrings(v any, acc []string) []string {
	switch x := v.(type) {
	case string:
		acc = append(acc, x)
	case []any:
		for _, e := range x {
			acc = collectStrings(e, acc)
		}
	case map[string]any:
		for _, e := range x {
			acc = collectStrings(e, acc)
		}
	}
	return acc
}

// answerFor builds the answer for one event, shaped by schema when there
// is one.
func answerFor(task string, raw json.RawMessage, lang string, schema json.RawMessage) any {
	in := parseInput(raw)
	text := in.text()
	var a any
	switch task {
	case "sentiment":
		label, score := Sentiment(text)
		a = map[string]any{"label": label, "score": score}
	case "entities":
		a = map[string]any{"entities": Entities(text)}
	case "translate":
		tr := map[string]any{}
		for i, k := range in.keys {
			tr[k] = Translate(in.texts[i], lang)
		}
		a = map[string]any{"source_language": "English", "target_language": lang, "translation": Translate(text, lang), "translations": tr}
	case "spam":
		s, c := Spam(text)
		a = map[string]any{"is_spam": s, "confidence": c}
	}
	var sch map[string]any
	if len(schema) > 0 && json.Unmarshal(schema, &sch) == nil {
		// Round-trip the hint through JSON so that conform sees plain maps.
		b, _ := json.Marshal(a)
		var hint any
		_ = json.Unmarshal(b, &hint)
		return conform(sch, hint)
	}
	if a == nil {
		return map[string]any{}
	}
	return a
}

// conform returns a value valid for schema, taking hint's parts where they
// fit: what a model does when it follows a schema.
func conform(schema map[string]any, hint any) any {
	if enum, ok := schema["enum"].([]any); ok && len(enum) > 0 {
		for _, e := range enum {
			if jsonEqual(e, hint) {
				return e
			}
		}
		return enum[0]
	}
	typ := schemaType(schema)
	switch typ {
	case "object":
		props, _ := schema["properties"].(map[string]any)
		hm, _ := hint.(map[string]any)
		if props == nil && hm != nil {
			return hm // no properties listed: any object goes
		}
		out := map[string]any{}
		for k, ps := range props {
			sub, _ := ps.(map[string]any)
			out[k] = conform(sub, hm[k])
		}
		return out
	case "array":
		items, _ := schema["items"].(map[string]any)
		ha, _ := hint.([]any)
		out := []any{}
		for _, e := range ha {
			out = append(out, conform(items, e))
		}
		return out
	case "string":
		if s, ok := hint.(string); ok {
			return s
		}
		return ""
	case "boolean":
		b, _ := hint.(bool)
		return b
	case "number", "integer":
		f, ok := hint.(float64)
		if !ok {
			f = 0
		}
		if lo, ok := schema["minimum"].(float64); ok && f < lo {
			f = lo
		}
		if hi, ok := schema["maximum"].(float64); ok && f > hi {
			f = hi
		}
		if typ == "integer" {
			f = math.Round(f)
		}
		return f
	case "null":
		return nil
	}
	return hint
}

func schemaType(schema map[string]any) string {
	switch t := schema["type"].(type) {
	case string:
		return t
	case []any:
		for _, e := range t {
			if s, ok := e.(string); ok && s != "null" {
				return s
			}
		}
	}
	if _, ok := schema["properties"]; ok {
		return "object"
	}
	return ""
}

func jsonEqual(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return bytes.Equal(x, y)
}
