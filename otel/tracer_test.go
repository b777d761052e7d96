package sluiceotel_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/internal/testutil"
	"github.com/sluicehq/sluice/llmtest"
	sluiceotel "github.com/sluicehq/sluice/otel"
	"github.com/sluicehq/sluice/sluicetest"
)

// oneEvent checks the tree every traced event has: a process span that
// continues the producer's trace, and a send span under it whose context
// the written record carries. It returns the process and send spans.
func (r *run) oneEvent(t *testing.T) (process, send tracetest.SpanStub) {
	t.Helper()
	ps := r.named("process reviews")
	if len(ps) != 1 {
		t.Fatalf("%d process spans, want 1; spans: %v", len(ps), names(r.spans))
	}
	process = ps[0]
	if process.SpanKind != trace.SpanKindConsumer {
		t.Errorf("process span kind = %v", process.SpanKind)
	}
	if got := process.Parent.TraceID().String(); got != producerTrace || process.Parent.SpanID().String() != producerSpan || !process.Parent.IsRemote() {
		t.Errorf("process span's parent = %v, want the producer's remote span %s/%s", process.Parent, producerTrace, producerSpan)
	}
	o := r.origins[0]
	wantAttrs(t, process,
		semconv.MessagingSystemKafka,
		semconv.MessagingOperationTypeProcess,
		semconv.MessagingDestinationName("reviews"),
		semconv.MessagingDestinationPartitionID("0"),
		semconv.MessagingKafkaOffset(int(o.Offset)),
		semconv.MessagingConsumerGroupName("enrichers"),
	)
	var sends []tracetest.SpanStub
	for _, c := range r.childrenOf(process) {
		if c.SpanKind == trace.SpanKindProducer {
			sends = append(sends, c)
		}
	}
	if len(sends) != 1 {
		t.Fatalf("%d send spans under the process span, want 1", len(sends))
	}
	return process, sends[0]
}

func names(spans tracetest.SpanStubs) []string {
	var out []string
	for _, s := range spans {
		out = append(out, s.Name)
	}
	return out
}

// chats returns the model-call spans under p, in start order.
func (r *run) chats(p tracetest.SpanStub) []tracetest.SpanStub {
	var out []tracetest.SpanStub
	for _, c := range r.childrenOf(p) {
		if c.Name == "chat gpt-test" {
			out = append(out, c)
		}
	}
	return out
}

func TestSuccess(t *testing.T) {
	r := runTraced(t, setup{events: 1})
	process, send := r.oneEvent(t)
	if process.Status.Code == codes.Error {
		t.Errorf("process span status = %v", process.Status)
	}
	chats := r.chats(process)
	if len(chats) != 1 {
		t.Fatalf("%d chat spans, want 1", len(chats))
	}
	c := chats[0]
	if c.SpanKind != trace.SpanKindClient {
		t.Errorf("chat span kind = %v", c.SpanKind)
	}
	wantAttrs(t, c,
		semconv.GenAIOperationNameChat,
		semconv.GenAIProviderNameOpenAI,
		semconv.GenAIRequestModel("gpt-test"),
		sluiceotel.AttrTask.String("sentiment"),
		semconv.HTTPResponseStatusCode(200),
		semconv.HTTPRequestResendCount(0),
		sluiceotel.AttrAttempt.Int(1),
	)
	for _, k := range []attribute.Key{semconv.GenAIUsageInputTokensKey, semconv.GenAIUsageOutputTokensKey, semconv.GenAIResponseModelKey} {
		if _, ok := attr(c, k); !ok {
			t.Errorf("chat span lacks %s", k)
		}
	}
	wantAttrs(t, send,
		semconv.MessagingOperationTypeSend,
		semconv.MessagingDestinationName("reviews.enriched"),
		sluiceotel.AttrOutcome.String("enriched"),
	)
	if send.Name != "send reviews.enriched" {
		t.Errorf("send span name = %q", send.Name)
	}
	// The output continues the trace from the send span.
	out := r.sink.Messages()[0]
	wantTraceparent(t, out.Headers, send)
	if got := header(out.Headers, "tracestate"); got != "vendor=1" {
		t.Errorf("tracestate = %q, want the producer's", got)
	}
	if got := header(out.Headers, "app"); got != "x" {
		t.Errorf("other header app = %q, want it kept", got)
	}
}

