// Package sluiceotel traces a Sluice pipeline with OpenTelemetry: one trace
// per event, from the producer's span through the model call to the
// output record.
//
// A [Tracer] is both a [sluice.Observer] (it implements
// [sluice.EventTracer]) and an [openai.CallObserver] (it implements
// [openai.CallTracer]); wire it into both:
//
//	tr, err := sluiceotel.New(sluiceotel.WithTracerProvider(tp), sluiceotel.WithConsumerGroup("enrich"))
//	enr, err := openai.New(model, task, fields, openai.WithCallObserver(tr))
//	p, err := sluice.New(src, enr, sink, sluice.WithObserver(tr))
//
// For each event it reads the producer's W3C trace context (traceparent,
// tracestate) from the Kafka record headers or the Redis entry fields, and
// records, following the OpenTelemetry messaging and GenAI conventions:
//
//   - "process <topic>" (consumer): the event from its fetch to its ack,
//     with the topic or stream, partition, offset or entry ID, consumer
//     group and deliveries; retries and pauses are span events on it;
//   - "chat <model>" (client), a child of it for every model call, with
//     the model, task, HTTP status, retry number (http.request.resend_count),
//     tokens when the server reports them, and a "rate_limited" event with
//     the Retry-After of a 429. A batched call serves many events: it is one
//     span in a trace of its own, linked to every event's span;
//   - "send <topic>" (producer): the write of the enriched output or of the
//     dead letter, with the failure reason. Its context replaces the
//     traceparent and tracestate headers of the written record, so the
//     trace goes on downstream.
//
// Events that are not recorded (a no-op provider, or a sampler that drops
// them) cost the pipeline almost nothing, and their records keep the
// producer's trace context unchanged.
//
// The package lives in a module of its own, so that programs that do not
// trace do not pull in OpenTelemetry. [NewTracerProvider] builds an SDK
// provider from the standard OTEL_* environment for services.
package sluiceotel
