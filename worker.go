package sluice

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime/debug"
	"time"
)

// worker runs on its own goroutine: it takes events, waits out any
// rate-limit pause and the client-side rate limit, enriches them (one at a
// time, or up to the enricher batch size in one call), and routes each
// result.
func (r *runner) worker() {
	var staggered int64 // the resume this worker last spread itself out for
	if r.p.cfg.enrichBatch > 1 {
		r.batchWorker(&staggered)
		return
	}
	w := newChunkWorker(r)
	defer w.stop()
	for {
		c, ok := r.takeWork()
		if !ok {
			return
		}
		w.run(c, &staggered)
	}
}

// batchWorker is the worker for a [BatchEnricher]: it takes up to the
// enricher batch size of the events already queued, and enriches them in
// one call.
func (r *runner) batchWorker(staggered *int64) {
	p := r.p
	batch := make([]*item, 0, p.cfg.enrichBatch)
	for {
		c, ok := r.takeWork()
		if !ok {
			return
		}
		batch = append(batch[:0], c.items...)
	fill:
		for len(batch) < p.cfg.enrichBatch {
			select {
			case c, ok := <-r.work:
				if !ok {
					break fill
				}
				batch = append(batch, c.items...)
			default:
				break fill
			}
		}
		if batch = r.keepStarted(batch); len(batch) == 0 {
			continue
		}
		if ok, _ := r.passGate(staggered); !ok {
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
			now := p.clock.Now()
			for _, it := range batch {
				now = r.enrichOne(it, now, nil)
			}
		} else {
			r.enrichBatch(batch)
		}
		var out []*item
		for _, it := range batch {
			if r.enriched(it) {
				out = append(out, it)
			}
		}
		if len(out) > 0 {
			r.write <- out
		}
	}
}

// ready waits out a pause and the client-side rate limit before one
// event's enrichment. It returns false when the event is not to be enriched
// now (it has then gone back to the runner), and whether it may have
// waited.
func (r *runner) ready(it *item, staggered *int64) (ok, waited bool) {
	if !r.keepIfStarted(it) {
		return false, false
	}
	ok, waited = r.passGate(staggered)
	if !ok {
		r.abandonOne(it)
		return false, waited
	}
	if !r.keepIfStarted(it) {
		return false, waited
	}
	if r.p.lim == nil {
		return true, waited
	}
	if err := r.p.lim.wait(r.workCtx); err != nil {
		r.abandonOne(it)
		return false, true
	}
	return true, true
}

// passGate waits out a rate-limit pause. Then each worker, the first time it
// passes the gate within a pause's jitter window after the resume, waits a
// random part of that window before it calls the model, and checks the gate
// again: workers resume spread out rather than all at once, so that when the
// limit is still tight the first refusal closes the gate before most of them
// have sent a request. staggered is the worker's memory of the last resume
// it spread itself out for.
func (r *runner) passGate(staggered *int64) (ok, waited bool) {
	done := r.workCtx.Done()
	for {
		if r.gate.shut.Load() {
			waited = true
		}
		if !r.gate.wait(done) {
			return false, waited
		}
		resumed := r.resumedAt.Load()
		if resumed == 0 || *staggered == resumed || r.stopping() {
			return true, waited
		}
		*staggered = resumed
		spread := r.spread.Load()
		if spread <= 0 || r.p.clock.Now().UnixNano() >= resumed+spread {
			return true, waited
		}
		waited = true
		if !sleep(r.p.clock, time.Duration(rand.Int64N(spread)), done) {
			return false, waited
		}
	}
}

// keepStarted, once the pipeline is stopping, abandons the events of batch
// that never started, and all of them unless the stop is graceful; it
// returns the events to carry on with.
func (r *runner) keepStarted(batch []*item) []*item {
	if r.stopMode() == running {
		return batch
	}
	keep := batch[:0]
	for _, it := range batch {
		if r.keepIfStarted(it) {
			keep = append(keep, it)
		}
	}
	return keep
}

// keepIfStarted is keepStarted for one event: false when it was abandoned.
func (r *runner) keepIfStarted(it *item) bool {
	switch r.stopMode() {
	case running:
		return true
	case draining:
		if it.started() {
			return true
		}
	}
	r.abandonOne(it)
	return false
}

