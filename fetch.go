package sluice

import "context"

// fetch runs on its own goroutine: it takes window slots, fetches, and
// hands batches to the runner. It stops fetching while the gate is closed
// (a rate-limit pause) and when the window is full.
func (r *runner) fetch(ctx context.Context) error {
	p := r.p
	done := ctx.Done()
	for {
		if !r.gate.wait(done) {
			return ctx.Err()
		}
		want := p.cfg.fetchBatch
		if !p.cfg.fetchBatchSet {
			want = min(max(r.win.size()/4, want), 1024)
		}
		n, err := r.win.acquire(ctx, want)
		if err != nil {
			return err
		}
		if !r.gate.wait(done) { // a pause may have begun while we waited for room
			r.win.release(n)
			return ctx.Err()
		}
		msgs, err := p.src.Fetch(ctx, n)
		r.win.release(n - len(msgs))
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
