package sluice

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"
)

// Pipeline consumes events from a [Source], enriches them with an
// [Enricher], writes them to a [Sink] (or a [DeadLetterWriter]) and acks them
// through an [Acker]. Create one with [New] and start it with [Pipeline.Run].
// The methods of a Pipeline are safe for concurrent use.
type Pipeline struct {
	cfg   config
	src   Source
	enr   Enricher
	batch BatchEnricher
	sink  Sink
	acker Acker
	dlq   DeadLetterWriter
	log   *slog.Logger
	clock Clock
	lim   *limiter
	stats *stats

	state    atomic.Value // State
	started  atomic.Bool
	lagCache lagCache
}

// New builds a pipeline from src, enr and sink. The acker is the sink when
// it implements [AsyncAcker] (it commits outputs and positions together),
// else the source, which must then implement [Acker] unless [WithAcker] is
// given; and a dead-letter writer must be available: either sink
// implements [DeadLetterWriter] or [WithDeadLetter] names one. Bad options are all reported at once, each matching
// [ErrInvalidConfig].
func New(src Source, enr Enricher, sink Sink, opts ...Option) (*Pipeline, error) {
	cfg := defaultConfig()
	for _, o := range opts {
		o(&cfg)
	}
	if src == nil {
		cfg.invalid("New(src)", "the source is nil", "")
	}
	if enr == nil {
		cfg.invalid("New(enr)", "the enricher is nil", "")
	}
	if sink == nil {
		cfg.invalid("New(sink)", "the sink is nil", "")
	}
	if cfg.acker == nil {
		if a, ok := sink.(AsyncAcker); ok {
			// A sink that commits what it writes together with the
			// consumed positions (a transactional sink) is the acker.
			cfg.acker = a
		} else if a, ok := src.(Acker); ok {
			cfg.acker = a
		} else if src != nil {
			cfg.invalid("New(src)", fmt.Sprintf("source %T does not implement Acker", src), "pass WithAcker")
		}
	}
	if cfg.deadLetter == nil {
		if w, ok := sink.(DeadLetterWriter); ok {
			cfg.deadLetter = w
		} else if sink != nil {
			cfg.invalid("New(sink)", fmt.Sprintf("sink %T does not implement DeadLetterWriter", sink), "pass WithDeadLetter so that failed events have somewhere to go")
		}
	}
	var batch BatchEnricher
	if cfg.enrichBatch > 1 {
		b, ok := enr.(BatchEnricher)
		if !ok && enr != nil {
			cfg.invalid(fmt.Sprintf("WithEnrichBatch(%d)", cfg.enrichBatch), fmt.Sprintf("needs an enricher that implements BatchEnricher; %T does not", enr), "leave the option out")
		}
		batch = b
	}
	minWindow := cfg.concurrency * cfg.enrichBatch
	if cfg.maxInFlight == 0 {
		cfg.windowMin = max(4*minWindow, 64)
		cfg.windowMax = max(windowMaxCount, cfg.windowMin)
	} else if cfg.maxInFlight < minWindow {
		cfg.invalid(fmt.Sprintf("WithMaxInFlight(%d)", cfg.maxInFlight), fmt.Sprintf("below concurrency × enricher batch (%d): workers would sit idle", minWindow), "raise it or lower WithConcurrency")
	}
	if cfg.maxInFlight > 0 {
		cfg.windowMin, cfg.windowMax = cfg.maxInFlight, cfg.maxInFlight
	}
	if cfg.maxDeliveries == -2 {
		cfg.maxDeliveries = cfg.retries + 1
	}
	if err := cfg.errs.Err(); err != nil {
		return nil, err
	}
	if cfg.logger == nil {
		cfg.logger = slog.Default()
	}
	p := &Pipeline{
		cfg:   cfg,
		src:   src,
		enr:   enr,
		batch: batch,
		sink:  sink,
		acker: cfg.acker,
		dlq:   cfg.deadLetter,
		log:   cfg.logger,
		clock: cfg.clock,
		lim:   newLimiter(cfg.rateLimit, cfg.rateBurst, cfg.clock),
		stats: newStats(cfg.statsWindow),
	}
	p.state.Store(StateStarting)
	for _, o := range cfg.observers {
		if a, ok := o.(interface{ Attach(*Pipeline) error }); ok {
			if err := a.Attach(p); err != nil {
				return nil, fmt.Errorf("%w: observer %T: %w", ErrInvalidConfig, o, err)
			}
		}
	}
	return p, nil
}

// Stats returns a snapshot of the pipeline's counters.
func (p *Pipeline) Stats() Stats {
	st := p.stats.snapshot(p.clock.Now(), p.cfg.statsWindow)
	st.State = p.State()
	if st.State != StatePaused {
		st.PausedUntil, st.PauseReason = time.Time{}, ""
	}
	return st
}

// State returns the pipeline's life-cycle state.
func (p *Pipeline) State() State { return p.state.Load().(State) }

var errAlreadyRan = errors.New("sluice: Pipeline.Run called twice; build a new Pipeline")

// Run consumes and enriches events until ctx is cancelled, the source ends,
// or an error stops the pipeline. On the way out it stops fetching, lets
// in-flight events finish within the drain timeout, writes and acks what
// completed, and flushes the acker and sink. Events it could not finish are
// left unacked for the broker to deliver again.
//
// Run returns nil after a cancellation or the end of the source. It returns
// an error matching [ErrRateLimited] when rate limiting lasted too long, one
// matching [ErrFatal] when the enricher reported a fatal error, and a wrapped
// source error when fetching failed. Run may be called once.
func (p *Pipeline) Run(ctx context.Context) error {
	if !p.started.CompareAndSwap(false, true) {
		return errAlreadyRan
	}
	err := newRunner(p).run(ctx)
	if err != nil {
		p.stats.setErr(err)
	}
	p.state.Store(StateStopped)
	return err
}
