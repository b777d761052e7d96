package sluice

import "context"

// Sink writes enriched messages downstream.
//
// Write returns nil only once every message in msgs has been durably written,
// that is, confirmed by the broker with the adapter's strongest
// acknowledgement. On error the pipeline assumes none of msgs was written and
// writes them again later (at-least-once), so Write should return an error
// only when it cannot vouch for the batch. Write may be called from several
// goroutines at once and must not keep msgs after it returns.
//
// Errors say what the pipeline does next:
//   - a [WriteErrors] lists the messages that failed; the others count as
//     written. Those whose error is [Permanent] are dead-lettered, the rest
//     are written again.
//   - a [Permanent] error for the whole batch: the pipeline writes the
//     batch's messages again one at a time and dead-letters only those
//     refused for good on their own, with the sink's error as the reason.
//   - a [Permanent] error that is also [Fatal] (Permanent(Fatal(err))), in
//     either form above: a refusal no event gets past, such as a sink whose
//     user may not write the topic. The pipeline stops with an error
//     matching [ErrFatal] and the refused events unacked, instead of
//     dead-lettering every event.
//   - any other error: the whole batch is written again after a backoff,
//     for as long as it takes (or until shutdown, which leaves it unacked).
type Sink interface {
	Write(ctx context.Context, msgs []*Message) error
}

// SinkFunc adapts a function to the [Sink] interface.
type SinkFunc func(ctx context.Context, msgs []*Message) error

// Write calls f(ctx, msgs).
func (f SinkFunc) Write(ctx context.Context, msgs []*Message) error { return f(ctx, msgs) }
