package sluice

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"sync"
	"sync/atomic"
	"time"
)

// runner is one execution of a pipeline: [Pipeline.Run] makes one and
// calls run. The event's path is
//
//	fetch.go   the fetcher takes window slots and fetches batches
//	runner.go  the runner hands each event to the workers (or straight to
//	           the writers), and decides what happens after a failure
//	chunk.go   events reach the workers one at a time, or in chunks while
//	           enrichment is fast
//	worker.go  workers wait out pauses, call the enricher, and route results
//	retry.go   failed events wait out a backoff, then go back to the workers
//	gate.go    a rate limit closes the gate and pauses the source
//	writer.go  writers write outputs and dead letters, then ack
//
// and back to the runner, which retires the event and frees its slot.
//
// The runner's goroutine owns every field not marked otherwise; workers and
// writers only use their channels, the gate, the window, and the atomics.
type runner struct {
	p *Pipeline

	fetched chan []*Message // fetcher → runner; unbuffered, so a batch is taken before the fetcher can report its end
	work    chan *chunk     // runner → workers (see chunk.go)
	results chan *item      // workers → runner: failures and abandoned events
	write   chan []*item    // runner and workers → writers
	written chan []*item    // writers → runner

	win   *window
	async AsyncAcker // the acker, when it settles acks later
	ctl   *windowCtl // nil when WithMaxInFlight pins the window
	gate  gate

	// Shared with workers and writers.
	mode      atomic.Int32  // a stopMode
	lastOK    atomic.Int64  // clock time (UnixNano) of the latest successful enrichment
	okCount   atomic.Uint64 // successful enrichments so far, for the breaker
	fast      atomic.Bool   // the latest chunk took under fastEnrich per event
	spread    atomic.Int64  // jitter window of the latest pause, for resuming workers
	resumedAt atomic.Int64  // clock time (UnixNano) of the latest resume

	workCtx     context.Context // enrichment; cancelled at the drain deadline
	cancelWork  context.CancelFunc
	writeCtx    context.Context // sink, dead letters, acks; cancelled at the drain deadline
	cancelWrite context.CancelFunc

	pool sync.Pool
	rnd  *rand.Rand

	outstanding int // events fetched and not yet retired
	groups      []*fetchGroup
	keys        map[string]*keyQueue // with key ordering
	retries     retryHeap
	retryTimer  Timer
	retryTimeAt time.Time
	pausedUntil time.Time
	resume      Timer
	limitedFrom time.Time       // start of the current rate-limit streak
	lastRL      *RateLimitError // the streak's latest refusal
	brk         breaker
	drain       Timer
	drainAt     time.Time
	stopErr     error
	lats        []time.Duration // scratch for onWritten
	queued      []*item         // scratch for onFetched
	tracers     []EventTracer   // the observers that trace events; nil when none does
}

// stopMode says how far the runner is from stopping.
type stopMode int32

const (
	running  stopMode = iota
	draining          // no new work; events already started may finish before the drain deadline
	hurrying          // every event not yet written is abandoned
)

func newRunner(p *Pipeline) *runner {
	w := p.cfg.windowMax
	r := &runner{
		p:       p,
		fetched: make(chan []*Message),
		work:    make(chan *chunk, 2*w+2*p.cfg.concurrency), // every channel holds the whole window: sends never block (see chunk.offer)
		results: make(chan *item, w),
		write:   make(chan []*item, w),
		written: make(chan []*item, w),
		win:     newWindow(p.cfg.windowMin),
		rnd:     rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64())),
		tracers: tracers(p.cfg.observers),
	}
	r.pool.New = func() any { return new(item) }
	r.async, _ = p.acker.(AsyncAcker)
	if p.cfg.windowMin < p.cfg.windowMax {
		r.ctl = newWindowCtl(p.cfg.windowMin, p.cfg.windowMax)
	}
	if p.cfg.keyOrdering {
		r.keys = make(map[string]*keyQueue)
	}
	return r
}

func (r *runner) stopMode() stopMode { return stopMode(r.mode.Load()) }

// stopping reports whether a stop has begun.
func (r *runner) stopping() bool { return r.stopMode() != running }

// run starts the fetcher, workers and writers, runs the loop until every
// fetched event is retired, and tears down.
func (r *runner) run(ctx context.Context) error {
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
		workers.Go(r.worker)
	}
	for range p.cfg.writers {
		writers.Go(r.writer)
	}
	p.state.Store(StateRunning)
	p.log.Info("sluice: pipeline running",
		"concurrency", p.cfg.concurrency, "window_min", p.cfg.windowMin, "window_max", p.cfg.windowMax, "retries", p.cfg.retries)

	r.loop(ctx, fetcherDone, &fetchErr, cancelFetch)

	close(r.work)
	workers.Wait()
	close(r.write)
	writers.Wait()
	r.stopTimers()
	p.stats.inFlight.Store(0)
	p.stats.oldestNs.Store(0)
	r.gate.open()
	p.state.Store(StateStopping)
	r.flush(base)
	if r.stopErr != nil {
		p.log.Error("sluice: pipeline stopped", "err", r.stopErr)
	} else {
		p.log.Info("sluice: pipeline stopped")
	}
	return r.stopErr
}

