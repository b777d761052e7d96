package sluice

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime/debug"
	"time"

	"github.com/sluicehq/sluice/internal/chans"
)

// worker runs on its own goroutine: it takes events (up to the enricher
// batch size at once), waits out any rate-limit pause and the client-side
// rate limit, enriches them, and routes each result.
func (r *runner) worker() {
	p := r.p
	batch := make([]*item, 0, p.cfg.enrichBatch)
	var staggered int64 // the resume this worker last spread itself out for
	for it := range r.work {
		batch = chans.TakeMore(append(batch[:0], it), r.work, p.cfg.enrichBatch, nil)
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
func (r *runner) passGate(staggered *int64) bool {
	done := r.workCtx.Done()
	for {
		if !r.gate.wait(done) {
			return false
		}
		resumed := r.resumedAt.Load()
		if resumed == 0 || *staggered == resumed || r.stopping() {
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
func (r *runner) keepStarted(batch []*item) []*item {
	mode := r.stopMode()
	if mode == running {
		return batch
	}
	keep := batch[:0]
	for _, it := range batch {
		if mode == draining && it.started() {
			keep = append(keep, it)
			continue
		}
		it.status = statusAbandoned
		r.results <- it
	}
	return keep
}

func (r *runner) abandon(batch []*item) {
	for _, it := range batch {
		it.status = statusAbandoned
		r.results <- it
	}
}

// route sends an enriched event to the writers, and anything else back to
// the runner for a decision.
func (r *runner) route(it *item) {
	if it.status == statusFailed && r.workCtx.Err() != nil {
		it.status = statusAbandoned // failed because we are shutting down
	}
	if it.status == statusEnriched {
		r.write <- it
		return
	}
	r.results <- it
}

// begin counts an enrichment attempt.
func (r *runner) begin(it *item) {
	if !it.started() {
		it.first = r.p.clock.Now()
	}
	it.attempts++
}

func (r *runner) enrichOne(it *item) {
	r.begin(it)
	out, err := r.safeEnrich(it.in)
	r.settle(it, out, err)
}

// settle records the outcome of one enrichment attempt.
func (r *runner) settle(it *item, out *Message, err error) {
	if err == nil && out == nil {
		err = Permanent(errors.New("enricher returned neither a message nor an error"))
	}
	if err != nil {
		it.status = statusFailed
		it.err = err
		it.oks = r.okCount.Load()
		return
	}
	out.Origin = it.in.Origin
	out.Token = it.in.Token
	it.out = out
	it.status = statusEnriched
	now := r.p.clock.Now()
	it.latency = now.Sub(it.first)
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
	for i, it := range batch {
		r.begin(it)
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
		if i < len(res) {
			r.settle(it, res[i].Msg, res[i].Err)
		} else {
			r.settle(it, nil, fmt.Errorf("batch enricher returned %d results for %d events", len(res), len(batch)))
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
