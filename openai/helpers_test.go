package openai

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/internal/testutil"
	"github.com/sluicehq/sluice/llmtest"
)

// newTest starts a fake server and an Enricher for task on field "text".
func newTest(t *testing.T, task Task, srvOpts []llmtest.Option, opts ...Option) (*Enricher, *llmtest.Server) {
	t.Helper()
	srv := llmtest.NewServer(srvOpts...)
	t.Cleanup(srv.Close)
	opts = append([]Option{WithBaseURL(srv.BaseURL()), WithLogger(testutil.Quiet())}, opts...)
	e, err := New("llmtest", task, []string{"text"}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() })
	return e, srv
}

func event(text string) *sluice.Message {
	v, _ := json.Marshal(map[string]string{"text": text})
	return &sluice.Message{Value: v}
}

// stored decodes the enrichment of an enriched event.
func stored(t *testing.T, m *sluice.Message) Enrichment {
	t.Helper()
	var ev struct {
		AI Enrichment `json:"ai_enrichment"`
	}
	if err := json.Unmarshal(m.Value, &ev); err != nil {
		t.Fatalf("enriched event is not JSON: %v: %s", err, m.Value)
	}
	return ev.AI
}

// class names what the pipeline would do with err.
func class(err error) string {
	var rl *sluice.RateLimitError
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, sluice.ErrFatal):
		return "fatal"
	case errors.Is(err, sluice.ErrMisconfigured):
		return "config"
	case errors.Is(err, sluice.ErrPermanent):
		return "permanent"
	case errors.As(err, &rl):
		return "ratelimit"
	default:
		return "transient"
	}
}

// completion renders a chat completion whose content is content.
func completion(content, finish string) string {
	b, _ := json.Marshal(map[string]any{
		"id": "x", "object": "chat.completion", "model": "llmtest",
		"choices": []any{map[string]any{"index": 0, "message": map[string]any{"role": "assistant", "content": content}, "finish_reason": finish}},
	})
	return string(b)
}

// logBuffer is a concurrency-safe writer for captured logs.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func bg() context.Context { return context.Background() }
