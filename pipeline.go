package sluice

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"reflect"
	"runtime/debug"
	"strings"
	"sync"
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

// New builds a pipeline from src, enr and sink. The source must implement
// [Acker] unless [WithAcker] is given, and a dead-letter writer must be
// available: either sink implements [DeadLetterWriter] or [WithDeadLetter]
// names one. Bad options are all reported at once, each matching
// [ErrInvalidConfig].
func New(src Source, enr Enricher, sink Sink, opts ...Option) (*Pipeline, error) {
	cfg := defaultConfig()
	for _, o := range opts {
		o(&cfg)
	}
	if src == nil {
		cfg.invalid("source is nil")
	}
	if enr == nil {
		cfg.invalid("enricher is nil")
	}
	if sink == nil {
		cfg.invalid("sink is nil")
	}
	if cfg.acker == nil {
		if a, ok := src.(Acker); ok {
			cfg.acker = a
		} else if src != nil {
			cfg.invalid("source %T does not implement Acker; pass WithAcker", src)
		}
	}
	if cfg.deadLetter == nil {
		if w, ok := sink.(DeadLetterWriter); ok {
			cfg.deadLetter = w
		} else if sink != nil {
			cfg.invalid("sink %T does not implement DeadLetterWriter; pass WithDeadLetter so that failed events have somewhere to go", sink)
		}
	}
	var batch BatchEnricher
	if cfg.batchSize > 1 {
		b, ok := enr.(BatchEnricher)
		if !ok && enr != nil {
			cfg.invalid("WithBatchSize(%d) needs an enricher that implements BatchEnricher; %T does not", cfg.batchSize, enr)
		}
		batch = b
	}
	minWindow := cfg.concurrency * cfg.batchSize
	if cfg.maxInFlight == 0 {
		cfg.maxInFlight = max(4*minWindow, 64)
	} else if cfg.maxInFlight < minWindow {
		cfg.invalid("WithMaxInFlight(%d) is below concurrency × batch size (%d): workers would sit idle", cfg.maxInFlight, minWindow)
	}
	if cfg.maxDeliveries == -2 {
		cfg.maxDeliveries = cfg.retries + 1
	}
	if len(cfg.errs) > 0 {
		return nil, errors.Join(cfg.errs...)
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
	return p, nil
}

// Stats returns a snapshot of the pipeline's counters.
func (p *Pipeline) Stats() Stats {
	st := p.stats.snapshot(p.clock.Now(), p.cfg.statsWindow)
	st.State = p.State()
	if st.State != StatePaused {
		st.PausedUntil = time.Time{}
	}
	return st
}

// State returns the pipeline's life-cycle state.
func (p *Pipeline) State() State { return p.state.Load().(State) }

// Source returns the pipeline's source, for health checks.
func (p *Pipeline) Source() Source { return p.src }

// Sink returns the pipeline's sink, for health checks.
func (p *Pipeline) Sink() Sink { return p.sink }

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
	r := newRun(p)
	err := r.run(ctx)
	if err != nil {
		p.stats.mu.Lock()
		p.stats.err = err.Error()
		p.stats.mu.Unlock()
	}
	p.state.Store(StateStopped)
	return err
}

// kind is where an item stands after a step.
type kind uint8

const (
	kEnriched  kind = iota // out is ready for the sink
	kDead                  // goes to the dead-letter writer
	kFailed                // enrichment failed; the scheduler decides
	kAbandoned             // shutting down; left unacked
	kFatalDLQ              // the dead-letter writer refused it for good
)

// item is one in-flight event.
type item struct {
	in       *Message
	out      *Message
	err      error
	reason   string
	attempts int
	first    time.Time
	latency  time.Duration
	retryAt  time.Time
	kind     kind
	keyed    bool        // holds its key's turn, when ordering by key
	grp      *fetchGroup // the fetch it came in, for the oldest-event age
}

// fetchGroup is the events of one fetch still in the pipeline. The
// scheduler keeps groups in fetch order, so the first one with events left
// holds the oldest unfinished event.
type fetchGroup struct {
	at   int64 // clock time of the fetch, UnixNano
	left int
}

