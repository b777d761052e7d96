package sluice

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/sluicehq/sluice/internal/backoff"
)

// writer runs on its own goroutine: it takes finished items in batches,
// writes outputs to the sink and failures to the dead-letter writer, acks
// them all, and reports the batch to the runner.
func (r *runner) writer() {
	p := r.p
	batch := make([]*item, 0, p.cfg.writeBatch)
	var w batchWriter
	var rest []*item // what the last chunk had beyond the batch size
	for {
		if len(rest) == 0 {
			c, ok := <-r.write
			if !ok {
				return
			}
			rest = c
		}
		batch, rest = r.takeWrites(batch[:0], rest)
		if r.async != nil {
			w.write(r, batch)
			w.ackAsync(r, r.async, slices.Clone(batch))
			continue
		}
		w.flush(r, batch)
		r.written <- slices.Clone(batch)
	}
}

// takeWrites fills batch, up to the write batch size, from rest and then
// from the chunks already waiting, and returns it with what is left of the
// last chunk taken.
func (r *runner) takeWrites(batch, rest []*item) ([]*item, []*item) {
	size := r.p.cfg.writeBatch
	for {
		n := min(len(rest), size-len(batch))
		batch = append(batch, rest[:n]...)
		rest = rest[n:]
		if len(rest) > 0 || len(batch) == size {
			return batch, rest
		}
		select {
		case c, ok := <-r.write:
			if !ok {
				return batch, nil
			}
			rest = c
		default:
			return batch, nil
		}
	}
}

// batchWriter keeps scratch space between batches.
type batchWriter struct {
	items   []*item
	msgs    []*Message
	letters []DeadLetter
}

func (w *batchWriter) flush(r *runner, batch []*item) {
	w.write(r, batch)
	w.ack(r, batch)
}

// write writes a batch's outputs to the sink and its failures to the
// dead-letter writer.
func (w *batchWriter) write(r *runner, batch []*item) {
	p := r.p
	// 1. Enriched outputs to the sink. Outputs the sink rejects for good
	// become dead letters, unless the refusal is also fatal: one no event
	// gets past (the sink may not write at all), which stops the pipeline
	// with the events unacked rather than dead-letter every one of them.
	w.items = w.items[:0]
	for _, it := range batch {
		if it.status == statusEnriched {
			w.items = append(w.items, it)
			if it.traced {
				it.out.Headers = r.traceWriting(it, it.out.Headers, false)
			}
		}
	}
	r.writeRetrying("sink", w.items, func(ctx context.Context, items []*item) error {
		w.msgs = w.msgs[:0]
		for _, it := range items {
			w.msgs = append(w.msgs, it.out)
		}
		return p.sink.Write(ctx, w.msgs)
	}, func(it *item, err error) {
		if errors.Is(err, ErrFatal) {
			it.status, it.err, it.refusedBy = statusRefused, err, "sink"
			return
		}
		it.status = statusDead
		it.err = err
		it.reason = reasonOf(errors.New("sink rejected the enriched event: " + err.Error()))
	})

	// 2. Dead letters, with the original bytes.
	w.items = w.items[:0]
	for _, it := range batch {
		if it.status == statusDead {
			w.items = append(w.items, it)
			if it.traced {
				letter := *it.in
				letter.Headers = r.traceWriting(it, it.in.Headers, true)
				it.letter = &letter
			}
		}
	}
	now := p.clock.Now()
	r.writeRetrying("dead-letter writer", w.items, func(ctx context.Context, items []*item) error {
		w.letters = w.letters[:0]
		for _, it := range items {
			msg := it.in
			if it.letter != nil {
				msg = it.letter
			}
			w.letters = append(w.letters, DeadLetter{
				Msg: msg, Reason: it.reason, Err: it.err, Attempts: it.attempts,
				FirstAttempt: it.first, FailedAt: now,
			})
		}
		err := p.dlq.WriteDeadLetters(ctx, w.letters)
		clear(w.letters)
		return err
	}, func(it *item, err error) {
		it.status, it.err, it.refusedBy = statusRefused, err, "dead-letter writer"
	})
}

// ack acknowledges everything of a batch that was written.
func (w *batchWriter) ack(r *runner, batch []*item) {
	p := r.p
	w.msgs = w.msgs[:0]
	w.items = w.items[:0]
	for _, it := range batch {
		if it.status == statusEnriched || it.status == statusDead {
			w.items = append(w.items, it)
			w.msgs = append(w.msgs, it.in)
		}
	}
	if len(w.msgs) > 0 {
		r.retrying("acker", func(ctx context.Context) error { return p.acker.Ack(ctx, w.msgs) }, func() {
			for _, it := range w.items {
				it.status = statusAbandoned // written but not acked: will be delivered again
			}
		})
	}
	clear(w.msgs)
	clear(w.items)
}

