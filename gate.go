package sluice

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// gate is open or shut; waiters block while it is shut. A rate-limit pause
// shuts it, so that neither the fetcher nor the workers go on.
type gate struct {
	mu     sync.Mutex
	shut   atomic.Bool   // written under mu; read without it on the open fast path
	opened chan struct{} // closed when the gate opens
}

func (g *gate) close() {
	g.mu.Lock()
	if !g.shut.Load() {
		g.opened = make(chan struct{})
		g.shut.Store(true)
	}
	g.mu.Unlock()
}

func (g *gate) open() {
	g.mu.Lock()
	if g.shut.Load() {
		g.shut.Store(false)
		close(g.opened)
	}
	g.mu.Unlock()
}

// wait blocks while the gate is shut. It returns false if done closes
// first.
func (g *gate) wait(done <-chan struct{}) bool {
	if !g.shut.Load() { // open: every event passes here, so no lock
		return true
	}
	g.mu.Lock()
	if !g.shut.Load() {
		g.mu.Unlock()
		return true
	}
	ch := g.opened
	g.mu.Unlock()
	select {
	case <-ch:
		return true
	case <-done:
		return false
	}
}

// onRateLimited handles a call refused for a rate limit: the event goes
// back to the workers without spending its retry budget, and consumption
// pauses for the server's Retry-After plus jitter, but never past the
// rate-limit deadline, where the pipeline stops instead.
func (r *runner) onRateLimited(it *item, rl *RateLimitError) {
	p := r.p
	now := p.clock.Now()
	p.stats.rateLimited.Add(1)
	if r.limitedFrom.IsZero() || r.lastOK.Load() >= r.limitedFrom.UnixNano() {
		r.limitedFrom = now // a call succeeded since the streak began
	}
	r.lastRL = rl
	if r.stopIfLimitedTooLong(now) {
		r.retire(it)
		return
	}
	it.attempts--
	r.pause(now, rl, it.in.Origin)
	r.tracePaused(it, now, rl)
	// Queued last: once a worker has it, the runner must not touch it.
	r.work <- single(it)
}

// pause shuts the gate and pauses the source until now + the pause that rl
// asks for, or extends a pause under way. A pause never outlasts the
// rate-limit deadline: if the server asks for longer, the pipeline resumes
// at the deadline only to stop there (see onResume), without another call.
func (r *runner) pause(now time.Time, rl *RateLimitError, origin Origin) {
	p := r.p
	d := pauseFor(rl, p.cfg.defaultRetryAfter, p.cfg.pauseJitter, r.rnd)
	if left := r.limitedFrom.Add(p.cfg.maxRateLimited).Sub(now); d > left {
		d = left
	}
	ra := rl.RetryAfter
	if ra <= 0 {
		ra = p.cfg.defaultRetryAfter
	}
	// Workers resume spread over the jitter window, but never over longer
	// than the pause itself: a pause cut short at the deadline would
	// otherwise leave them staggered over a fifth of a huge Retry-After.
	spread := min(jitterWindow(min(ra, maxRetryAfter), p.cfg.pauseJitter), d)
	r.pauseUntil(now, now.Add(d), spread, "",
		func(d time.Duration) {
			p.log.Warn("sluice: rate limited; pausing consumption", "pause", d, "origin", origin.String(), "err", rl)
		})
}

// onPlannedPause handles an enricher's [PauseError]: the event goes back to
// the workers without spending its retry budget, and consumption pauses
// until the enricher's time, outside any rate-limit streak.
func (r *runner) onPlannedPause(it *item, pe *PauseError) {
	p := r.p
	now := p.clock.Now()
	r.limitedFrom = time.Time{} // planned, not refused: no rate-limit deadline runs
	it.attempts--
	// A time already past still pauses a moment, so that an enricher that
	// keeps asking cannot spin the workers.
	until := now.Add(min(max(pe.Until.Sub(now), minPlannedPause), maxRetryAfter))
	r.pauseUntil(now, until, p.cfg.pauseJitter, pe.Reason, func(d time.Duration) {
		p.log.Warn("sluice: the enricher asked for a pause; pausing consumption", "pause", d, "until", until, "reason", pe.Reason)
	})
	r.tracePaused(it, now, pe)
	r.work <- single(it)
}

// pauseUntil shuts the gate and pauses the source until until, or extends
// a pause under way; spread is the jitter window workers resume over, and
// reason (empty for a rate limit) what health says. announce logs a new
// pause.
func (r *runner) pauseUntil(now, until time.Time, spread time.Duration, reason string, announce func(time.Duration)) {
	p := r.p
	if !until.After(r.pausedUntil) {
		return
	}
	extending := r.resume != nil
	r.pausedUntil = until
	r.spread.Store(int64(max(spread, 0)))
	p.stats.setPausedUntil(until, reason)
	d := until.Sub(now)
	if extending {
		r.resume.Stop()
	} else {
		p.stats.pauses.Add(1)
		for _, o := range p.cfg.observers {
			o.RateLimited(d)
		}
		announce(d)
		r.gate.close()
		p.state.Store(StatePaused)
		if ps, ok := p.src.(Pauser); ok {
			ps.Pause()
		}
	}
	// Armed last, so that a test that sees the timer sees the pause too.
	r.resume = p.clock.NewTimer(d)
}

// tracePaused tells the tracers that the event waits for the pause under
// way.
func (r *runner) tracePaused(it *item, now time.Time, err error) {
	if !it.traced {
		return
	}
	for _, t := range r.tracers {
		t.EventPaused(it.in.Context(), it.in, max(r.pausedUntil.Sub(now), 0), err)
	}
}

// stopIfLimitedTooLong stops the pipeline with [ErrRateLimited] once rate
// limiting has gone on for the maximum duration without a single
// successful call, and reports whether it did.
func (r *runner) stopIfLimitedTooLong(now time.Time) bool {
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

// onResume ends a pause: it resumes the source and opens the gate, unless
// the rate-limit deadline has come, which stops the pipeline.
func (r *runner) onResume() {
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
	if !r.stopping() {
		p.state.Store(StateRunning)
	}
	r.gate.open()
}

// pauseFor returns how long one 429 pauses consumption: the server's
// Retry-After (or defaultRA when it gave none) plus a random jitter below
// jitter, or below max(RA/5, 10ms) when jitter is negative. Both parts are
// clamped to maxRetryAfter, so the sum cannot overflow whatever the server
// sent.
func pauseFor(e *RateLimitError, defaultRA, jitter time.Duration, rnd *rand.Rand) time.Duration {
	ra := e.RetryAfter
	if ra <= 0 {
		ra = defaultRA
	}
	ra = min(ra, maxRetryAfter)
	if j := min(jitterWindow(ra, jitter), maxRetryAfter); j > 0 {
		ra += time.Duration(rnd.Int64N(int64(j)))
	}
	return ra
}

// maxRetryAfter bounds how long one rate-limit pause can be, whatever the
// server asked for. In practice the rate-limit deadline
// ([WithMaxRateLimitDuration]) cuts pauses much shorter.
const maxRetryAfter = 24 * time.Hour

// minPlannedPause is the shortest pause a [PauseError] causes.
const minPlannedPause = 10 * time.Millisecond

// jitterWindow is the spread of random delays for a pause of ra: the
// configured jitter, or max(ra/5, 10ms) by default.
func jitterWindow(ra, jitter time.Duration) time.Duration {
	if jitter >= 0 {
		return jitter
	}
	return max(ra/5, 10*time.Millisecond)
}
