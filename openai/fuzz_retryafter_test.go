package openai

import (
	"math"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// FuzzRetryAfter feeds arbitrary rate-limit headers to RetryAfter, at an
// arbitrary now. Whatever comes in, the wait is never negative and never
// above MaxRetryAfter, and the first header that gives a usable wait
// decides it: retry-after-ms, then retry-after as seconds or as an HTTP date
// after now, then the x-ratelimit-reset-* pair.
func FuzzRetryAfter(f *testing.F) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC).Unix()
	for _, seed := range []struct {
		ms, ra, resetReq, resetTok, remReq, remTok string
		now                                        int64
	}{
		{"250", "", "", "", "", "", now},
		{"0.5", "5", "", "", "", "", now},
		{"soon", "5", "", "", "", "", now},
		{"", "1.5", "6m0s", "", "", "", now},
		{"", "Sun, 01 Mar 2026 12:00:09 GMT", "", "", "", "", now},
		{"", "Sunday, 01-Mar-26 12:01:00 GMT", "", "", "", "", now},
		{"", "Fri, 31 Dec 9999 23:59:59 GMT", "", "", "", "", now},
		{"", "Fri, 31 Dec 9999 23:59:59 GMT", "", "", "", "", math.MinInt64},
		{"", "Mon, 01 Jan 0001 00:00:00 GMT", "", "", "", "", math.MaxInt64},
		{"", "Mon Jan  2 15:04:05 2006", "", "", "", "", 0},
		{"999999999999999999999", "99999999999999999999", "", "", "", "", now},
		{"1e308", "1e309", "2000000h", "1e300", "", "", now},
		{"9223372036854775807", "9223372036854775808", "", "", "", "", now},
		{"86399999.9999999", "86399.9999999999", "", "", "", "", now},
		{"1e-300", "", "", "", "", "", now},
		{"-1", "-0", "-5s", "-3", "0", "0", now},
		{"NaN", "+Inf", "", "", "", "", now},
		{"0x1p30", "1_000", "", "", "", "", now},
		{"", "", "1s", "20ms", "", "0", now},
		{"", "", "1m30.5s", "3", " 0 ", "", now},
		{"", "", "9223372036854775807ns", "2562047h47m16.854775807s", "0", "0", now},
		{"", "", "6 minutes", "", "", "", now},
		{" 250 ", "\t30\t", "", "", "", "", now},
	} {
		f.Add(seed.ms, seed.ra, seed.resetReq, seed.resetTok, seed.remReq, seed.remTok, seed.now)
	}
	f.Fuzz(func(t *testing.T, ms, ra, resetReq, resetTok, remReq, remTok string, nowSec int64) {
		h := http.Header{}
		for _, kv := range [][2]string{
			{"Retry-After-Ms", ms}, {"Retry-After", ra},
			{"X-Ratelimit-Reset-Requests", resetReq}, {"X-Ratelimit-Reset-Tokens", resetTok},
			{"X-Ratelimit-Remaining-Requests", remReq}, {"X-Ratelimit-Remaining-Tokens", remTok},
		} {
			if kv[1] != "" {
				h.Set(kv[0], kv[1])
			}
		}
		now := time.Unix(nowSec, 0)
		got := RetryAfter(h, now)
		if got < 0 || got > MaxRetryAfter {
			t.Fatalf("RetryAfter(%q, %s) = %s: outside [0, %s]", h, now, got, MaxRetryAfter)
		}
		// The first header with a usable wait decides.
		if want, ok := number(ms, time.Millisecond); ok {
			if !near(got, want) {
				t.Fatalf("retry-after-ms %q: RetryAfter = %s, want %s", ms, got, want)
			}
			return
		}
		if want, ok := number(ra, time.Second); ok {
			if !near(got, want) {
				t.Fatalf("retry-after %q: RetryAfter = %s, want %s", ra, got, want)
			}
			return
		}
		if date, err := http.ParseTime(strings.TrimSpace(ra)); err == nil && date.After(now) {
			if want := min(date.Sub(now), MaxRetryAfter); got != want {
				t.Fatalf("retry-after %q at %s: RetryAfter = %s, want %s", ra, now, got, want)
			}
			return
		}
		req, tok := reset(resetReq), reset(resetTok)
		if got != req && got != tok {
			t.Fatalf("x-ratelimit-reset %q/%q: RetryAfter = %s, want one of %s, %s", resetReq, resetTok, got, req, tok)
		}
	})
}

// number is the oracle for a positive number of units, clamped to
// MaxRetryAfter; ok is false when text is not a positive finite number.
func number(text string, unit time.Duration) (time.Duration, bool) {
	f, err := strconv.ParseFloat(strings.TrimSpace(text), 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f <= 0 {
		return 0, false
	}
	if w := f * float64(unit); w < float64(MaxRetryAfter) {
		return time.Duration(w), true
	}
	return MaxRetryAfter, true
}

// reset is the oracle for one x-ratelimit-reset-* value: a positive Go
// duration or number of seconds, clamped, or 0.
func reset(text string) time.Duration {
	text = strings.TrimSpace(text)
	if d, err := time.ParseDuration(text); err == nil {
		return min(max(d, 0), MaxRetryAfter)
	}
	d, _ := number(text, time.Second)
	return d
}

// near allows for the rounding of a float number of units.
func near(got, want time.Duration) bool {
	diff := got - want
	return diff >= -time.Microsecond && diff <= time.Microsecond
}
