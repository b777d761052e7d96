package openai_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/llmtest"
	"github.com/sluicehq/sluice/openai"
	"github.com/sluicehq/sluice/sluicetest"
)

// An Enricher classifies the sentiment of one event, against the fake
// server. Against OpenAI, drop WithBaseURL and add
// openai.WithAPIKeyEnv("OPENAI_API_KEY").
func ExampleNew() {
	srv := llmtest.NewServer()
	defer srv.Close()

	enr, err := openai.New("llmtest", openai.Sentiment(), []string{"review.body"},
		openai.WithBaseURL(srv.BaseURL()),
		openai.WithTemperature(0),
	)
	if err != nil {
		panic(err)
	}
	in := &sluice.Message{Value: []byte(`{"id":7,"review":{"body":"I love it, great battery"}}`)}
	out, err := enr.Enrich(context.Background(), in)
	if err != nil {
		panic(err)
	}
	fmt.Println(string(out.Value))
	// Output:
	// {"id":7,"review":{"body":"I love it, great battery"},"ai_enrichment":{"task":"sentiment","model":"llmtest","result":{"label":"positive","score":1},"hash":"sha256:0d2aac4fd176ff3d1fc617e9b7a37af2ef42dbb715740e102b2635ea28b51d82"}}
}

// A custom task: a text/template prompt and a schema of your own.
func ExampleCustomTask() {
	srv := llmtest.NewServer()
	defer srv.Close()

	task, err := openai.CustomTask("urgency",
		`Rate how urgently support must answer this ticket, from 1 to 5: {{.Field "ticket.text"}}`,
		json.RawMessage(`{"type":"object","properties":{"urgency":{"type":"integer","minimum":1,"maximum":5}},"required":["urgency"],"additionalProperties":false}`))
	if err != nil {
		panic(err)
	}
	enr, err := openai.New("llmtest", task, []string{"ticket.text"}, openai.WithBaseURL(srv.BaseURL()))
	if err != nil {
		panic(err)
	}
	out, err := enr.Enrich(context.Background(), &sluice.Message{Value: []byte(`{"ticket":{"text":"The site is down"}}`)})
	if err != nil {
		panic(err)
	}
	var ev struct {
		AI openai.Enrichment `json:"ai_enrichment"`
	}
	if err := json.Unmarshal(out.Value, &ev); err != nil {
		panic(err)
	}
	fmt.Println(ev.AI.Task, string(ev.AI.Result))
	// Output:
	// urgency {"urgency":1}
}

// A pipeline that classifies spam in batches of 8 events per model call.
func ExampleEnricher_EnrichBatch() {
	srv := llmtest.NewServer()
	defer srv.Close()

	enr, err := openai.New("llmtest", openai.Spam(), []string{"text"}, openai.WithBaseURL(srv.BaseURL()))
	if err != nil {
		panic(err)
	}
	src := sluicetest.NewSource("comments", 1)
	for i := range 16 {
		text := "Thanks for the helpful answer"
		if i%4 == 0 {
			text = "WINNER! Claim your free prize at https://example.com"
		}
		v, _ := json.Marshal(map[string]string{"text": text})
		src.Publish(nil, v)
	}
	sink := sluicetest.NewSink()
	p, err := sluice.New(src, enr, sink,
		sluice.WithConcurrency(2), sluice.WithEnrichBatch(8),
		sluice.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	if err := sink.WaitFor(ctx, 16); err != nil { // every event written
		panic(err)
	}
	cancel()
	if err := <-done; err != nil {
		panic(err)
	}
	spam := 0
	for _, m := range sink.Messages() {
		var ev struct {
			AI struct {
				Result struct {
					IsSpam bool `json:"is_spam"`
				} `json:"result"`
			} `json:"ai_enrichment"`
		}
		_ = json.Unmarshal(m.Value, &ev)
		if ev.AI.Result.IsSpam {
			spam++
		}
	}
	// Workers batch what is queued when they are free, so how many calls
	// the 16 events took depends on timing (srv.Stats().Completions): at
	// most 16, usually 2.
	fmt.Println("enriched:", p.Stats().Enriched, "spam:", spam)
	// Output:
	// enriched: 16 spam: 4
}

// Check the model endpoint before consuming anything: here the model name
// is wrong, which every event would pay for.
func ExampleEnricher_Check() {
	srv := llmtest.NewServer(llmtest.WithModels("gpt-4o-mini"))
	defer srv.Close()

	enr, err := openai.New("gpt-4o-mimi", openai.Sentiment(), []string{"text"},
		openai.WithBaseURL(srv.BaseURL()),
		openai.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))),
	)
	if err != nil {
		panic(err)
	}
	err = enr.Check(context.Background())
	fmt.Println("misconfigured:", errors.Is(err, sluice.ErrMisconfigured))
	fmt.Println("fatal:", errors.Is(err, sluice.ErrFatal))
	var mis *sluice.MisconfiguredError
	if errors.As(err, &mis) {
		fmt.Println("class:", mis.Class)
	}
	// Output:
	// misconfigured: true
	// fatal: false
	// class: HTTP 404 model_not_found
}
