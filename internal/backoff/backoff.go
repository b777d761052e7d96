// Package backoff computes exponential backoff delays, for the retry loops
// of the pipeline and the adapters.
package backoff

import "time"

// Exp returns the delay before attempt number attempt (1 for the first
// retry): base doubled attempt-1 times, capped at ceiling, without
// overflowing. It is 0 when base is not positive, and base when attempt is
// below 1. Callers add jitter on top when many clients retry together.
func Exp(base, ceiling time.Duration, attempt int) time.Duration {
	if base <= 0 {
		return 0
	}
	d := base
	for i := 1; i < attempt && d < ceiling; i++ {
		if d > ceiling/2 {
			d = ceiling
		} else {
			d *= 2
		}
	}
	return min(d, ceiling)
}