// keyQueue holds the events waiting behind the one in flight for a key.
type keyQueue struct{ waiting []*item }

// run is one execution of a pipeline. The scheduler goroutine (run.run)
// owns all fields without atomics; workers and writers only touch their
// channels, the gate and the atomics.
type run struct {
	p *Pipeline

	work    chan *item
	results chan *item
	write   chan *item
	written chan []*item
	fetched chan []*Message

	win       *window
	gate      gate
	stopping  atomic.Bool
	patient   atomic.Bool  // while stopping: still finish events already started
	lastOK    atomic.Int64 // clock time (UnixNano) of the latest successful enrichment
	spread    atomic.Int64 // jitter window of the latest pause, for resuming workers
	resumedAt atomic.Int64 // clock time (UnixNano) of the latest resume

	workCtx     context.Context // enrichment; cancelled at the drain deadline
	cancelWork  context.CancelFunc
	writeCtx    context.Context // sink, dead letters, acks
	cancelWrite context.CancelFunc

	pool sync.Pool
	rnd  *rand.Rand // scheduler only

	// scheduler state
	outstanding int
	retries     retryHeap
	keys        map[string]*keyQueue
	stopErr     error
	isStopping  bool
	pausedUntil time.Time
	limitedFrom time.Time       // start of the current rate-limit streak
	lastRL      *RateLimitError // the streak's latest refusal
	resume      Timer
	retryTimer  Timer
	retryTimeAt time.Time
	drain       Timer
	drainAt     time.Time
	lats        []time.Duration
	groups      []*fetchGroup // fetches with events left, oldest first
}

func newRun(p *Pipeline) *run {
	w := p.cfg.maxInFlight
	r := &run{
		p:       p,
		work:    make(chan *item, w),
		results: make(chan *item, w),
		write:   make(chan *item, w),
		written: make(chan []*item, w),
		fetched: make(chan []*Message), // unbuffered: a batch is taken before the fetcher can report its end
		win:     newWindow(w),
		rnd:     rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64())),
	}
	r.pool.New = func() any { return new(item) }
	if p.cfg.keyOrdering {
		r.keys = make(map[string]*keyQueue)
	}
	return r
}

func (r *run) run(ctx context.Context) error {
	p := r.p
	base := context.WithoutCancel(ctx)
	r.workCtx, r.cancelWork = context.WithCancel(base)
	r.writeCtx, r.cancelWrite = context.WithCancel(base)
	defer r.cancelWork()
	defer r.cancelWrite()

	fetchCtx, cancelFetch := context.WithCancel(ctx)
	defer cancelFetch()
	fetcherDone := make(chan struct{})
	var fetchErr error
	go func() {
		defer close(fetcherDone)
		fetchErr = r.fetch(fetchCtx)
	}()

	var workers, writers sync.WaitGroup
	for range p.cfg.concurrency {
		workers.Add(1)
		go func() { defer workers.Done(); r.worker() }()
	}
	for range p.cfg.writers {
		writers.Add(1)
		go func() { defer writers.Done(); r.writer() }()
	}
	p.state.Store(StateRunning)
	p.log.Info("sluice: pipeline running",
		"concurrency", p.cfg.concurrency, "max_in_flight", p.cfg.maxInFlight, "retries", p.cfg.retries)

	ctxDone := ctx.Done()
	fetchOpen := true
	// Done once the fetcher has exited (source ended, stop, or error) and
	// every fetched event is acked or abandoned.
	for fetchOpen || r.outstanding > 0 {
		var resumeC, retryC, drainC <-chan time.Time
		if r.resume != nil {
			resumeC = r.resume.C()
		}
		if r.retryTimer != nil {
			retryC = r.retryTimer.C()
		}
		if r.drain != nil {
			drainC = r.drain.C()
		}
		select {
		case msgs := <-r.fetched:
			r.onFetched(msgs)
		case it := <-r.results:
			r.onResult(it)
		case batch := <-r.written:
			r.onWritten(batch)
		case <-resumeC:
			r.onResume()
		case <-retryC:
			r.onRetryTimer()
		case <-drainC:
			r.drain = nil
			n := r.outstanding
			p.log.Warn("sluice: drain timeout reached; cancelling in-flight work, unfinished events stay unacked", "unfinished", n)
			r.cancelWork()
			r.cancelWrite()
			r.hurry()
		case <-ctxDone:
			ctxDone = nil
			r.beginStop(nil)
		case <-fetcherDone:
			fetcherDone = nil
			fetchOpen = false
			if fetchErr != nil && !errors.Is(fetchErr, ErrSourceClosed) && ctx.Err() == nil {
				r.beginStop(fmt.Errorf("sluice: fetch: %w", fetchErr))
			}
		}
		if r.isStopping {
			cancelFetch()
		}
	}
	close(r.work)
	workers.Wait()
	close(r.write)
	writers.Wait()
	r.stopTimers()
	p.stats.inFlight.Store(0)
	p.stats.oldestNs.Store(0)
	r.gate.release()
	p.state.Store(StateStopping)

	// Make what was acked durable (for example commit offsets).
	fctx, cancel := context.WithTimeout(base, p.cfg.drainTimeout)
	defer cancel()
	for _, f := range distinct(p.acker, p.sink, p.dlq) {
		if fl, ok := f.(Flusher); ok {
			if err := fl.Flush(fctx); err != nil {
				p.log.Error("sluice: flush on shutdown failed; some finished events may be delivered again", "component", fmt.Sprintf("%T", f), "err", err)
			}
		}
	}
	if r.stopErr != nil {
		p.log.Error("sluice: pipeline stopped", "err", r.stopErr)
	} else {
		p.log.Info("sluice: pipeline stopped")
	}
	return r.stopErr
}