func TestRetryThenSuccess(t *testing.T) {
	r := runTraced(t, setup{events: 1, retries: 3, faults: []llmtest.Fault{{Status: http.StatusInternalServerError}}})
	process, send := r.oneEvent(t)
	chats := r.chats(process)
	if len(chats) != 2 {
		t.Fatalf("%d chat spans, want 2 (a 500, then a success)", len(chats))
	}
	first, second := chats[0], chats[1]
	if first.StartTime.After(second.StartTime) {
		first, second = second, first
	}
	wantAttrs(t, first, semconv.HTTPResponseStatusCode(500), semconv.HTTPRequestResendCount(0), sluiceotel.AttrAttempt.Int(1), semconv.ErrorTypeKey.String("500"))
	if first.Status.Code != codes.Error {
		t.Errorf("failed call's status = %v", first.Status)
	}
	wantAttrs(t, second, semconv.HTTPResponseStatusCode(200), semconv.HTTPRequestResendCount(1), sluiceotel.AttrAttempt.Int(2))
	ev, ok := hasEvent(process, sluiceotel.EventRetry)
	if !ok {
		t.Fatalf("process span has no %s event: %v", sluiceotel.EventRetry, process.Events)
	}
	found := false
	for _, a := range ev.Attributes {
		if a.Key == sluiceotel.AttrAttempt && a.Value.AsInt64() == 1 {
			found = true
		}
	}
	if !found {
		t.Errorf("retry event attributes %v lack attempt 1", ev.Attributes)
	}
	if process.Status.Code == codes.Error {
		t.Errorf("an event enriched on retry has status %v", process.Status)
	}
	wantTraceparent(t, r.sink.Messages()[0].Headers, send)
}

func TestRateLimitPause(t *testing.T) {
	r := runTraced(t, setup{events: 1, faults: []llmtest.Fault{{
		Status: http.StatusTooManyRequests, Code: "rate_limit_exceeded",
		Header: http.Header{"Retry-After-Ms": {"20"}},
	}}})
	process, send := r.oneEvent(t)
	chats := r.chats(process)
	if len(chats) != 2 {
		t.Fatalf("%d chat spans, want 2 (a 429, then a success)", len(chats))
	}
	limited := chats[0]
	if chats[1].StartTime.Before(limited.StartTime) {
		limited = chats[1]
	}
	wantAttrs(t, limited, semconv.HTTPResponseStatusCode(429), semconv.ErrorTypeKey.String("429"))
	ev, ok := hasEvent(limited, sluiceotel.EventRateLimited)
	if !ok {
		t.Fatalf("the 429 call has no %s event: %v", sluiceotel.EventRateLimited, limited.Events)
	}
	if !hasAttr(ev.Attributes, sluiceotel.AttrRetryAfter, 0.02) {
		t.Errorf("rate_limited event = %v, want retry after 0.02 s", ev.Attributes)
	}
	pause, ok := hasEvent(process, sluiceotel.EventPause)
	if !ok {
		t.Fatalf("process span has no %s event: %v", sluiceotel.EventPause, process.Events)
	}
	for _, a := range pause.Attributes {
		if a.Key == sluiceotel.AttrPause && a.Value.AsFloat64() < 0.02 {
			t.Errorf("pause of %v s, want at least the Retry-After", a.Value.AsFloat64())
		}
	}
	if _, ok := hasEvent(process, sluiceotel.EventRetry); ok {
		t.Error("a 429 was recorded as a retry; it spends no retry")
	}
	// Both calls are the event's first attempt: a 429 spends no retry.
	for _, c := range chats {
		wantAttrs(t, c, sluiceotel.AttrAttempt.Int(1))
	}
	wantTraceparent(t, r.sink.Messages()[0].Headers, send)
}