// loop handles every event of the run until the fetcher has exited (the
// source ended, a stop, or an error) and every fetched event is retired.
func (r *runner) loop(ctx context.Context, fetcherDone <-chan struct{}, fetchErr *error, cancelFetch context.CancelFunc) {
	ctxDone := ctx.Done()
	for fetcherDone != nil || r.outstanding > 0 {
		select {
		case msgs := <-r.fetched:
			r.onFetched(msgs)
		case it := <-r.results:
			r.onResult(it)
		case batch := <-r.written:
			r.onWritten(batch)
		case <-timerC(r.resume):
			r.onResume()
		case <-timerC(r.retryTimer):
			r.onRetryTimer()
		case <-timerC(r.drain):
			r.onDrainDeadline()
		case <-ctxDone:
			ctxDone = nil
			r.beginStop(nil)
		case <-fetcherDone:
			fetcherDone = nil
			if err := *fetchErr; err != nil && !errors.Is(err, ErrSourceClosed) && ctx.Err() == nil {
				r.beginStop(fmt.Errorf("sluice: fetch: %w", err))
			}
		}
		if r.stopping() {
			cancelFetch()
		}
	}
}

// timerC is t's channel, or nil (never ready) when there is no timer.
func timerC(t Timer) <-chan time.Time {
	if t == nil {
		return nil
	}
	return t.C()
}

// flush makes what was acked durable (for example, commits offsets).
func (r *runner) flush(base context.Context) {
	p := r.p
	d := p.cfg.flushTimeout
	if d == 0 {
		d = p.cfg.drainTimeout
	}
	ctx, cancel := context.WithTimeout(base, d)
	defer cancel()
	for _, f := range distinct(p.acker, p.sink, p.dlq) {
		if fl, ok := f.(Flusher); ok {
			if err := fl.Flush(ctx); err != nil {
				p.log.Error("sluice: flush on shutdown failed; some finished events may be delivered again", "component", fmt.Sprintf("%T", f), "err", err)
			}
		}
	}
}

func (r *runner) stopTimers() {
	for _, t := range []Timer{r.resume, r.retryTimer, r.drain} {
		if t != nil {
			t.Stop()
		}
	}
}

// beginStop stops fetching and dispatching. Events not yet started are
// abandoned; events already started get until the drain deadline, unless
// err says the stop is not graceful. The first error wins.
func (r *runner) beginStop(err error) {
	if r.stopErr == nil {
		r.stopErr = err
	}
	if r.stopping() {
		if err != nil && r.stopMode() == draining {
			r.hurry() // an error during a graceful drain: stop waiting
		}
		return
	}
	r.mode.Store(int32(draining))
	r.p.state.Store(StateStopping)
	r.abandonKeyQueues()
	r.drainAt = r.p.clock.Now().Add(r.p.cfg.drainTimeout)
	r.drain = r.p.clock.NewTimer(r.p.cfg.drainTimeout)
	if err != nil {
		r.hurry()
	}
}

// hurry gives up on every event not yet written: after an error the
// pipeline stops without waiting for retries or pauses; at the drain
// deadline too.
func (r *runner) hurry() {
	r.mode.Store(int32(hurrying))
	r.gate.open() // gated workers see the stop and abandon their events
	for _, it := range r.retries {
		r.retire(it)
	}
	r.retries = r.retries[:0]
}

func (r *runner) onDrainDeadline() {
	r.drain = nil
	r.p.log.Warn("sluice: drain timeout reached; cancelling in-flight work, unfinished events stay unacked", "unfinished", r.outstanding)
	r.cancelWork()
	r.cancelWrite()
	r.hurry()
}

func (r *runner) onFetched(msgs []*Message) {
	p := r.p
	p.stats.received.Add(uint64(len(msgs)))
	if r.stopping() { // fetched as the stop began: left for redelivery
		r.win.release(len(msgs))
		if r.async != nil {
			r.async.Abandon(msgs)
		}
		return
	}
	r.outstanding += len(msgs)
	now := p.clock.Now()
	if r.ctl != nil {
		var bytes int64
		for _, m := range msgs {
			bytes += msgBytes(m)
		}
		r.ctl.onFetched(now, len(msgs), bytes)
	}
	g := &fetchGroup{at: now.UnixNano(), left: len(msgs)}
	r.groups = append(r.groups, g)
	if len(r.groups) == 1 {
		p.stats.oldestNs.Store(g.at)
	}
	for _, m := range msgs {
		it := r.pool.Get().(*item)
		it.in = m
		it.grp = g
		if r.tracers != nil {
			r.traceReceived(it)
		}
		r.rejectEarly(it)
		if r.waitForKey(it) {
			continue
		}
		if it.status == statusDead {
			r.dispatch(it)
			continue
		}
		it.status = statusQueued
		r.queued = append(r.queued, it)
	}
	r.sendWork(r.queued)
	clear(r.queued)
	r.queued = r.queued[:0]
	p.stats.setInFlight(r.outstanding)
}