func (r *run) stopTimers() {
	for _, t := range []Timer{r.resume, r.retryTimer, r.drain} {
		if t != nil {
			t.Stop()
		}
	}
}

// beginStop stops fetching and dispatching. Queued work is abandoned;
// in-flight work gets the drain timeout to finish. The first error wins.
func (r *run) beginStop(err error) {
	if r.stopErr == nil {
		r.stopErr = err
	}
	if r.isStopping {
		if err != nil && r.patient.Load() {
			r.hurry() // an error during a graceful drain: stop waiting
		}
		return
	}
	r.isStopping = true
	r.patient.Store(err == nil)
	r.stopping.Store(true)
	r.p.state.Store(StateStopping)
	// Events queued behind a key never started: they are left for
	// redelivery.
	for _, q := range r.keys {
		for _, it := range q.waiting {
			r.finish(it)
		}
		q.waiting = nil
	}
	r.drainAt = r.p.clock.Now().Add(r.p.cfg.drainTimeout)
	r.drain = r.p.clock.NewTimer(r.p.cfg.drainTimeout)
	if err != nil {
		r.hurry()
	}
}

// hurry gives up on events that wait for a retry or a pause: after an error
// the pipeline stops without waiting for them; at the drain deadline too.
func (r *run) hurry() {
	r.patient.Store(false)
	r.gate.release() // gated workers see the stop and abandon their items
	for _, it := range r.retries {
		r.releaseKey(it)
		r.finish(it)
	}
	r.retries = r.retries[:0]
}

// finish forgets an item: it is either acked or abandoned.
func (r *run) finish(it *item) {
	r.outstanding--
	r.win.release(1)
	if g := it.grp; g != nil {
		g.left--
		r.dropFinishedGroups()
	}
	*it = item{}
	r.pool.Put(it)
}

// dropFinishedGroups forgets the fetches whose events have all left and
// publishes the fetch time of the oldest unfinished event.
func (r *run) dropFinishedGroups() {
	for len(r.groups) > 0 && r.groups[0].left == 0 {
		r.groups[0] = nil
		r.groups = r.groups[1:]
	}
	if len(r.groups) == 0 {
		r.p.stats.oldestNs.Store(0)
		return
	}
	r.p.stats.oldestNs.Store(r.groups[0].at)
}