func TestDeadLetter(t *testing.T) {
	r := runTraced(t, setup{events: 1, faults: []llmtest.Fault{{
		Status: http.StatusBadRequest, Body: `{"error":{"message":"the input is too long","type":"invalid_request_error"}}`,
	}}})
	process, send := r.oneEvent(t)
	letters := r.sink.DeadLetters()
	if len(letters) != 1 || len(r.sink.Messages()) != 0 {
		t.Fatalf("%d dead letters and %d outputs, want 1 and 0", len(letters), len(r.sink.Messages()))
	}
	d := letters[0]
	wantAttrs(t, send,
		sluiceotel.AttrOutcome.String("dead_letter"),
		semconv.MessagingDestinationName("reviews.dlq"),
		sluiceotel.AttrFailureReason.String(d.Reason),
	)
	if send.Name != "send reviews.dlq" || send.Status.Code != codes.Error {
		t.Errorf("dead-letter span %q has status %v", send.Name, send.Status)
	}
	if process.Status.Code != codes.Error || process.Status.Description != d.Reason {
		t.Errorf("process span status = %v, want an error with the reason %q", process.Status, d.Reason)
	}
	chats := r.chats(process)
	if len(chats) != 1 {
		t.Fatalf("%d chat spans, want 1", len(chats))
	}
	wantAttrs(t, chats[0], semconv.HTTPResponseStatusCode(400), semconv.ErrorTypeKey.String("400"))
	// The dead letter carries the dead-letter span's context, and the
	// original bytes and reason as before.
	hs := d.Headers()
	wantTraceparent(t, hs, send)
	if header(hs, sluice.HeaderFailureReason) != d.Reason || header(hs, "app") != "x" {
		t.Errorf("dead-letter headers %v", hs)
	}
	if string(d.Msg.Value) != `{"id":0,"text":"review 0 is great"}` {
		t.Errorf("dead letter value = %s, want the original", d.Msg.Value)
	}
}

func TestBatch(t *testing.T) {
	const n = 4
	r := runTraced(t, setup{events: n, batch: n})
	var ps []tracetest.SpanStub // the events', without the blocker's
	for _, p := range r.named("process reviews") {
		if p.Parent.IsValid() {
			ps = append(ps, p)
		}
	}
	if len(ps) != n {
		t.Fatalf("%d process spans in the producer's trace, want %d", len(ps), n)
	}
	var chats []tracetest.SpanStub
	for _, c := range r.named("chat gpt-test") {
		if _, ok := attr(c, semconv.MessagingBatchMessageCountKey); ok {
			chats = append(chats, c)
		}
	}
	if len(chats) != 1 {
		t.Fatalf("%d batch calls, want one; spans: %v", len(chats), names(r.spans))
	}
	c := chats[0]
	if c.Parent.IsValid() {
		t.Errorf("the batch call has parent %v, want a root of its own trace", c.Parent)
	}
	wantAttrs(t, c, semconv.MessagingBatchMessageCount(n), semconv.HTTPResponseStatusCode(200))
	linked := map[trace.SpanID]bool{}
	for _, l := range c.Links {
		linked[l.SpanContext.SpanID()] = true
	}
	for _, p := range ps {
		if !linked[p.SpanContext.SpanID()] {
			t.Errorf("the batch call is not linked to event span %v", p.SpanContext.SpanID())
		}
		if p.SpanContext.TraceID().String() != producerTrace {
			t.Errorf("event span in trace %v, want the producer's", p.SpanContext.TraceID())
		}
		ev, ok := hasEvent(p, sluiceotel.EventBatchCall)
		if !ok || !hasString(ev.Attributes, "span_id", c.SpanContext.SpanID().String()) {
			t.Errorf("event span lacks a %s event naming the call: %v", sluiceotel.EventBatchCall, p.Events)
		}
	}
	if len(c.Links) != n {
		t.Errorf("%d links, want %d", len(c.Links), n)
	}
	for _, m := range r.sink.Messages() {
		tp := header(m.Headers, "traceparent")
		if strings.Contains(string(m.Value), "blocker") {
			continue
		}
		if len(tp) != 55 || tp[3:35] != producerTrace {
			t.Errorf("output traceparent %q is not in the producer's trace", tp)
		}
	}
}

// An event without trace context starts a trace of its own, and its
// output carries it.
func TestNoProducerContext(t *testing.T) {
	r := runTraced(t, setup{events: 1, noParent: true})
	ps := r.named("process reviews")
	if len(ps) != 1 || ps[0].Parent.IsValid() {
		t.Fatalf("want one root process span, got %v", ps)
	}
	out := r.sink.Messages()[0]
	if tp := header(out.Headers, "traceparent"); len(tp) != 55 || tp[3:35] != ps[0].SpanContext.TraceID().String() {
		t.Errorf("output traceparent %q not in the event's trace %v", tp, ps[0].SpanContext.TraceID())
	}
}

