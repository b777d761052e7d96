package sluice

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/sluicehq/sluice/internal/optcheck"
)

// Option configures a [Pipeline]. Options are validated by [New], which
// reports every bad value with an error matching [ErrInvalidConfig].
type Option func(*config)

type config struct {
	concurrency       int
	maxInFlight       int
	windowMin         int // resolved in New: the window's bounds; equal when WithMaxInFlight pins it
	windowMax         int
	fetchBatch        int
	fetchBatchSet     bool
	writeBatch        int
	writers           int
	enrichBatch       int
	retries           int
	backoffBase       time.Duration
	backoffMax        time.Duration
	maxDeliveries     int
	keyOrdering       bool
	alwaysChunk       bool // tests: hand out work in chunks as if enrichment were always fast
	rateLimit         float64
	rateBurst         int
	maxRateLimited    time.Duration
	defaultRetryAfter time.Duration
	pauseJitter       time.Duration // <0: proportional default
	drainTimeout      time.Duration
	flushTimeout      time.Duration // 0: drainTimeout
	breaker           int
	statsWindow       time.Duration
	stallAfter        time.Duration
	acker             Acker
	deadLetter        DeadLetterWriter
	logger            *slog.Logger
	clock             Clock
	observers         []Observer
	errs              optcheck.Errors
}

func defaultConfig() config {
	return config{
		errs:              optcheck.New("sluice", ErrInvalidConfig),
		concurrency:       8,
		fetchBatch:        256,
		writeBatch:        1024,
		writers:           8,
		enrichBatch:       1,
		retries:           3,
		backoffBase:       200 * time.Millisecond,
		backoffMax:        10 * time.Second,
		maxDeliveries:     -2, // resolved in New: retries + 1
		maxRateLimited:    60 * time.Second,
		defaultRetryAfter: time.Second,
		pauseJitter:       -1,
		drainTimeout:      30 * time.Second,
		breaker:           DefaultBreaker,
		statsWindow:       time.Minute,
		stallAfter:        5 * time.Minute,
		clock:             wallClock{},
	}
}

// invalid records a bad option or argument: what was given, what is
// wrong with it, and what to do instead (which may be empty).
func (c *config) invalid(given, problem, fix string) {
	c.errs.Reject(given, problem, fix)
}

// WithConcurrency sets how many enrichment calls run at once. Set it to the
// model API's concurrency limit. The default is 8.
func WithConcurrency(n int) Option {
	return func(c *config) {
		if n < 1 {
			c.invalid(fmt.Sprintf("WithConcurrency(%d)", n), "need at least 1 worker", "set it to the model API's concurrency limit")
			return
		}
		c.concurrency = n
	}
}

// WithMaxInFlight pins how many events may be fetched but not yet acked (the
// window), which bounds the pipeline's memory however slow the model is. It
// must be at least the concurrency times the enricher batch
// ([WithEnrichBatch]).
//
// By default the window adapts: it starts at four times concurrency × batch
// (at least 64), grows by one slot per retired event while results come back
// fast (doubling every round trip), and every 100ms moves toward the number
// of events the pipeline retires in one second, at most doubling or halving
// per step. The steps follow the pipeline's clock ([WithClock]). So a
// fast enricher and sink get a large window (up to 32768 events, and no more
// than 64 MiB of event payload at the average event size seen), while slow
// model calls shrink it back to the minimum, which keeps the events a
// rebalance or crash redelivers, and the memory held, small.
func WithMaxInFlight(n int) Option {
	return func(c *config) {
		if n < 1 {
			c.invalid(fmt.Sprintf("WithMaxInFlight(%d)", n), "need at least 1", "")
			return
		}
		c.maxInFlight = n
	}
}

// WithFetchBatch sets the most messages asked of Source.Fetch at once. By
// default it follows the window: a quarter of it, between 256 and 1024.
func WithFetchBatch(n int) Option {
	return func(c *config) {
		if n < 1 {
			c.invalid(fmt.Sprintf("WithFetchBatch(%d)", n), "need at least 1", "")
			return
		}
		c.fetchBatch = n
		c.fetchBatchSet = true
	}
}

// WithWriteBatch sets the most messages passed to one Sink.Write, Ack or
// WriteDeadLetters call. Writers take whatever is ready without waiting, so
// small batches cost no latency. The default is 1024.
func WithWriteBatch(n int) Option {
	return func(c *config) {
		if n < 1 {
			c.invalid(fmt.Sprintf("WithWriteBatch(%d)", n), "need at least 1", "")
			return
		}
		c.writeBatch = n
	}
}