func (r *run) onFetched(msgs []*Message) {
	p := r.p
	p.stats.received.Add(uint64(len(msgs)))
	if r.isStopping { // fetched as the stop began: left for redelivery
		r.win.release(len(msgs))
		return
	}
	r.outstanding += len(msgs)
	g := &fetchGroup{at: p.clock.Now().UnixNano(), left: len(msgs)}
	r.groups = append(r.groups, g)
	if len(r.groups) == 1 {
		p.stats.oldestNs.Store(g.at)
	}
	for _, m := range msgs {
		it := r.pool.Get().(*item)
		it.in = m
		it.grp = g
		if m.Err != nil {
			it.kind = kDead
			it.err = Permanent(m.Err)
			it.reason = reasonOf(fmt.Errorf("source could not decode the event: %w", m.Err))
		} else if lim := p.cfg.maxDeliveries; lim > 0 && m.Deliveries > lim {
			it.kind = kDead
			it.reason = fmt.Sprintf("delivered %d times, more than the limit of %d: the event failed or crashed its consumer every time", m.Deliveries, lim)
			it.err = Permanent(errors.New(it.reason))
		}
		if r.keys != nil && m.Key != nil {
			it.keyed = true
			if q, ok := r.keys[string(m.Key)]; ok {
				q.waiting = append(q.waiting, it)
				continue
			}
			r.keys[string(m.Key)] = &keyQueue{}
		}
		r.dispatch(it)
	}
	p.stats.inFlight.Store(int64(r.outstanding))
}

// dispatch hands an item to the workers, or straight to the writers when it
// is already decided. Channels have room for every in-flight item, so this
// never blocks.
func (r *run) dispatch(it *item) {
	if it.kind == kDead {
		r.write <- it
		return
	}
	it.kind = kFailed
	r.work <- it
}

func (r *run) onResult(it *item) {
	p := r.p
	if it.kind == kAbandoned || (r.isStopping && !r.patient.Load()) {
		r.releaseKey(it)
		r.finish(it)
		return
	}
	err := it.err
	var rl *RateLimitError
	switch {
	case errors.Is(err, ErrFatal):
		p.log.Error("sluice: fatal enrichment error; stopping", "origin", it.in.Origin.String(), "err", err)
		r.beginStop(fmt.Errorf("sluice: enricher: %w", err))
		r.releaseKey(it)
		r.finish(it)
		return
	case errors.Is(err, ErrPermanent):
		r.limitedFrom = time.Time{}
		r.deadLetter(it, err)
	case errors.As(err, &rl):
		r.onRateLimited(it, rl)
	default:
		r.limitedFrom = time.Time{}
		if it.attempts > p.cfg.retries {
			r.deadLetter(it, fmt.Errorf("gave up after %d attempts: %w", it.attempts, err))
			return
		}
		p.stats.retried.Add(1)
		if o := p.cfg.observer; o != nil {
			o.Retried()
		}
		d := r.backoff(it.attempts)
		p.log.Debug("sluice: enrichment failed; will retry", "origin", it.in.Origin.String(), "attempt", it.attempts, "backoff", d, "err", err)
		if d <= 0 {
			r.dispatch(it)
			return
		}
		it.retryAt = p.clock.Now().Add(d)
		if r.isStopping && it.retryAt.After(r.drainAt) {
			r.releaseKey(it) // the retry would come after the drain deadline
			r.finish(it)
			return
		}
		r.retries.push(it)
		r.armRetry()
	}
}

func (r *run) deadLetter(it *item, err error) {
	it.kind = kDead
	it.err = err
	it.reason = reasonOf(err)
	r.write <- it
}

func reasonOf(err error) string {
	s := strings.Join(strings.Fields(err.Error()), " ")
	return truncateReason(s)
}

func (r *run) backoff(attempt int) time.Duration {
	base, ceil := r.p.cfg.backoffBase, r.p.cfg.backoffMax
	if base <= 0 {
		return 0
	}
	d := base
	for i := 1; i < attempt && d < ceil; i++ {
		d *= 2
	}
	d = min(d, ceil)
	return time.Duration(r.rnd.Int64N(int64(d)) + 1)
}

