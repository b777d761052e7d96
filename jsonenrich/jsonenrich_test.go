package jsonenrich_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/jsonenrich"
)

func TestExtract(t *testing.T) {
	ev := []byte(`{"title":"Hi","review":{"body":"Great phone","stars":5,"tags":["x","  "]},"items":[{"text":"a"}]}`)
	got, err := jsonenrich.Extract(ev, []string{"title", "review.body", "items.0.text"})
	require.NoError(t, err)
	assert.Equal(t, []jsonenrich.Field{{"title", "Hi"}, {"review.body", "Great phone"}, {"items.0.text", "a"}}, got)

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
		_, err := jsonenrich.Extract([]byte(tc.value), []string{tc.path})
		require.Error(t, err, tc.value)
		assert.True(t, errors.Is(err, sluice.ErrPermanent), "bad input is a permanent error")
		assert.Contains(t, err.Error(), tc.want)
	}
}

func TestMergeKeepsEveryOtherByte(t *testing.T) {
	in := []byte("{ \"n\": 1.50e3,\n  \"s\" : \"x\" }")
	out, err := jsonenrich.Merge(in, "ai_enrichment", json.RawMessage(` {"label":"positive"} `))
	require.NoError(t, err)
	assert.Equal(t, "{ \"n\": 1.50e3,\n  \"s\" : \"x\" ,\"ai_enrichment\":{\"label\":\"positive\"}}", string(out))

	out, err = jsonenrich.Merge([]byte(`{}`), "k", json.RawMessage(`1`))
	require.NoError(t, err)
	assert.Equal(t, `{"k":1}`, string(out))

	out, err = jsonenrich.Merge([]byte(`{"k":0,"a":[1],"k":2}`), "k", json.RawMessage(`3`))
	require.NoError(t, err)
	assert.Equal(t, `{"k":3,"a":[1],"k":3}`, string(out), "every copy of a repeated key is replaced")

	_, err = jsonenrich.Merge([]byte(`{}`), "k", json.RawMessage(`{`))
	assert.True(t, errors.Is(err, sluice.ErrPermanent))
	_, err = jsonenrich.Merge([]byte(`[]`), "k", json.RawMessage(`1`))
	assert.True(t, errors.Is(err, sluice.ErrPermanent))
}

func TestEnricher(t *testing.T) {
	model := func(_ context.Context, fields []jsonenrich.Field, _ *sluice.Message) (json.RawMessage, error) {
		return json.RawMessage(`{"chars":` + string(rune('0'+len(fields[0].Text))) + `}`), nil
	}
	e, err := jsonenrich.New([]string{"text"}, model)
	require.NoError(t, err)
	out, err := e.Enrich(context.Background(), &sluice.Message{Value: []byte(`{"id":7,"text":"hello"}`)})
	require.NoError(t, err)
	assert.JSONEq(t, `{"id":7,"text":"hello","ai_enrichment":{"chars":5}}`, string(out.Value))

	_, err = jsonenrich.New(nil, nil, jsonenrich.WithKey(""))
	require.ErrorIs(t, err, sluice.ErrInvalidConfig)
	for _, want := range []string{"at least one text field", "enrichment key is empty", "model func is nil"} {
		assert.Contains(t, err.Error(), want)
	}
	_, err = jsonenrich.New([]string{"a..b"}, model)
	assert.ErrorContains(t, err, `"a..b" is malformed`)
}
