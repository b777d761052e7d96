package sluice

import "fmt"

// breaker counts consecutive events that failed with a misconfiguration of
// the same class (see WithBreaker). The runner's goroutine owns it.
type breaker struct {
	class string
	count int
	oks   uint64 // successful enrichments when the streak's latest failure happened
}

// onMisconfigured dead-letters an event whose failure says the setup is
// wrong, unless it is the n-th in a row of its class: then the pipeline
// stops with the error, leaving that event and every later one unacked.
func (r *runner) onMisconfigured(it *item, mis *MisconfiguredError) {
	n := r.p.cfg.breaker
	if n == 0 {
		r.deadLetter(it, it.err)
		return
	}
	b := &r.brk
	// A success between two failures, as the workers saw them, breaks the
	// streak (results may reach the runner later than the successes).
	if b.count == 0 || b.class != mis.Class || it.oks != b.oks {
		*b = breaker{class: mis.Class}
	}
	b.count++
	b.oks = it.oks
	if b.count < n {
		r.deadLetter(it, it.err)
		return
	}
	err := fmt.Errorf("sluice: breaker open: %d events in a row failed with the same configuration error (%s), which no event will get past; stopping without dead-lettering more, the rest stay unacked; fix the setup and restart: %w",
		b.count, mis.Class, it.err)
	r.p.log.Error("sluice: breaker open; stopping", "class", mis.Class, "in_a_row", b.count, "origin", it.in.Origin.String(), "err", it.err)
	r.beginStop(err)
	r.retire(it)
}
