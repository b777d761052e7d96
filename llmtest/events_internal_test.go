package llmtest

import (
	"encoding/json"
	"testing"
)

func TestEventsCountsTheEventsOfABatch(t *testing.T) {
	h, err := NewHandler(WithPerEventLatency(1))
	if err != nil {
		t.Fatal(err)
	}
	parse := func(body string) *request {
		var r request
		if err := json.Unmarshal([]byte(body), &r); err != nil {
			t.Fatal(err)
		}
		return &r
	}
	single := parse(`{"messages":[{"role":"system","content":"Task: sentiment"},{"role":"user","content":"{\"text\":\"great\"}"}]}`)
	if n := h.events(single); n != 1 {
		t.Errorf("single call: %d events", n)
	}
	batch := parse(`{"messages":[{"role":"system","content":"Task: sentiment\nMode: batch"},{"role":"user","content":"{\"e1\":{\"text\":\"a\"},\"e2\":{\"text\":\"b\"},\"e3\":{\"text\":\"c\"}}"}]}`)
	if n := h.events(batch); n != 3 {
		t.Errorf("batch of 3: %d events", n)
	}
	off, _ := NewHandler()
	if n := off.events(batch); n != 0 {
		t.Errorf("without the option: %d", n)
	}
	if _, err := NewHandler(WithPerEventLatency(-1)); err == nil {
		t.Error("a negative per-event latency was accepted")
	}
}