// WithWriters sets how many goroutines write outputs and dead letters and
// ack at once. The default is 8, so that writes to a sink that lingers to
// fill a batch (such as Kafka's producer) overlap: a write waiting for the
// broker never leaves the window idle.
func WithWriters(n int) Option {
	return func(c *config) {
		if n < 1 {
			c.invalid(fmt.Sprintf("WithWriters(%d)", n), "need at least 1", "")
			return
		}
		c.writers = n
	}
}

// WithEnrichBatch makes each worker hand up to n events to one
// BatchEnricher.EnrichBatch call. It needs an enricher that implements
// [BatchEnricher]; the default of 1 calls Enrich for each event.
func WithEnrichBatch(n int) Option {
	return func(c *config) {
		if n < 1 {
			c.invalid(fmt.Sprintf("WithEnrichBatch(%d)", n), "need at least 1", "1 turns batching off")
			return
		}
		c.enrichBatch = n
	}
}

// WithRetries sets how many times a transient failure is retried before the
// event is dead-lettered. Rate-limited attempts do not count. The default is
// 3, so an event is tried at most 4 times.
func WithRetries(n int) Option {
	return func(c *config) {
		if n < 0 {
			c.invalid(fmt.Sprintf("WithRetries(%d)", n), "cannot be negative", "0 dead-letters at the first transient failure")
			return
		}
		c.retries = n
	}
}

// WithBackoff sets the exponential backoff between retries: the k-th retry
// waits a random time in [0, min(max, base·2^(k-1))) ("full jitter"). The
// defaults are 200ms and 10s. A zero base retries at once.
func WithBackoff(base, max time.Duration) Option {
	return func(c *config) {
		if base < 0 || max < base {
			c.invalid(fmt.Sprintf("WithBackoff(%s, %s)", base, max), "need 0 <= base <= max", "")
			return
		}
		c.backoffBase, c.backoffMax = base, max
	}
}

// WithMaxDeliveries dead-letters at once an event whose Message.Deliveries
// exceeds n, because a broker that delivered it that often has seen it fail
// (or crash its consumer) every time. The default is the retry count plus 1;
// 0 turns the check off. Sources that cannot count deliveries report 0 and
// are never affected.
func WithMaxDeliveries(n int) Option {
	return func(c *config) {
		if n < 0 {
			c.invalid(fmt.Sprintf("WithMaxDeliveries(%d)", n), "cannot be negative", "0 turns the limit off")
			return
		}
		c.maxDeliveries = n
	}
}

// WithKeyOrdering makes events that share a Message.Key run one at a time,
// in fetch order, through enrichment and the sink. Events with different
// keys, and events without a key, still run in parallel.
func WithKeyOrdering() Option {
	return func(c *config) { c.keyOrdering = true }
}

// WithRateLimit adds a client-side limit of rps model calls per second with
// the given burst, so that the pipeline stays under a known quota instead of
// learning it from 429s. A batch call counts as one. 0 turns it off (the
// default).
func WithRateLimit(rps float64, burst int) Option {
	return func(c *config) {
		if rps < 0 || (rps > 0 && burst < 1) {
			c.invalid(fmt.Sprintf("WithRateLimit(%v, %d)", rps, burst), "need rps >= 0 and burst >= 1", "rps 0 turns the limit off")
			return
		}
		c.rateLimit, c.rateBurst = rps, burst
	}
}

// WithMaxRateLimitDuration sets how long rate limiting may go on without a
// single successful call before the pipeline stops consuming and Run returns
// an error matching [ErrRateLimited]. The default is 60s.
func WithMaxRateLimitDuration(d time.Duration) Option {
	return func(c *config) {
		if d <= 0 {
			c.invalid(fmt.Sprintf("WithMaxRateLimitDuration(%s)", d), "must be positive", "")
			return
		}
		c.maxRateLimited = d
	}
}

// WithDefaultRetryAfter sets the pause used when a [*RateLimitError] carries
// no Retry-After. The default is 1s.
func WithDefaultRetryAfter(d time.Duration) Option {
	return func(c *config) {
		if d <= 0 {
			c.invalid(fmt.Sprintf("WithDefaultRetryAfter(%s)", d), "must be positive", "")
			return
		}
		c.defaultRetryAfter = d
	}
}

// WithPauseJitter sets the most random time added to each rate-limit pause,
// so that many consumers do not resume in lockstep. The default is a fifth
// of the Retry-After, at least 10ms; 0 turns jitter off.
func WithPauseJitter(max time.Duration) Option {
	return func(c *config) {
		if max < 0 {
			c.invalid(fmt.Sprintf("WithPauseJitter(%s)", max), "cannot be negative", "0 turns jitter off")
			return
		}
		c.pauseJitter = max
	}
}

// WithDrainTimeout bounds how long shutdown waits for in-flight events to
// finish and be written. Events still unfinished then are not acked, so the
// broker delivers them again. The default is 30s.
func WithDrainTimeout(d time.Duration) Option {
	return func(c *config) {
		if d <= 0 {
			c.invalid(fmt.Sprintf("WithDrainTimeout(%s)", d), "must be positive", "")
			return
		}
		c.drainTimeout = d
	}
}

