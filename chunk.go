package sluice

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Work reaches the workers in chunks. While enrichment is slow a chunk is
// one event, so that every free worker takes the next one. While it is
// fast (a pass-through, a cache hit) the runner hands out chunks of up to
// maxChunk events, so that an event does not pay a channel handoff, a
// goroutine wakeup and the contention for the channel's lock on its own.
// Events of a chunk never wait behind a slow one for long: a worker claims
// them one at a time, and when a chunk has been held for exposeAfter its
// worker's finished events go to the writers and the events it has not
// claimed are offered to every other worker.
const (
	// maxChunk is the most events handed out at once.
	maxChunk = 64
	// fastEnrich is the time per event under which enrichment counts as
	// fast, so that a whole chunk normally takes well under exposeAfter.
	fastEnrich = 20 * time.Microsecond
	// exposeAfter is how long a worker holds a chunk on its own.
	exposeAfter = 2 * time.Millisecond
)

// chunk is events handed to the workers together. Its owner, the worker
// that took it from the work channel, claims its events in order; once the
// chunk is exposed, any worker may claim the rest.
type chunk struct {
	items   []*item
	one     [1]*item     // the backing array of a one-event chunk
	next    atomic.Int32 // index of the next event to claim
	offered atomic.Bool  // in the work channel as an exposed chunk

	mu      sync.Mutex
	exposed bool    // held too long: outputs go out at once, the rest is offered
	done    bool    // its owner has finished with it
	outs    []*item // enriched by the owner, not yet sent to the writers
}

// single is a chunk of one event.
func single(it *item) *chunk {
	c := &chunk{}
	c.one[0] = it
	c.items = c.one[:]
	return c
}

// claim returns the index of the next unclaimed event, or -1.
func (c *chunk) claim() int {
	if i := int(c.next.Add(1)) - 1; i < len(c.items) {
		return i
	}
	return -1
}

// left reports whether some event is unclaimed.
func (c *chunk) left() bool { return int(c.next.Load()) < len(c.items) }

// offer puts an exposed chunk in the work channel unless it is there
// already, or unless the channel holds a window's worth of chunks already:
// offering only speeds a chunk up, since its holders claim the rest
// themselves. The channel has room for a chunk per in-flight event (the
// runner's sends, each with an unclaimed event) plus a window of offers,
// plus one per worker and timer that may pass the check at once, so that
// neither this nor the runner ever blocks on it.
func (c *chunk) offer(r *runner) {
	if len(r.work) >= r.p.cfg.windowMax || !c.offered.CompareAndSwap(false, true) {
		return
	}
	select {
	case r.work <- c:
	default:
		c.offered.Store(false)
	}
}

// sendWork hands queued events to the workers: one per chunk, or, while
// enrichment is fast, chunks of an equal share per worker (at most
// maxChunk), so that every worker still gets one.
func (r *runner) sendWork(items []*item) {
	if len(items) == 0 {
		return
	}
	k := 1
	if r.fast.Load() || r.p.cfg.alwaysChunk {
		k = min(max(len(items)/r.p.cfg.concurrency, 1), maxChunk)
	}
	if k == 1 {
		for _, it := range items {
			r.work <- single(it)
		}
		return
	}
	all := slices.Clone(items)
	cs := make([]chunk, (len(all)+k-1)/k)
	for i := range cs {
		n := min(k, len(all))
		cs[i].items = all[:n:n]
		all = all[n:]
		r.work <- &cs[i]
	}
}

// takeWork waits for a chunk. It returns false once the work channel is
// closed and empty.
func (r *runner) takeWork() (*chunk, bool) {
	c, ok := <-r.work
	if ok && c.offered.Load() {
		c.offered.Store(false)
	}
	return c, ok
}

// chunkWorker is a worker's state for the chunks it owns: the timer that
// exposes the one it holds.
type chunkWorker struct {
	r     *runner
	cur   atomic.Pointer[chunk]
	timer *time.Timer
}

func newChunkWorker(r *runner) *chunkWorker {
	w := &chunkWorker{r: r}
	w.timer = time.AfterFunc(time.Hour, w.expose)
	w.timer.Stop()
	return w
}

