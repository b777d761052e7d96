package main

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"
)

// malformedEvery makes every n-th input an event the enricher must
// dead-letter (review is not an object), so that dead letters are part of
// every run.
const malformedEvery = 50

// producer appends input events at a steady rate until its context ends.
type producer struct {
	backend backend
	rate    int
	log     *logger
	n       atomic.Int64 // events stored
}

func (p *producer) count() int { return int(p.n.Load()) }

func (p *producer) run(ctx context.Context) {
	const tick = 100 * time.Millisecond
	per := max(1, p.rate/10)
	t := time.NewTicker(tick)
	defer t.Stop()
	words := []string{"great", "terrible", "fine", "love", "awful", "ok"}
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		batch := make([][]byte, per)
		for i := range batch {
			id := int(p.n.Load()) + i
			if (id+1)%malformedEvery == 0 {
				batch[i] = fmt.Appendf(nil, `{"id":%d,"review":"not an object"}`, id)
				continue
			}
			batch[i] = fmt.Appendf(nil, `{"id":%d,"review":{"body":"a %s product, number %d"}}`, id, words[id%len(words)], id)
		}
		// Retry the batch until it is stored: the broker may be restarting.
		for {
			rest, err := p.backend.produce(ctx, batch)
			p.n.Add(int64(len(batch) - len(rest)))
			batch = rest
			if err == nil {
				if failing {
					p.log.printf("  producer: writing again after errors")
					failing = false
				}
				break
			}
			if ctx.Err() != nil {
				return
			}
			if !failing {
				p.log.printf("  producer: %v (retrying)", err)
				failing = true
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(250 * time.Millisecond):
			}
		}
	}
}
