package backoff

import (
	"testing"
	"time"
)

func TestExp(t *testing.T) {
	ms := time.Millisecond
	for _, tc := range []struct {
		base, ceiling time.Duration
		attempt       int
		want          time.Duration
	}{
		{50 * ms, 5 * time.Second, 0, 50 * ms},
		{50 * ms, 5 * time.Second, 1, 50 * ms},
		{50 * ms, 5 * time.Second, 2, 100 * ms},
		{50 * ms, 5 * time.Second, 7, 3200 * ms},
		{50 * ms, 5 * time.Second, 8, 5 * time.Second},
		{50 * ms, 5 * time.Second, 1 << 30, 5 * time.Second},
		{0, time.Second, 3, 0},
		{time.Second, 10 * ms, 1, 10 * ms},
		{time.Hour, 1<<63 - 1, 200, 1<<63 - 1},
	} {
		if got := Exp(tc.base, tc.ceiling, tc.attempt); got != tc.want {
			t.Errorf("Exp(%s, %s, %d) = %s, want %s", tc.base, tc.ceiling, tc.attempt, got, tc.want)
		}
	}
}