// An output the sink refuses for good is dead-lettered: its send span ends
// in error, and the dead letter gets a send span and context of its own.
func TestSinkRefusesTheOutput(t *testing.T) {
	r := runTraced(t, setup{events: 1, sink: func(s *sluicetest.Sink) sluice.Sink {
		return sluice.SinkFunc(func(context.Context, []*sluice.Message) error {
			return sluice.Permanent(errors.New("record too large"))
		})
	}})
	ps := r.named("process reviews")
	if len(ps) != 1 {
		t.Fatalf("%d process spans", len(ps))
	}
	var out, dlq []tracetest.SpanStub
	for _, c := range r.childrenOf(ps[0]) {
		switch c.Name {
		case "send reviews.enriched":
			out = append(out, c)
		case "send reviews.dlq":
			dlq = append(dlq, c)
		}
	}
	if len(out) != 1 || len(dlq) != 1 {
		t.Fatalf("%d output and %d dead-letter send spans, want 1 and 1: %v", len(out), len(dlq), names(r.spans))
	}
	if out[0].Status.Code != codes.Error || !strings.Contains(out[0].Status.Description, "record too large") {
		t.Errorf("refused output's span status = %v", out[0].Status)
	}
	letters := r.sink.DeadLetters()
	if len(letters) != 1 {
		t.Fatalf("%d dead letters", len(letters))
	}
	wantTraceparent(t, letters[0].Headers(), dlq[0])
	if ps[0].Status.Code != codes.Error {
		t.Errorf("process span status = %v, want an error", ps[0].Status)
	}
}

// A malformed traceparent, or several, do not break anything: the event
// starts a trace of its own and its output carries exactly one valid
// traceparent.
func TestBadProducerContext(t *testing.T) {
	for name, hs := range map[string][]sluice.Header{
		"malformed": {{Key: "traceparent", Value: []byte("00-not-a-trace-01")}},
		"zero ids":  {{Key: "traceparent", Value: []byte("00-00000000000000000000000000000000-0000000000000000-01")}},
		"binary":    {{Key: "traceparent", Value: []byte{0xff, 0x00, 0xfe}}, {Key: "tracestate", Value: []byte{0xff}}},
		"twice": {
			{Key: "traceparent", Value: []byte(traceparent)},
			{Key: "traceparent", Value: []byte("00-11111111111111111111111111111111-2222222222222222-01")},
		},
	} {
		t.Run(name, func(t *testing.T) {
			r := runTraced(t, setup{events: 1, headers: hs})
			ps := r.named("process reviews")
			if len(ps) != 1 {
				t.Fatalf("%d process spans", len(ps))
			}
			out := r.sink.Messages()[0]
			if n := countHeader(out.Headers, "traceparent"); n != 1 {
				t.Fatalf("%d traceparent headers on the output, want 1: %v", n, out.Headers)
			}
			tp := header(out.Headers, "traceparent")
			if len(tp) != 55 || tp[3:35] != ps[0].SpanContext.TraceID().String() {
				t.Errorf("output traceparent %q not in the event's trace %v", tp, ps[0].SpanContext.TraceID())
			}
		})
	}
}

// An event left unacked at shutdown ends its span in error.
func TestLeftUnacked(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	defer tp.Shutdown(context.Background())
	tr, err := sluiceotel.New(sluiceotel.WithTracerProvider(tp))
	if err != nil {
		t.Fatal(err)
	}
	src := sluicetest.NewSource("reviews", 1)
	src.Publish(nil, []byte("x"), sluice.Header{Key: "traceparent", Value: []byte(traceparent)})
	started := make(chan struct{})
	stuck := sluice.EnricherFunc(func(ctx context.Context, in *sluice.Message) (*sluice.Message, error) {
		close(started)
		<-ctx.Done()
		return nil, ctx.Err()
	})
	p, err := sluice.New(src, stuck, sluicetest.NewSink(), sluice.WithObserver(tr),
		sluice.WithDrainTimeout(time.Millisecond), sluice.WithLogger(testutil.Quiet()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	<-started
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	spans := exp.GetSpans()
	if len(spans) != 1 || spans[0].Name != "process reviews" {
		t.Fatalf("spans %v, want one process span", names(spans))
	}
	if s := spans[0].Status; s.Code != codes.Error || !strings.Contains(s.Description, "left unacked") {
		t.Errorf("status %v, want an error saying the event was left unacked", s)
	}
}
