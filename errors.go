package sluice

import (
	"errors"
	"fmt"
	"time"
)

var (
	// ErrSourceClosed is returned by Source.Fetch once the source is closed
	// or has no more messages. Run returns nil after draining when it sees it.
	ErrSourceClosed = errors.New("sluice: source closed")

	// ErrPermanent matches, with errors.Is, every error marked by [Permanent].
	ErrPermanent = errors.New("sluice: permanent failure")

	// ErrFatal matches, with errors.Is, every error marked by [Fatal].
	ErrFatal = errors.New("sluice: fatal error")

	// ErrRateLimited matches the error Run returns when rate limiting lasted
	// longer than the configured maximum (see [WithMaxRateLimitDuration]),
	// and every [*RateLimitError].
	ErrRateLimited = errors.New("sluice: rate limited")

	// ErrInvalidConfig matches every error New returns for a bad option.
	ErrInvalidConfig = errors.New("sluice: invalid configuration")

	// ErrMisconfigured matches every [*MisconfiguredError]: a failure that
	// says the pipeline's setup is wrong (a wrong model URL or name, a
	// parameter the server refuses), not that the event is bad. Run returns
	// an error matching it when the breaker trips (see [WithBreaker]).
	ErrMisconfigured = errors.New("sluice: misconfigured")
)

type markedError struct {
	err  error
	mark error
}

func (e *markedError) Error() string   { return e.err.Error() }
func (e *markedError) Unwrap() []error { return []error{e.err, e.mark} }

// Permanent marks err as not worth retrying: the pipeline sends the event to
// the dead-letter writer at once. errors.Is(Permanent(err), ErrPermanent)
// holds, and the original err stays reachable with errors.Is and errors.As.
// Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &markedError{err: err, mark: ErrPermanent}
}

// Fatal marks err as a condition that no event can get past, such as
// rejected credentials or an exhausted quota. The pipeline stops without
// acking or dead-lettering the event, and Run returns an error that matches
// both ErrFatal and err. Fatal(nil) is nil.
func Fatal(err error) error {
	if err == nil {
		return nil
	}
	return &markedError{err: err, mark: ErrFatal}
}

// MisconfiguredError is what an enricher returns for a failure that no
// event would get past because the setup is wrong rather than the event:
// the model's URL answers 404, the model does not exist, the server refuses
// a parameter or the output schema. It is permanent, so the event is
// dead-lettered, but consecutive failures of the same Class trip the
// pipeline's breaker (see [WithBreaker]): the pipeline stops with the
// error instead of dead-lettering the rest of the input. Build one with
// [Misconfigured]; test for it with errors.Is(err, ErrMisconfigured) or
// errors.As.
type MisconfiguredError struct {
	// Class names the kind of failure, the same for every event it hits,
	// such as "HTTP 404 model_not_found". It must not hold anything specific
	// to the event or the call (a request id, the event's text).
	Class string
	// Err is the underlying error.
	Err error
}

// Misconfigured marks err as a sign of a wrong setup of the given class;
// see [MisconfiguredError]. Misconfigured(class, nil) is nil.
func Misconfigured(class string, err error) error {
	if err == nil {
		return nil
	}
	return &MisconfiguredError{Class: class, Err: err}
}

// Error implements error.
func (e *MisconfiguredError) Error() string { return e.Err.Error() }

// Unwrap returns the underlying error.
func (e *MisconfiguredError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrMisconfigured) and errors.Is(err,
// ErrPermanent) true.
func (e *MisconfiguredError) Is(target error) bool {
	return target == ErrMisconfigured || target == ErrPermanent
}

// PanicError is the failure recorded when an enricher panics. The event is
// dead-lettered with its message as the reason.
type PanicError struct {
	Value any
	Stack []byte
}

// Error implements error.
func (e *PanicError) Error() string { return fmt.Sprintf("enricher panicked: %v", e.Value) }

// Is makes errors.Is(err, ErrPermanent) true for panics.
func (e *PanicError) Is(target error) bool { return target == ErrPermanent }

// WriteErrors is an error a [Sink] or [DeadLetterWriter] may return to report
// per-message outcomes of a batch write. Messages not listed were written.
// Listed messages whose error is [Permanent] (for example a record larger
// than the broker accepts) are dead-lettered; the rest are written again.
type WriteErrors []WriteError

// WriteError is the failure of one message in a batch write.
type WriteError struct {
	// Index is the message's position in the batch passed to Write.
	Index int
	Err   error
}

// Error implements error.
func (e WriteErrors) Error() string {
	if len(e) == 0 {
		return "sluice: write failed"
	}
	if len(e) == 1 {
		return fmt.Sprintf("sluice: write failed for message %d: %v", e[0].Index, e[0].Err)
	}
	return fmt.Sprintf("sluice: write failed for %d messages, first (message %d): %v", len(e), e[0].Index, e[0].Err)
}

// RateLimitError is what an enricher returns when the model's API refused a
// call because of a rate limit (HTTP 429). The pipeline pauses consumption
// for RetryAfter plus jitter, then retries the event; the event's retry
// budget is not spent.
type RateLimitError struct {
	// RetryAfter is how long the server asked us to wait, or 0 if it did not
	// say (the pipeline then uses [WithDefaultRetryAfter]).
	RetryAfter time.Duration
	// Err is the underlying error, if any.
	Err error
}

// Error implements error.
func (e *RateLimitError) Error() string {
	s := "rate limited"
	if e.RetryAfter > 0 {
		s += fmt.Sprintf(" (retry after %s)", e.RetryAfter)
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap returns the underlying error.
func (e *RateLimitError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrRateLimited) true.
func (e *RateLimitError) Is(target error) bool { return target == ErrRateLimited }

// PauseError is what an enricher returns when it must not call the model
// before Until for a reason of its own, such as a token or spending budget
// used up for the hour. The pipeline pauses consumption until then (at
// most 24 hours) and retries the event afterwards, as for a rate limit: the
// event's retry budget is not spent, nothing is acked or dead-lettered for
// it, and health says "paused" with Reason. Unlike a rate limit, a planned
// pause is not a refusal by the API, so it never counts toward
// [WithMaxRateLimitDuration].
type PauseError struct {
	// Until is when calls may start again.
	Until time.Time
	// Reason says why, in one line, for logs and health.
	Reason string
}

// Error implements error.
func (e *PauseError) Error() string {
	return fmt.Sprintf("paused until %s: %s", e.Until.UTC().Format(time.RFC3339), e.Reason)
}
