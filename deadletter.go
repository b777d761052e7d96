package sluice

import (
	"context"
	"strconv"
	"strings"
	"time"
)

// Header names the pipeline and the adapters put on dead letters and, for the
// origin, on enriched output records.
const (
	HeaderFailureReason   = "failure_reason"
	HeaderFailureAttempts = "failure_attempts"
	HeaderFailureTime     = "failure_time"
	HeaderSourceTopic     = "source_topic"
	HeaderSourcePartition = "source_partition"
	HeaderSourceOffset    = "source_offset"
	HeaderSourceStream    = "source_stream"
	HeaderSourceID        = "source_id"
	// HeaderIdempotencyKey is on every output and dead letter: the origin of
	// the input it was made from ([Origin.String], such as
	// "orders/3@1042" or "orders/1700000000000-0"). A redelivered input
	// yields a record with the same key, so a consumer that keeps the keys
	// it has seen (see [Dedup]) drops the copies.
	HeaderIdempotencyKey = "idempotency_key"
)

// maxReasonLen caps the failure_reason header so that an enormous error text
// cannot make the dead letter itself too large to write.
const maxReasonLen = 1024

// DeadLetter is an event the pipeline gave up on, with why.
type DeadLetter struct {
	// Msg is the original message exactly as the source delivered it,
	// except that an [EventTracer] may have replaced its trace-context
	// headers.
	Msg *Message
	// Reason is a one-line, human-readable cause, at most 1 KiB.
	Reason string
	// Err is the last error, for writers that want to classify it.
	Err error
	// Attempts is how many times enrichment was tried; rate-limited tries
	// are not counted.
	Attempts int
	// FirstAttempt is when enrichment was first tried, or the zero time when
	// the event was rejected before any attempt.
	FirstAttempt time.Time
	// FailedAt is when the pipeline gave up.
	FailedAt time.Time
}

// Headers returns the headers a dead-letter record should carry: the
// original message's headers, then failure_reason, failure_attempts,
// failure_time (RFC 3339, UTC) and the origin headers of [OriginHeaders].
func (d DeadLetter) Headers() []Header {
	hs := make([]Header, 0, len(d.Msg.Headers)+6)
	hs = append(hs, d.Msg.Headers...)
	hs = append(hs,
		Header{Key: HeaderFailureReason, Value: []byte(d.Reason)},
		Header{Key: HeaderFailureAttempts, Value: strconv.AppendInt(nil, int64(d.Attempts), 10)},
		Header{Key: HeaderFailureTime, Value: d.FailedAt.UTC().AppendFormat(nil, time.RFC3339Nano)},
	)
	return AppendOriginHeaders(hs, d.Msg.Origin)
}

// AppendOriginHeaders appends the headers that record where a message came
// from: source_topic, source_partition and source_offset for offset-based
// sources, or source_stream and source_id for ID-based ones, then
// idempotency_key ([HeaderIdempotencyKey]). Sinks put them on enriched
// records so that a verifier can match outputs to inputs, and a consumer
// can drop redelivered copies.
func AppendOriginHeaders(hs []Header, o Origin) []Header {
	key := Header{Key: HeaderIdempotencyKey, Value: []byte(o.String())}
	if o.ID != "" {
		return append(hs,
			Header{Key: HeaderSourceStream, Value: []byte(o.Topic)},
			Header{Key: HeaderSourceID, Value: []byte(o.ID)},
			key,
		)
	}
	return append(hs,
		Header{Key: HeaderSourceTopic, Value: []byte(o.Topic)},
		Header{Key: HeaderSourcePartition, Value: strconv.AppendInt(nil, int64(o.Partition), 10)},
		Header{Key: HeaderSourceOffset, Value: strconv.AppendInt(nil, o.Offset, 10)},
		key,
	)
}

// DeadLetterWriter durably writes events the pipeline gave up on. Like
// [Sink.Write], WriteDeadLetters returns nil only once every letter is
// confirmed by the broker, and may return [WriteErrors] for per-letter
// outcomes. A sink that also implements DeadLetterWriter is used for dead
// letters unless [WithDeadLetter] names another writer.
//
// A dead letter has nowhere else to go, so an error is never answered by
// dropping the event: transient errors are retried with backoff, and a
// [Permanent] one (for a letter listed in [WriteErrors], or for a single
// letter; a whole batch is first retried one letter at a time) stops the
// pipeline with an error matching [ErrFatal], the event unacked.
type DeadLetterWriter interface {
	WriteDeadLetters(ctx context.Context, letters []DeadLetter) error
}

// DeadLetterFunc adapts a function to the [DeadLetterWriter] interface.
type DeadLetterFunc func(ctx context.Context, letters []DeadLetter) error

// WriteDeadLetters calls f(ctx, letters).
func (f DeadLetterFunc) WriteDeadLetters(ctx context.Context, letters []DeadLetter) error {
	return f(ctx, letters)
}

func truncateReason(s string) string {
	if len(s) <= maxReasonLen {
		return s
	}
	cut := maxReasonLen - 3
	for cut > 0 && s[cut]&0xC0 == 0x80 { // don't split a UTF-8 sequence
		cut--
	}
	return s[:cut] + "..."
}

// reasonOf is the failure_reason for err: its text on one line, at most
// 1 KiB.
func reasonOf(err error) string {
	return truncateReason(strings.Join(strings.Fields(err.Error()), " "))
}
