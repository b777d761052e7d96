package sluice

import (
	"math/rand/v2"
	"testing"
	"time"
)

// FuzzPauseFor checks the pause one 429 causes, for any Retry-After a
// model client passed on (negative, zero, huge), any valid default and any
// jitter setting (negative is the default: a fifth of the Retry-After, at
// least 10ms). The pause is the Retry-After (or the default when it is not
// positive) clamped to maxRetryAfter, plus a jitter below the jitter window
// clamped to maxRetryAfter too: never negative or zero, never more than
// twice maxRetryAfter, never an overflow.
func FuzzPauseFor(f *testing.F) {
	for _, seed := range [][4]int64{
		{int64(2 * time.Second), int64(time.Second), -1, 1},
		{0, int64(time.Second), 0, 2},
		{-int64(time.Hour), int64(time.Millisecond), int64(time.Second), 3},
		{1<<63 - 1, 1<<63 - 1, 1<<63 - 1, 4},
		{-1 << 63, 1<<63 - 1, -1 << 63, 5},
		{int64(maxRetryAfter), 1, int64(maxRetryAfter), 6},
		{int64(maxRetryAfter) + 1, 1, -1, 7},
		{1, 1, -1, 8},
		{int64(49 * time.Millisecond), 1, -1, 9},
	} {
		f.Add(seed[0], seed[1], seed[2], uint64(seed[3]))
	}
	f.Fuzz(func(t *testing.T, retryAfter, defaultRA, jitter int64, seed uint64) {
		def := time.Duration(defaultRA)
		if def <= 0 { // WithDefaultRetryAfter refuses these
			def = time.Duration(uint64(defaultRA)>>2) + 1
		}
		rl := &RateLimitError{RetryAfter: time.Duration(retryAfter)}
		got := pauseFor(rl, def, time.Duration(jitter), rand.New(rand.NewPCG(seed, 0)))
		base := rl.RetryAfter
		if base <= 0 {
			base = def
		}
		base = min(base, maxRetryAfter)
		window := min(jitterWindow(base, time.Duration(jitter)), maxRetryAfter)
		if got < base || (window > 0 && got >= base+window) || (window <= 0 && got != base) {
			t.Fatalf("pauseFor(RetryAfter %s, default %s, jitter %s) = %s, want in [%s, %s + %s)",
				rl.RetryAfter, def, time.Duration(jitter), got, base, base, max(window, 0))
		}
		if got <= 0 || got > 2*maxRetryAfter {
			t.Fatalf("pauseFor(RetryAfter %s, default %s, jitter %s) = %s: outside (0, %s]",
				rl.RetryAfter, def, time.Duration(jitter), got, 2*maxRetryAfter)
		}
	})
}