// WithFlushTimeout bounds how long shutdown waits, after the drain, for
// the acker, sink and dead-letter writer to make what was acked durable
// (for example, for Kafka offsets to be committed). What is not flushed by
// then is delivered again. The default is the drain timeout
// ([WithDrainTimeout]), so a stop can take up to twice that; set both when
// the stop must fit a grace period (systemd's TimeoutStopSec, Kubernetes'
// terminationGracePeriodSeconds).
func WithFlushTimeout(d time.Duration) Option {
	return func(c *config) {
		if d <= 0 {
			c.invalid(fmt.Sprintf("WithFlushTimeout(%s)", d), "must be positive", "leave the option out for the drain timeout")
			return
		}
		c.flushTimeout = d
	}
}

// DefaultBreaker is how many consecutive events may fail with the same
// [*MisconfiguredError] class before the pipeline stops; see [WithBreaker].
const DefaultBreaker = 20

// WithBreaker sets the breaker against mass dead-lettering: once n events
// in a row fail with a [*MisconfiguredError] of the same Class (a wrong
// model URL or name, a parameter the server refuses), the pipeline stops
// and Run returns an error that matches [ErrMisconfigured] and names the
// cause. The n-th event and every event after it stay unacked, so at most
// n-1 events are dead-lettered for a wrong setup; fix it and restart, and
// the rest of the input is still there. A successful enrichment, or a
// failure of another class, starts the count again; other failures
// (transient errors, event-specific permanent errors such as bad JSON or
// an answer that breaks the schema) neither count nor reset it, and go on
// to the dead letters as before. The default is [DefaultBreaker]; 0 turns
// the breaker off, so that such failures are dead-lettered like any other
// permanent one.
func WithBreaker(n int) Option {
	return func(c *config) {
		if n < 0 {
			c.invalid(fmt.Sprintf("WithBreaker(%d)", n), "cannot be negative", "0 turns the breaker off; the default is 20")
			return
		}
		c.breaker = n
	}
}

// WithStatsWindow sets the recent window over which [Stats] computes the
// windowed success rate. The default is one minute.
func WithStatsWindow(d time.Duration) Option {
	return func(c *config) {
		if d < time.Second {
			c.invalid(fmt.Sprintf("WithStatsWindow(%s)", d), "must be at least 1s", "")
			return
		}
		c.statsWindow = d
	}
}

// WithStallThreshold sets when health reports the pipeline as "stalled":
// once its oldest unfinished event has been in the pipeline for d, or once
// writes to the sink or the dead-letter writer have kept failing for
// min(d, 30s). The default is 5m; pick d above the longest an event can
// legitimately take (model timeout × attempts, plus backoff and pauses).
func WithStallThreshold(d time.Duration) Option {
	return func(c *config) {
		if d <= 0 {
			c.invalid(fmt.Sprintf("WithStallThreshold(%s)", d), "must be positive", "")
			return
		}
		c.stallAfter = d
	}
}

// WithAcker sets the Acker. By default the Source is used, when it
// implements [Acker].
func WithAcker(a Acker) Option {
	return func(c *config) {
		if a == nil {
			c.invalid("WithAcker(nil)", "the acker is nil", "leave the option out to use the source")
			return
		}
		c.acker = a
	}
}

// WithDeadLetter sets where events go that cannot be enriched. By default the
// Sink is used, when it implements [DeadLetterWriter].
func WithDeadLetter(w DeadLetterWriter) Option {
	return func(c *config) {
		if w == nil {
			c.invalid("WithDeadLetter(nil)", "the dead-letter writer is nil", "leave the option out to use the sink")
			return
		}
		c.deadLetter = w
	}
}

// WithLogger sets the logger. The default is slog.Default().
func WithLogger(l *slog.Logger) Option {
	return func(c *config) {
		if l == nil {
			c.invalid("WithLogger(nil)", "the logger is nil", "leave the option out for slog.Default()")
			return
		}
		c.logger = l
	}
}

// WithClock replaces the wall clock, for tests.
func WithClock(clk Clock) Option {
	return func(c *config) {
		if clk == nil {
			c.invalid("WithClock(nil)", "the clock is nil", "leave the option out for the wall clock")
			return
		}
		c.clock = clk
	}
}

// WithObserver registers o to be told about every finished event and every
// pause, for metrics. Observer methods run on the pipeline's goroutines and
// must be fast. It may be given more than once; every observer is told.
func WithObserver(o Observer) Option {
	return func(c *config) {
		if o == nil {
			c.invalid("WithObserver(nil)", "the observer is nil", "")
			return
		}
		c.observers = append(c.observers, o)
	}
}
