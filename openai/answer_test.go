package openai

import (
	"errors"
	"strings"
	"testing"
)

func TestSplitBatch(t *testing.T) {
	schema, err := Sentiment().compile(nil)
	if err != nil {
		t.Fatal(err)
	}
	ids := []string{"e1", "e2", "e3", "e4"}
	parts, err := splitBatch([]byte(`{"e2":{"label":"neutral","score":0},"e9":{},"e1":{"label":"good","score":1},"e4":{"label":"mixed","score":0},"e4":{"label":"mixed","score":0.1}}`), ids, schema)
	if err != nil {
		t.Fatal(err)
	}
	want := []struct{ answer, err string }{
		{"", `the answer for "e1": $.label: "good" is not one of`},
		{`{"label":"neutral","score":0}`, ""},
		{"", `the batch answer has no "e3"`},
		{"", `the batch answer has "e4" more than once`},
	}
	for k, w := range want {
		p := parts[k]
		if string(p.answer) != w.answer || (w.err == "") != (p.err == nil) ||
			(p.err != nil && (!errors.Is(p.err, ErrInvalidAnswer) || !strings.Contains(p.err.Error(), w.err))) {
			t.Errorf("%s: answer %s, err %v; want %s, %q", ids[k], p.answer, p.err, w.answer, w.err)
		}
	}
	for _, bad := range []string{`[]`, `{"e1":`, `{"e1":{}} {}`, `"e1"`, ``} {
		if parts, err := splitBatch([]byte(bad), ids, schema); !errors.Is(err, ErrInvalidAnswer) || parts != nil {
			t.Errorf("splitBatch(%q) = %v, %v; want ErrInvalidAnswer", bad, parts, err)
		}
	}
}
