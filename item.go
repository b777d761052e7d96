package sluice

import "time"

// status is where an in-flight event stands. The runner sets it when it
// hands the event on; workers and writers set it when they are done with
// it, and the runner reads it when the event comes back.
type status uint8

const (
	statusQueued    status = iota // handed to the workers, not yet enriched
	statusEnriched                // out is ready for the sink
	statusFailed                  // the latest enrichment attempt failed; the runner decides
	statusDead                    // goes to the dead-letter writer
	statusAbandoned               // left unacked for redelivery (shutdown, or written but not acked)
	statusRefused                 // the dead-letter writer, or fatally the sink, refused it for good: fatal
)

// item is one event between its fetch and its ack.
type item struct {
	in     *Message
	out    *Message // the enriched message, once statusEnriched
	err    error    // the latest failure
	oks    uint64   // successful enrichments in the pipeline when it failed, for the breaker
	reason string   // the dead letter's failure_reason
	// refusedBy names the writer that refused it, once statusRefused.
	refusedBy string
	attempts  int // enrichment attempts; a rate-limited call is not one
	first     time.Time
	latency   time.Duration // first attempt to outcome
	retryAt   time.Time
	status    status
	acked     bool        // written and acked
	traced    bool        // a tracer follows it (see EventTracer)
	letter    *Message    // the dead letter's message, when a tracer set its headers
	keyed     bool        // holds its key's turn, when ordering by key
	unsettled bool        // an AsyncAcker took its ack and settled it as not committed
	grp       *fetchGroup // the fetch it came in, for the oldest-event age
}

// started reports whether enrichment of the event ever began.
func (it *item) started() bool { return !it.first.IsZero() }

// fetchGroup is the events of one fetch still in the pipeline. The runner
// keeps groups in fetch order, so the first one with events left holds the
// oldest unfinished event.
type fetchGroup struct {
	at   int64 // clock time of the fetch, UnixNano
	left int
}