// rejectEarly marks for the dead letters an event that must not be
// enriched: one the source could not decode, or one delivered too often.
func (r *runner) rejectEarly(it *item) {
	m := it.in
	switch lim := r.p.cfg.maxDeliveries; {
	case m.Err != nil:
		it.status = statusDead
		it.err = Permanent(m.Err)
		it.reason = reasonOf(fmt.Errorf("source could not decode the event: %w", m.Err))
	case lim > 0 && m.Deliveries > lim:
		it.status = statusDead
		it.reason = fmt.Sprintf("delivered %d times, more than the limit of %d: the event failed or crashed its consumer every time", m.Deliveries, lim)
		it.err = Permanent(errors.New(it.reason))
	}
}

// dispatch hands an item to the workers, or straight to the writers when
// it is already decided. Channels have room for every in-flight item, so
// this never blocks.
func (r *runner) dispatch(it *item) {
	if it.status == statusDead {
		r.write <- []*item{it}
		return
	}
	it.status = statusQueued
	r.work <- single(it)
}

// onResult decides what happens to an event that a worker sent back: a
// failure, or an event abandoned during shutdown.
func (r *runner) onResult(it *item) {
	p := r.p
	if it.status == statusAbandoned || r.stopMode() == hurrying {
		r.retire(it)
		return
	}
	err := it.err
	var rl *RateLimitError
	var pe *PauseError
	var mis *MisconfiguredError
	switch {
	case errors.Is(err, ErrFatal):
		p.log.Error("sluice: fatal enrichment error; stopping", "origin", it.in.Origin.String(), "err", err)
		r.beginStop(fmt.Errorf("sluice: enricher: %w", err))
		r.retire(it)
	case errors.As(err, &mis):
		r.limitedFrom = time.Time{}
		r.onMisconfigured(it, mis)
	case errors.Is(err, ErrPermanent):
		r.limitedFrom = time.Time{}
		r.deadLetter(it, err)
	case errors.As(err, &rl):
		r.onRateLimited(it, rl)
	case errors.As(err, &pe):
		r.onPlannedPause(it, pe)
	default:
		r.limitedFrom = time.Time{}
		if it.attempts > p.cfg.retries {
			r.deadLetter(it, fmt.Errorf("gave up after %d attempts: %w", it.attempts, err))
			return
		}
		r.scheduleRetry(it)
	}
}

func (r *runner) deadLetter(it *item, err error) {
	it.status = statusDead
	it.err = err
	it.reason = reasonOf(err)
	r.write <- []*item{it}
}

// onWritten counts a batch the writers finished and retires its events.
func (r *runner) onWritten(batch []*item) {
	p := r.p
	var enriched, dead uint64
	lats := r.lats[:0]
	var fatal error
	for _, it := range batch {
		switch it.status {
		case statusEnriched:
			enriched++
			lats = append(lats, it.latency)
			it.acked = true
		case statusDead:
			dead++
			it.acked = true
		case statusRefused:
			fatal = fmt.Errorf("%w: %s refused event %s: %w", ErrFatal, it.refusedBy, it.in.Origin.String(), it.err)
		}
	}
	now := p.clock.Now()
	if enriched+dead > 0 {
		p.stats.record(now, enriched, dead, lats)
	}
	r.lats = lats
	obs := p.cfg.observers
	for _, it := range batch {
		if len(obs) > 0 && (it.status == statusEnriched || it.status == statusDead) {
			out := OutcomeEnriched
			if it.status == statusDead {
				out = OutcomeDeadLettered
			}
			for _, o := range obs {
				o.EventDone(out, it.latency)
			}
		}
		r.forget(it)
	}
	r.win.release(len(batch))
	r.dropFinishedGroups()
	p.stats.setInFlight(r.outstanding)
	if r.ctl != nil {
		if n, ok := r.ctl.retired(now, len(batch)); ok {
			r.win.setLimit(n)
		}
	}
	if fatal != nil {
		r.beginStop(fatal)
	}
}

// retire forgets an event that left the pipeline, acked or abandoned: it
// lets the next event with its key go, frees its window slot, and updates
// the oldest-event age.
func (r *runner) retire(it *item) {
	grp := it.grp
	r.forget(it)
	r.win.release(1)
	if grp != nil {
		r.dropFinishedGroups()
	}
}

// forget is retire but for the window slot and the oldest-event age, which
// a caller retiring a batch of events updates once for all of them.
func (r *runner) forget(it *item) {
	if it.traced {
		r.traceFinished(it)
	}
	if r.async != nil && it.status != statusEnriched && it.status != statusDead && !it.unsettled {
		r.async.Abandon([]*Message{it.in}) // acks held behind it are given up on
	}
	r.releaseKey(it)
	r.outstanding--
	if g := it.grp; g != nil {
		g.left--
	}
	*it = item{}
	r.pool.Put(it)
}

// dropFinishedGroups forgets the fetches whose events have all left and
// publishes the fetch time of the oldest unfinished event.
func (r *runner) dropFinishedGroups() {
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