func (w *chunkWorker) stop() { w.timer.Stop() }

// run enriches the events of c that this worker claims.
func (w *chunkWorker) run(c *chunk, staggered *int64) {
	r := w.r
	if len(c.items) == 1 { // never exposed: nothing is left to offer
		it := c.items[0]
		if ok, _ := r.ready(it, staggered); ok {
			now, start, wall := r.startTiming()
			end := r.enrichOne(it, now, nil)
			r.route(it)
			r.measured(start, end, wall, 1)
		}
		return
	}
	c.mu.Lock()
	exposed := c.exposed
	c.mu.Unlock()
	if exposed {
		w.help(c, staggered)
		return
	}
	w.own(c, staggered)
}

// startTiming reads the pipeline's clock, and the time measured reckons
// from: the same reading when the pipeline's clock is the wall clock, and
// otherwise the wall clock's, since chunk sizes follow real time.
func (r *runner) startTiming() (now, start time.Time, wall bool) {
	now = r.p.clock.Now()
	if _, wall = r.p.clock.(wallClock); wall {
		return now, now, true
	}
	return now, time.Now(), false
}

// own enriches a chunk's events one after the other, keeps the enriched
// ones to send to the writers together, and measures how fast enrichment
// is, for the runner's next chunks. The exposure timer runs meanwhile.
func (w *chunkWorker) own(c *chunk, staggered *int64) {
	r := w.r
	clock := r.p.clock
	now, start, wall := r.startTiming()
	w.cur.Store(c)
	w.timer.Reset(exposeAfter)
	var t tally
	ran := 0
	for i := c.claim(); i >= 0; i = c.claim() {
		it := c.items[i]
		ok, waited := r.ready(it, staggered)
		if !ok {
			continue
		}
		if waited {
			now = clock.Now()
		}
		// One clock reading per event: the end of one enrichment is the
		// start of the next.
		now = r.enrichOne(it, now, &t)
		ran++
		// Routed under the lock, so that an exposure in progress has
		// offered the chunk before this event can leave the pipeline
		// (and with the last one, the work channel close).
		c.mu.Lock()
		switch {
		case !r.enriched(it):
		case c.exposed:
			r.write <- []*item{it}
		default:
			c.outs = append(c.outs, it)
		}
		c.mu.Unlock()
	}
	w.timer.Stop()
	w.cur.Store(nil)
	r.publish(&t)
	c.mu.Lock()
	c.done = true
	outs := c.outs
	c.outs = nil
	c.mu.Unlock()
	if len(outs) > 0 {
		r.write <- outs
	}
	if ran > 0 {
		r.measured(start, now, wall, ran)
	}
}

// measured records how long n events took, for sendWork's choice of chunk
// size: from start to end when the pipeline's clock is the wall clock, and
// from start (see startTiming) to now by the wall clock otherwise.
func (r *runner) measured(start, end time.Time, wall bool, n int) {
	var took time.Duration
	if wall {
		took = end.Sub(start)
	} else {
		took = time.Since(start)
	}
	if fast := took < fastEnrich*time.Duration(n); r.fast.Load() != fast {
		r.fast.Store(fast)
	}
}

// help claims and enriches the events of an exposed chunk one at a time,
// offering the chunk again while events are left so that other workers
// can help too.
func (w *chunkWorker) help(c *chunk, staggered *int64) {
	r := w.r
	for i := c.claim(); i >= 0; i = c.claim() {
		if c.left() {
			c.offer(r)
		}
		it := c.items[i]
		if ok, _ := r.ready(it, staggered); ok {
			r.enrichOne(it, r.p.clock.Now(), nil)
			r.route(it)
		}
	}
}

// expose runs on the timer's goroutine when a worker has held its chunk
// for exposeAfter: the chunk's finished events go to the writers and the
// rest is offered to the other workers.
func (w *chunkWorker) expose() {
	c := w.cur.Load()
	if c == nil {
		return
	}
	r := w.r
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done || c.exposed {
		return
	}
	c.exposed = true
	if len(c.outs) > 0 {
		r.write <- c.outs
		c.outs = nil
	}
	if c.left() {
		c.offer(r)
	}
}