func (r *run) onRateLimited(it *item, rl *RateLimitError) {
	p := r.p
	now := p.clock.Now()
	p.stats.rateLimited.Add(1)
	if r.limitedFrom.IsZero() || r.lastOK.Load() >= r.limitedFrom.UnixNano() {
		r.limitedFrom = now // a call succeeded since the streak began
	}
	r.lastRL = rl
	if r.stopIfLimitedTooLong(now) {
		r.releaseKey(it)
		r.finish(it)
		return
	}
	// The event goes back to the queue without spending its retry budget.
	// It is queued last: once a worker has it, the scheduler must not touch it.
	defer func() { r.work <- it }()
	it.attempts--
	pause := pauseFor(rl, p.cfg.defaultRetryAfter, p.cfg.pauseJitter, r.rnd)
	// A pause never outlasts the rate-limit deadline: if the server asks for
	// longer, the pipeline resumes at the deadline only to stop there (see
	// onResume), without another call.
	if left := r.limitedFrom.Add(p.cfg.maxRateLimited).Sub(now); pause > left {
		pause = left
	}
	until := now.Add(pause)
	if !until.After(r.pausedUntil) {
		return
	}
	wasPaused := r.resume != nil
	r.pausedUntil = until
	ra := rl.RetryAfter
	if ra <= 0 {
		ra = p.cfg.defaultRetryAfter
	}
	r.spread.Store(int64(jitterWindow(ra, p.cfg.pauseJitter)))
	p.stats.mu.Lock()
	p.stats.paused = until
	p.stats.mu.Unlock()
	if !wasPaused {
		p.stats.pauses.Add(1)
		if o := p.cfg.observer; o != nil {
			o.RateLimited(pause)
		}
		p.log.Warn("sluice: rate limited; pausing consumption", "pause", pause, "origin", it.in.Origin.String(), "err", rl)
		r.gate.close()
		p.state.Store(StatePaused)
		if ps, ok := p.src.(Pauser); ok {
			ps.Pause()
		}
	} else {
		r.resume.Stop()
	}
	// Armed last, so that a test that sees the timer sees the pause too.
	r.resume = p.clock.NewTimer(until.Sub(now))
}

// stopIfLimitedTooLong stops the pipeline with [ErrRateLimited] once rate
// limiting has gone on for the maximum duration without a single
// successful call, and reports whether it did.
func (r *run) stopIfLimitedTooLong(now time.Time) bool {
	if r.limitedFrom.IsZero() || r.lastOK.Load() >= r.limitedFrom.UnixNano() {
		return false // not limited, or a call succeeded since the streak began
	}
	limited := now.Sub(r.limitedFrom)
	if limited < r.p.cfg.maxRateLimited {
		return false
	}
	r.beginStop(fmt.Errorf("%w: every model call for %s was refused for rate limits (last: %v); consumption stopped",
		ErrRateLimited, limited.Round(time.Millisecond), r.lastRL))
	return true
}

func (r *run) onResume() {
	p := r.p
	r.resume = nil
	r.pausedUntil = time.Time{}
	if r.stopIfLimitedTooLong(p.clock.Now()) {
		return // the events waiting for the pause stay unacked
	}
	if ps, ok := p.src.(Pauser); ok {
		ps.Resume()
	}
	r.resumedAt.Store(p.clock.Now().UnixNano()) // before the gate opens
	p.log.Info("sluice: resuming consumption after rate-limit pause")
	if !r.isStopping {
		p.state.Store(StateRunning)
	}
	r.gate.release()
}

func (r *run) armRetry() {
	next := r.retries.peek()
	if next == nil {
		return
	}
	if r.retryTimer != nil {
		if r.retryTimeAt.Equal(next.retryAt) {
			return
		}
		r.retryTimer.Stop()
	}
	r.retryTimeAt = next.retryAt
	r.retryTimer = r.p.clock.NewTimer(next.retryAt.Sub(r.p.clock.Now()))
}

func (r *run) onRetryTimer() {
	r.retryTimer = nil
	now := r.p.clock.Now()
	for {
		it := r.retries.peek()
		if it == nil || it.retryAt.After(now) {
			break
		}
		r.retries.pop()
		r.dispatch(it)
	}
	r.armRetry()
}

