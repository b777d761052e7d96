package sluice

import "context"

// Enricher turns one input message into its enriched form.
//
// Enrich must treat in as read-only and return a new message, usually
// in.WithValue(enriched). The pipeline keeps the input's Origin and Token on
// the output whatever the enricher sets. Errors steer the pipeline:
//
//   - a [*RateLimitError] pauses consumption and retries the event later
//     without spending its retry budget;
//   - an error marked with [Permanent] sends the event to the dead-letter
//     writer at once;
//   - an error marked with [Fatal] stops the pipeline without acking the
//     event, for conditions no event can get past (bad credentials, no quota);
//   - any other error is transient and retried with backoff.
//
// A panic in Enrich is recovered and treated as a permanent failure.
// Enrich is called from many goroutines at once.
type Enricher interface {
	Enrich(ctx context.Context, in *Message) (*Message, error)
}

// EnricherFunc adapts a function to the [Enricher] interface.
type EnricherFunc func(ctx context.Context, in *Message) (*Message, error)

// Enrich calls f(ctx, in).
func (f EnricherFunc) Enrich(ctx context.Context, in *Message) (*Message, error) { return f(ctx, in) }

// BatchResult is the outcome of enriching one message of a batch: either
// Msg or Err is set.
type BatchResult struct {
	Msg *Message
	Err error
}

// BatchEnricher is an optional capability of an [Enricher] that enriches many
// events in one model call. EnrichBatch returns exactly one [BatchResult] per
// input, in input order; errors are per event and follow the same rules as
// Enrich. The pipeline uses it when [WithEnrichBatch] is above 1, and falls
// back to Enrich when it retries a single event.
type BatchEnricher interface {
	Enricher
	EnrichBatch(ctx context.Context, in []*Message) []BatchResult
}
