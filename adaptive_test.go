package sluice

import (
	"context"
	"testing"
	"time"
)

// step feeds the controller one period in which n events were retired and
// returns the limit afterwards.
func step(c *windowCtl, now *time.Time, n int) int {
	*now = now.Add(c.period)
	l, _ := c.retired(*now, n)
	return l
}

func TestWindowCtlGrowsWhileResultsAreFast(t *testing.T) {
	c := newWindowCtl(64, 16384)
	now := time.Unix(0, 0)
	c.onFetched(now, 64, 64*1024)
	// Slow start: the whole window comes back every 5ms, so the limit
	// grows fourfold every round trip, up to the cap, within the first
	// period.
	want := []int{256, 1024, 4096, 16384, 16384}
	for i, w := range want {
		now = now.Add(5 * time.Millisecond)
		if got, _ := c.retired(now, c.limit); got != w {
			t.Fatalf("round trip %d: limit %d, want %d", i, got, w)
		}
	}
	// At 16384 events per 5ms the rate asks for far more than the cap.
	if got := step(c, &now, 16384*20); got != 16384 {
		t.Fatalf("after a period: limit %d, want the cap 16384", got)
	}
}

func TestWindowCtlGrowsByPeriodsToo(t *testing.T) {
	c := newWindowCtl(64, 16384)
	c.grow = false
	now := time.Unix(0, 0)
	c.onFetched(now, 64, 64*1024)
	// Without slow start the limit at most doubles per period.
	want := []int{128, 256, 512, 1024}
	for i, w := range want {
		if got := step(c, &now, c.limit*20); got < w {
			t.Fatalf("period %d: limit %d, want at least %d", i, got, w)
		}
	}
}

func TestWindowCtlFollowsRateTimesDrainTarget(t *testing.T) {
	c := newWindowCtl(64, 16384)
	c.limit = 4096
	now := time.Unix(0, 0)
	c.onFetched(now, 1, 1024)
	// 300 events per 100ms = 3,000/s: the window settles on 3,000 events,
	// one second's worth, without overshooting more than one halving.
	for range 3 {
		step(c, &now, 300)
	}
	if c.limit != 3000 {
		t.Fatalf("limit %d, want 3000", c.limit)
	}
}

func TestWindowCtlShrinksToMinWhenResultsAreSlow(t *testing.T) {
	c := newWindowCtl(32, 16384)
	c.limit = 16384
	now := time.Unix(0, 0)
	c.onFetched(now, 1, 1024)
	// A 60s model: a few results now and then. The limit halves each
	// period down to the minimum and stays there.
	prev := c.limit
	for i := range 20 {
		got := step(c, &now, 0)
		if got < 32 || (prev > 32 && got != max(prev/2, 32)) {
			t.Fatalf("period %d: limit %d after %d", i, got, prev)
		}
		prev = got
	}
	if prev != 32 {
		t.Fatalf("limit %d, want the minimum 32", prev)
	}
	// 8 results after 60s do not make it grow.
	now = now.Add(60 * time.Second)
	if l, _ := c.retired(now, 8); l != 32 {
		t.Fatalf("limit %d after slow results, want 32", l)
	}
}

func TestWindowCtlByteCap(t *testing.T) {
	c := newWindowCtl(64, 16384)
	c.maxBytes = 1 << 20
	now := time.Unix(0, 0)
	c.onFetched(now, 10, 10*16<<10) // 16 KiB events: at most 64 fit in 1 MiB
	for range 10 {
		step(c, &now, 1_000_000)
	}
	if c.limit != 64 {
		t.Fatalf("limit %d, want 64 (1 MiB of 16 KiB events)", c.limit)
	}
	c.maxBytes = 4 << 20
	for range 10 {
		step(c, &now, 1_000_000)
	}
	if c.limit != 256 {
		t.Fatalf("limit %d, want 256 (4 MiB of 16 KiB events)", c.limit)
	}
}

func TestWindowCtlShrinksOnlyAtTheEndOfAPeriod(t *testing.T) {
	c := newWindowCtl(64, 16384)
	c.limit, c.grow = 4096, false
	now := time.Unix(0, 0)
	c.onFetched(now, 1, 1)
	for range 10 {
		now = now.Add(c.period / 20)
		if _, changed := c.retired(now, 1); changed {
			t.Fatal("limit changed before a full period had passed")
		}
	}
	now = now.Add(c.period)
	if l, _ := c.retired(now, 1); l != 2048 {
		t.Fatalf("limit %d at the end of a slow period, want 2048 (halved)", l)
	}
}

func TestWindowSetLimit(t *testing.T) {
	w := newWindow(2)
	ctx := context.Background()
	if n, _ := w.acquire(ctx, 5); n != 2 {
		t.Fatalf("acquired %d, want 2", n)
	}
	w.setLimit(1) // shrink below what is in use: nothing more until two leave
	got := make(chan int)
	go func() { n, _ := w.acquire(ctx, 5); got <- n }()
	w.release(1)
	select {
	case n := <-got:
		t.Fatalf("acquired %d with the window still full", n)
	default:
	}
	w.release(1)
	if n := <-got; n != 1 {
		t.Fatalf("acquired %d, want 1", n)
	}
	w.setLimit(10) // growing wakes a waiting fetcher
	go func() { n, _ := w.acquire(ctx, 5); got <- n }()
	if n := <-got; n != 5 {
		t.Fatalf("acquired %d, want 5", n)
	}
}