func (r *run) onWritten(batch []*item) {
	p := r.p
	var enriched, dead uint64
	lats := r.lats[:0]
	var fatal error
	for _, it := range batch {
		switch it.kind {
		case kEnriched:
			enriched++
			lats = append(lats, it.latency)
		case kDead:
			dead++
		case kFatalDLQ:
			fatal = fmt.Errorf("%w: dead-letter writer refused event %s: %w", ErrFatal, it.in.Origin.String(), it.err)
		}
	}
	if enriched+dead > 0 {
		p.stats.record(p.clock.Now(), enriched, dead, lats)
	}
	r.lats = lats
	obs := p.cfg.observer
	for _, it := range batch {
		if obs != nil && (it.kind == kEnriched || it.kind == kDead) {
			out := OutcomeEnriched
			if it.kind == kDead {
				out = OutcomeDeadLettered
			}
			obs.EventDone(out, it.latency)
		}
		r.releaseKey(it)
		r.finish(it)
	}
	p.stats.inFlight.Store(int64(r.outstanding))
	if fatal != nil {
		r.beginStop(fatal)
	}
}

// releaseKey lets the next event with the same key go. It is called once
// for every event, when it leaves the pipeline.
func (r *run) releaseKey(it *item) {
	if !it.keyed {
		return
	}
	q := r.keys[string(it.in.Key)]
	if q == nil {
		return
	}
	if len(q.waiting) == 0 || r.isStopping {
		delete(r.keys, string(it.in.Key))
		return
	}
	next := q.waiting[0]
	q.waiting[0] = nil
	q.waiting = q.waiting[1:]
	r.dispatch(next)
}

// fetch runs on its own goroutine: it takes window slots, fetches, and hands
// batches to the scheduler.
func (r *run) fetch(ctx context.Context) error {
	p := r.p
	done := ctx.Done()
	for {
		if !r.gate.wait(done) {
			return ctx.Err()
		}
		n, err := r.win.acquire(ctx, p.cfg.fetchBatch)
		if err != nil {
			return err
		}
		if !r.gate.wait(done) { // a pause may have begun while we waited for room
			r.win.release(n)
			return ctx.Err()
		}
		msgs, err := p.src.Fetch(ctx, n)
		if len(msgs) < n {
			r.win.release(n - len(msgs))
		}
		if len(msgs) > 0 {
			select {
			case r.fetched <- msgs:
			case <-done:
				r.win.release(len(msgs))
				return ctx.Err()
			}
		}
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return err
		}
	}
}

func (r *run) worker() {
	p := r.p
	size := p.cfg.batchSize
	batch := make([]*item, 0, size)
	var staggered int64 // the resume this worker last spread itself out for
	for it := range r.work {
		batch = append(batch[:0], it)
	more:
		for len(batch) < size {
			select {
			case it, ok := <-r.work:
				if !ok {
					break more
				}
				batch = append(batch, it)
			default:
				break more
			}
		}
		if batch = r.keepStarted(batch); len(batch) == 0 {
			continue
		}
		if !r.passGate(&staggered) {
			r.abandon(batch)
			continue
		}
		if batch = r.keepStarted(batch); len(batch) == 0 {
			continue
		}
		if err := p.lim.wait(r.workCtx); err != nil {
			r.abandon(batch)
			continue
		}
		if len(batch) == 1 || p.batch == nil {
			for _, it := range batch {
				r.enrichOne(it)
			}
		} else {
			r.enrichBatch(batch)
		}
		for _, it := range batch {
			r.route(it)
		}
	}
}

// passGate waits out a rate-limit pause. Then each worker, the first time it
// passes the gate within a pause's jitter window after the resume, waits a
// random part of that window before it calls the model, and checks the gate
// again: workers resume spread out rather than all at once, so that when the
// limit is still tight the first refusal closes the gate before most of them
// have sent a request. staggered is the worker's memory of the last resume
// it spread itself out for.
func (r *run) passGate(staggered *int64) bool {
	done := r.workCtx.Done()
	for {
		if !r.gate.wait(done) {
			return false
		}
		resumed := r.resumedAt.Load()
		if resumed == 0 || *staggered == resumed || r.stopping.Load() {
			return true
		}
		*staggered = resumed
		spread := r.spread.Load()
		if spread <= 0 || r.p.clock.Now().UnixNano() >= resumed+spread {
			return true
		}
		if !sleep(r.p.clock, time.Duration(rand.Int64N(spread)), done) {
			return false
		}
	}
}

