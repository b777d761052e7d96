package jsonenrich_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/jsonenrich"
)

// An enricher that asks a model (here a word counter) about the text at
// "review.body" and stores the answer under "ai_enrichment".
func Example() {
	model := func(_ context.Context, fields []jsonenrich.Field, _ *sluice.Message) (json.RawMessage, error) {
		return json.Marshal(map[string]int{"words": len(strings.Fields(fields[0].Text))})
	}
	enr, err := jsonenrich.New([]string{"review.body"}, model)
	if err != nil {
		panic(err)
	}
	out, err := enr.Enrich(context.Background(), &sluice.Message{Value: []byte(`{"id":7, "review":{"body":"Great phone, long battery"}}`)})
	if err != nil {
		panic(err)
	}
	fmt.Println(string(out.Value))
	// Output:
	// {"id":7, "review":{"body":"Great phone, long battery"},"ai_enrichment":{"words":4}}
}

// Extract and Merge are the two halves of an enricher, for one that calls
// its model some other way.
func ExampleMerge() {
	event := []byte(`{"ticket":"My invoice is wrong"}`)
	fields, err := jsonenrich.Extract(event, []string{"ticket"})
	if err != nil {
		panic(err)
	}
	tags := []string{"billing"}
	if strings.Contains(fields[0].Text, "wrong") {
		tags = append(tags, "bug")
	}
	answer, _ := json.Marshal(tags)
	out, err := jsonenrich.Merge(event, "tags", answer)
	if err != nil {
		panic(err)
	}
	fmt.Println(string(out))
	// Output:
	// {"ticket":"My invoice is wrong","tags":["billing","bug"]}
}
