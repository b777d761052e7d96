package sluice

import "time"

// Defaults of the adaptive window (see [WithMaxInFlight]).
const (
	// windowDrainTarget is how long the window's events should take to
	// leave the pipeline at the measured completion rate: the window aims
	// at rate × windowDrainTarget events (Little's law), so a rebalance or
	// a crash redelivers about this much work at most.
	windowDrainTarget = time.Second
	// windowPeriod is how often the window is resized, in the pipeline's
	// clock time.
	windowPeriod = 100 * time.Millisecond
	// windowMaxCount and windowMaxBytes cap the adaptive window.
	windowMaxCount = 32768
	windowMaxBytes = 64 << 20
	// slowStartGain is how many times over the window grows per round trip
	// of an event while the rate asks for more: each retired event adds
	// slowStartGain-1 slots.
	slowStartGain = 4
)

// windowCtl sizes the in-flight window from what the pipeline does: every
// period it measures the completion rate (events retired per second of the
// pipeline's clock) and moves the limit toward rate × drain target, at most
// doubling or halving it per period, within [min, max] and below maxBytes
// at the average event size seen so far. A fast enricher and sink make the
// window grow until the source, the sink or a cap is the bottleneck; slow
// results shrink it back to min, which keeps every worker busy (min is at
// least concurrency × enricher batch). It is driven only by counts and the
// clock values it is given, so tests can step it deterministically.
//
// The runner's goroutine owns it.
type windowCtl struct {
	min, max int
	maxBytes int64
	target   time.Duration
	period   time.Duration

	limit   int
	grow    bool      // slow start: the last period's rate wanted a bigger window
	from    time.Time // start of the current period; zero before the first event
	done    int       // events retired in the current period
	bytes   int64     // payload bytes of all events fetched so far
	fetched int64     // events fetched so far
}

func newWindowCtl(minN, maxN int) *windowCtl {
	return &windowCtl{
		min: minN, max: max(minN, maxN), maxBytes: windowMaxBytes,
		target: windowDrainTarget, period: windowPeriod, limit: minN, grow: true,
	}
}

// fetched records the size of n fetched events.
func (c *windowCtl) onFetched(now time.Time, n int, bytes int64) {
	if c.from.IsZero() {
		c.from = now
	}
	c.fetched += int64(n)
	c.bytes += bytes
}

// retired records n events leaving the pipeline at now and returns the
// new limit when it changed.
//
// Within a period, while the last period's rate asked for a bigger window
// (and in the first period), each retired event adds slowStartGain-1 slots,
// in the manner of TCP's slow start: the window grows fourfold every round
// trip of an event through the pipeline, so a fast pipeline reaches its size
// in a few round trips (five from 64 to 32,768) rather than a few periods.
// A slow model retires nothing for a while, so it does not grow the window. At the end of each period the limit moves
// toward rate × target, at most halving or doubling.
func (c *windowCtl) retired(now time.Time, n int) (int, bool) {
	old := c.limit
	c.done += n
	if c.from.IsZero() {
		c.from = now
	}
	if c.grow {
		c.limit = min(c.limit+(slowStartGain-1)*n, c.cap())
	}
	if elapsed := now.Sub(c.from); elapsed >= c.period {
		rate := float64(c.done) / elapsed.Seconds()
		c.from, c.done = now, 0
		want := int(rate * c.target.Seconds())
		next := min(max(want, c.limit/2), 2*c.limit)
		c.limit = min(max(next, c.min), c.cap())
		c.grow = want > c.limit
	}
	return c.limit, c.limit != old
}

// cap is the largest limit allowed: the count cap, and the byte cap at the
// average event size.
func (c *windowCtl) cap() int {
	hi := c.max
	if c.fetched > 0 && c.bytes > 0 {
		avg := max(c.bytes/c.fetched, 1)
		hi = min(hi, int(c.maxBytes/avg))
	}
	return max(hi, c.min)
}

// msgBytes is the memory a message's payload takes, roughly.
func msgBytes(m *Message) int64 {
	n := len(m.Value) + len(m.Key)
	for _, h := range m.Headers {
		n += len(h.Key) + len(h.Value)
	}
	return int64(n)
}
