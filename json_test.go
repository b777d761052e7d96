package sluice_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice"
)

func TestExtractText(t *testing.T) {
	ev := []byte(`{"title":"Hi","review":{"body":"Great phone","stars":5,"tags":["x","  "]},"items":[{"text":"a"}]}`)
	got, err := sluice.ExtractText(ev, []string{"title", "review.body", "items.0.text"})
	require.NoError(t, err)
	assert.Equal(t, []sluice.TextField{{"title", "Hi"}, {"review.body", "Great phone"}, {"items.0.text", "a"}}, got)

	for _, tc := range []struct {
		value, path, want string
	}{
		{`{"a":`, "a", "event is not valid JSON"},
		{``, "a", "event is not valid JSON: it is empty"},
		{`[1]`, "a", "event is an array, not a JSON object"},
		{`"s"`, "a", "is a string, not a JSON object"},
		{`{"a":1}`, "b", `text field "b" is missing`},
		{`{"a":1}`, "a", `text field "a" is a number, not a string`},
		{`{"a":{"b":1}}`, "a.b.c", `text field "a.b.c" is missing`},
		{`{"a":"   "}`, "a", `text field "a" is empty`},
		{`{"a":null}`, "a", `text field "a" is null, not a string`},
	} {
		_, err := sluice.ExtractText([]byte(tc.value), []string{tc.path})
		require.Error(t, err, tc.value)
		assert.True(t, sluice.IsPermanent(err), "bad input is a permanent error")
		assert.Contains(t, err.Error(), tc.want)
	}
}

func TestMergeJSONKeepsEveryOtherByte(t *testing.T) {
	in := []byte("{ \"n\": 1.50e3,\n  \"s\" : \"x\" }")
	out, err := sluice.MergeJSON(in, "ai_enrichment", json.RawMessage(` {"label":"positive"} `))
	require.NoError(t, err)
	assert.Equal(t, "{ \"n\": 1.50e3,\n  \"s\" : \"x\" ,\"ai_enrichment\":{\"label\":\"positive\"}}", string(out))

	out, err = sluice.MergeJSON([]byte(`{}`), "k", json.RawMessage(`1`))
	require.NoError(t, err)
	assert.Equal(t, `{"k":1}`, string(out))

	out, err = sluice.MergeJSON([]byte(`{"k":0,"a":[1],"k":2}`), "k", json.RawMessage(`3`))
	require.NoError(t, err)
	assert.Equal(t, `{"k":3,"a":[1],"k":3}`, string(out), "every copy of a repeated key is replaced")

	_, err = sluice.MergeJSON([]byte(`{}`), "k", json.RawMessage(`{`))
	assert.True(t, sluice.IsPermanent(err))
	_, err = sluice.MergeJSON([]byte(`[]`), "k", json.RawMessage(`1`))
	assert.True(t, sluice.IsPermanent(err))
}

func TestJSONEnricher(t *testing.T) {
	model := func(_ context.Context, fields []sluice.TextField, _ *sluice.Message) (json.RawMessage, error) {
		return json.RawMessage(`{"chars":` + string(rune('0'+len(fields[0].Text))) + `}`), nil
	}
	e, err := sluice.NewJSONEnricher([]string{"text"}, model)
	require.NoError(t, err)
	out, err := e.Enrich(context.Background(), &sluice.Message{Value: []byte(`{"id":7,"text":"hello"}`)})
	require.NoError(t, err)
	assert.JSONEq(t, `{"id":7,"text":"hello","ai_enrichment":{"chars":5}}`, string(out.Value))

	_, err = sluice.NewJSONEnricher(nil, nil, sluice.WithEnrichmentKey(""))
	require.ErrorIs(t, err, sluice.ErrInvalidConfig)
	for _, want := range []string{"at least one text field", "enrichment key is empty", "model func is nil"} {
		assert.Contains(t, err.Error(), want)
	}
	_, err = sluice.NewJSONEnricher([]string{"a..b"}, model)
	assert.ErrorContains(t, err, `"a..b" is malformed`)
}