// keepStarted, once the pipeline is stopping, abandons the events of batch
// that never started, and all of them unless the stop is graceful; it
// returns the events to carry on with.
func (r *run) keepStarted(batch []*item) []*item {
	if !r.stopping.Load() {
		return batch
	}
	patient := r.patient.Load()
	keep := batch[:0]
	for _, it := range batch {
		if patient && !it.first.IsZero() {
			keep = append(keep, it)
			continue
		}
		it.kind = kAbandoned
		r.results <- it
	}
	return keep
}

func (r *run) abandon(batch []*item) {
	for _, it := range batch {
		it.kind = kAbandoned
		r.results <- it
	}
}

// route sends a finished enrichment to the writers, or back to the
// scheduler when it needs a decision.
func (r *run) route(it *item) {
	if it.kind == kFailed && r.workCtx.Err() != nil {
		it.kind = kAbandoned // failed because we are shutting down
	}
	if it.kind == kEnriched {
		r.write <- it
		return
	}
	r.results <- it
}

func (r *run) start(it *item) {
	now := r.p.clock.Now()
	if it.first.IsZero() {
		it.first = now
	}
	it.attempts++
}

func (r *run) enrichOne(it *item) {
	r.start(it)
	out, err := r.safeEnrich(it.in)
	r.settle(it, out, err)
}

func (r *run) settle(it *item, out *Message, err error) {
	if err == nil && out == nil {
		err = Permanent(errors.New("enricher returned neither a message nor an error"))
	}
	if err != nil {
		it.kind = kFailed
		it.err = err
		return
	}
	out.Origin = it.in.Origin
	out.Token = it.in.Token
	it.out = out
	it.kind = kEnriched
	now := r.p.clock.Now()
	it.latency = now.Sub(it.first)
	r.lastOK.Store(now.UnixNano())
}

func (r *run) safeEnrich(in *Message) (out *Message, err error) {
	defer func() {
		if v := recover(); v != nil {
			out, err = nil, &PanicError{Value: v, Stack: debug.Stack()}
			r.p.log.Error("sluice: enricher panicked; dead-lettering the event", "origin", in.Origin.String(), "panic", v)
		}
	}()
	return r.p.enr.Enrich(r.workCtx, in)
}

func (r *run) enrichBatch(batch []*item) {
	ins := make([]*Message, len(batch))
	for i, it := range batch {
		r.start(it)
		ins[i] = it.in
	}
	res, err := r.safeBatch(ins)
	var pe *PanicError
	if errors.As(err, &pe) {
		// One event may have made the whole batch panic: enrich them one by
		// one so that only the poison event is dead-lettered. This does not
		// count as another attempt.
		for _, it := range batch {
			out, err := r.safeEnrich(it.in)
			r.settle(it, out, err)
		}
		return
	}
	for i, it := range batch {
		switch {
		case err != nil:
			r.settle(it, nil, err)
		case i < len(res):
			r.settle(it, res[i].Msg, res[i].Err)
		default:
			r.settle(it, nil, fmt.Errorf("batch enricher returned %d results for %d events", len(res), len(batch)))
		}
	}
}

func (r *run) safeBatch(ins []*Message) (res []Result, err error) {
	defer func() {
		if v := recover(); v != nil {
			res, err = nil, &PanicError{Value: v, Stack: debug.Stack()}
			r.p.log.Error("sluice: batch enricher panicked; enriching the batch's events one at a time", "events", len(ins), "panic", v)
		}
	}()
	return r.p.batch.EnrichBatch(r.workCtx, ins), nil
}

// distinct returns parts without repeats, so that a sink that is also the
// dead-letter writer (or a source that is also the acker) is flushed or
// probed once. Values of types that cannot be compared count as distinct.
func distinct(parts ...any) []any {
	out := make([]any, 0, len(parts))
next:
	for _, p := range parts {
		if t := reflect.TypeOf(p); t != nil && t.Comparable() {
			for _, q := range out {
				if reflect.TypeOf(q) == t && q == p {
					continue next
				}
			}
		}
		out = append(out, p)
	}
	return out
}