func (r *runner) abandon(batch []*item) {
	for _, it := range batch {
		r.abandonOne(it)
	}
}

func (r *runner) abandonOne(it *item) {
	it.status = statusAbandoned
	r.results <- it
}

// enriched reports whether an event that a worker is done with goes to the
// writers; anything else it sends back to the runner for a decision.
func (r *runner) enriched(it *item) bool {
	if it.status == statusFailed && r.workCtx.Err() != nil {
		it.status = statusAbandoned // failed because we are shutting down
	}
	if it.status == statusEnriched {
		return true
	}
	r.results <- it
	return false
}

// route sends an event a worker is done with to the writers, or back to
// the runner.
func (r *runner) route(it *item) {
	if r.enriched(it) {
		r.write <- []*item{it}
	}
}

// begin counts an enrichment attempt that starts at now.
func (r *runner) begin(it *item, now time.Time) {
	if !it.started() {
		it.first = now
	}
	it.attempts++
}

// enrichOne enriches one event, starting at now by the pipeline's clock,
// and returns the clock time it finished.
func (r *runner) enrichOne(it *item, now time.Time, t *tally) time.Time {
	r.begin(it, now)
	out, err := r.safeEnrich(it.in)
	end := r.p.clock.Now()
	r.settle(it, out, err, end, t)
	return end
}

// tally holds a worker's successful enrichments not yet added to the
// runner's shared counters (okCount and lastOK): a worker adds them once
// per chunk, and before it records a failure, so that workers do not
// contend for those counters on every event.
type tally struct {
	oks  uint64
	last int64 // clock time (UnixNano) of the latest
}

// publish adds t to the shared counters and empties it.
func (r *runner) publish(t *tally) {
	if t.oks == 0 {
		return
	}
	r.lastOK.Store(t.last)
	r.okCount.Add(t.oks)
	*t = tally{}
}

// settle records the outcome of one enrichment attempt that ended at now.
// A success is counted in t, or straight in the shared counters when t is
// nil.
func (r *runner) settle(it *item, out *Message, err error, now time.Time, t *tally) {
	if err == nil && out == nil {
		err = Permanent(errors.New("enricher returned neither a message nor an error"))
	}
	if err != nil {
		if t != nil {
			r.publish(t) // the breaker compares this count across failures
		}
		it.status = statusFailed
		it.err = err
		it.oks = r.okCount.Load()
		return
	}
	if out != it.in { // an enricher may pass the event through as it is
		out.Origin = it.in.Origin
		out.Token = it.in.Token
	}
	it.out = out
	it.status = statusEnriched
	it.latency = now.Sub(it.first)
	if t != nil {
		t.oks++
		t.last = now.UnixNano()
		return
	}
	r.lastOK.Store(now.UnixNano())
	r.okCount.Add(1)
}

func (r *runner) safeEnrich(in *Message) (out *Message, err error) {
	defer func() {
		if v := recover(); v != nil {
			out, err = nil, &PanicError{Value: v, Stack: debug.Stack()}
			r.p.log.Error("sluice: enricher panicked; dead-lettering the event", "origin", in.Origin.String(), "panic", v)
		}
	}()
	return r.p.enr.Enrich(r.enrichCtx(in), in)
}

func (r *runner) enrichBatch(batch []*item) {
	ins := make([]*Message, len(batch))
	now := r.p.clock.Now()
	for i, it := range batch {
		r.begin(it, now)
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
			r.settle(it, out, err, r.p.clock.Now(), nil)
		}
		return
	}
	now = r.p.clock.Now()
	for i, it := range batch {
		if i < len(res) {
			r.settle(it, res[i].Msg, res[i].Err, now, nil)
		} else {
			r.settle(it, nil, fmt.Errorf("batch enricher returned %d results for %d events", len(res), len(batch)), now, nil)
		}
	}
}

func (r *runner) safeBatch(ins []*Message) (res []BatchResult, err error) {
	defer func() {
		if v := recover(); v != nil {
			res, err = nil, &PanicError{Value: v, Stack: debug.Stack()}
			r.p.log.Error("sluice: batch enricher panicked; enriching the batch's events one at a time", "events", len(ins), "panic", v)
		}
	}()
	return r.p.batch.EnrichBatch(r.workCtx, ins), nil
}