// ackAsync hands what a batch wrote to an [AsyncAcker] and reports the
// batch to the runner once the acker has settled it: the batch's events
// keep their in-flight slots until their acks are committed. batch is the
// writer's to give away.
func (w *batchWriter) ackAsync(r *runner, a AsyncAcker, batch []*item) {
	var items []*item
	var msgs []*Message
	for _, it := range batch {
		if it.status == statusEnriched || it.status == statusDead {
			items = append(items, it)
			msgs = append(msgs, it.in)
		}
	}
	if len(msgs) == 0 {
		r.written <- batch
		return
	}
	a.AckAsync(r.writeCtx, msgs, func(err error) {
		if err != nil {
			var we WriteErrors
			if errors.As(err, &we) {
				for _, e := range we {
					if e.Index >= 0 && e.Index < len(items) {
						items[e.Index].status = statusAbandoned
						items[e.Index].unsettled = true
					}
				}
			} else {
				for _, it := range items {
					it.status = statusAbandoned
					it.unsettled = true
				}
			}
		}
		// The channel holds a batch per in-flight event: this never blocks.
		r.written <- batch
	})
}

// writeRetrying writes items until each is written, rejected for good
// (reject is called), or the write context ends (the item is abandoned).
// Failed writes are retried with backoff; a [WriteErrors] narrows the retry
// to the messages it lists, and any other failure halves how many items the
// next attempt writes at once. A [Permanent] error for a whole batch of more
// than one item does not say which item is at fault, so the items are then
// written one at a time and only those refused for good on their own are
// rejected.
func (r *runner) writeRetrying(what string, items []*item, write func(context.Context, []*item) error, reject func(*item, error)) {
	pending := items
	chunk := len(items) // most items per write; halved after a failed write
	singly := false
	r.retrying(what, func(ctx context.Context) error {
		for len(pending) > 0 {
			if singly {
				return r.writeSingly(ctx, &pending, write, reject)
			}
			n := min(chunk, len(pending))
			part := pending[:n]
			err := write(ctx, part)
			if err == nil {
				pending = pending[n:]
				continue
			}
			var we WriteErrors
			if errors.As(err, &we) && len(we) > 0 {
				var again []*item
				for _, e := range we {
					if e.Index < 0 || e.Index >= n {
						continue
					}
					it := part[e.Index]
					if errors.Is(e.Err, ErrPermanent) {
						reject(it, e.Err)
					} else {
						again = append(again, it)
					}
				}
				pending = append(again, pending[n:]...)
				if len(again) > 0 {
					return err
				}
				continue
			}
			if errors.Is(err, ErrPermanent) {
				if n == 1 {
					reject(part[0], err)
					pending = pending[1:]
					continue
				}
				r.p.log.Warn("sluice: a whole batch was refused for good; writing its events one at a time to find the ones at fault",
					"component", what, "events", n, "err", err)
				singly = true
				continue
			}
			// A batch too big for a slow link or for a server's limits fails
			// the same way every time: the next attempt writes half as much
			// at once, down to one event.
			chunk = max(1, (n+1)/2)
			return err
		}
		return nil
	}, func() {
		for _, it := range pending {
			it.status = statusAbandoned
		}
	})
}

// writeSingly writes each pending item on its own: written items are done,
// items refused for good are rejected, and the rest stay pending. It
// returns the last transient error, if any.
func (r *runner) writeSingly(ctx context.Context, pending *[]*item, write func(context.Context, []*item) error, reject func(*item, error)) error {
	var again []*item
	var last error
	for _, it := range *pending {
		err := write(ctx, []*item{it})
		var we WriteErrors
		if errors.As(err, &we) && len(we) > 0 {
			err = we[0].Err
		}
		switch {
		case err == nil:
		case errors.Is(err, ErrPermanent):
			reject(it, err)
		default:
			again = append(again, it)
			last = err
		}
	}
	*pending = again
	return last
}

// retrying calls op until it succeeds, backing off between failures. If the
// write context ends first it calls giveUp.
func (r *runner) retrying(what string, op func(context.Context) error, giveUp func()) {
	p := r.p
	for attempt := 1; ; attempt++ {
		err := op(r.writeCtx)
		if err == nil {
			return
		}
		p.stats.writeFailed(p.clock.Now(), attempt == 1, fmt.Errorf("%s: %w", what, err))
		if attempt == 1 {
			// However this write ends, the run of failures it began ends too.
			defer p.stats.writeRecovered()
		}
		if r.writeCtx.Err() != nil {
			p.log.Error("sluice: shutting down with a write unfinished; the events stay unacked and will be delivered again", "component", what, "err", err)
			giveUp()
			return
		}
		d := r.writeBackoff(attempt)
		p.log.Warn("sluice: write failed; retrying", "component", what, "attempt", attempt, "backoff", d, "err", err)
		if !sleep(p.clock, d, r.writeCtx.Done()) {
			giveUp()
			return
		}
	}
}

// writeBackoff doubles from the retry base up to the retry ceiling, without
// jitter: writers are few and a broker outage affects them all alike.
func (r *runner) writeBackoff(attempt int) time.Duration {
	const floor = 10 * time.Millisecond
	return backoff.Exp(max(r.p.cfg.backoffBase, floor), max(r.p.cfg.backoffMax, floor), attempt)
}
