// Package sluice runs real-time event pipelines that enrich every event with an
// AI model.
//
// A [Pipeline] reads batches of [Message] values from a [Source], runs each one
// through an [Enricher] with bounded concurrency, writes the result to a [Sink],
// and only then tells the [Acker] that the event is done. Events that cannot be
// enriched go, byte for byte as they arrived, to a [DeadLetterWriter] together
// with the reason.
//
// # Guarantees
//
//   - At-least-once: an event is acked only after its enriched form or its dead
//     letter has been durably written. Events finish out of order; each
//     acked [Message] carries its [Origin] so that offset-based adapters commit
//     only the contiguous prefix of finished offsets.
//   - Bounded memory: at most [WithMaxInFlight] events are fetched but not yet
//     acked. When the enricher stalls, fetching stops.
//   - Backpressure: an enricher that returns a [*RateLimitError] pauses
//     consumption for the server's Retry-After plus jitter. Rate-limited events
//     keep their retry budget. When rate limiting lasts longer than
//     [WithMaxRateLimitDuration], Run stops with [ErrRateLimited].
//   - Ordering: with [WithKeyOrdering], events that share a key are enriched
//     and written in the order they were fetched; other events run in parallel.
//
// # Ownership of messages
//
// A Source allocates each [Message] and hands it to the pipeline. From then on
// the pipeline owns it until it is acked: enrichers, sinks and dead-letter
// writers must treat the input message, its Value, Key and Headers as
// read-only, and build a new message (see [Message.WithValue]) for their output.
// After the Acker returns, adapters may reuse the memory.
package sluice
