package latch

import (
	"testing"
	"time"
)

func TestLatch(t *testing.T) {
	var l Latch
	if l.Closed() || l.Wait() != nil {
		t.Fatal("a new latch is not open")
	}
	calls := 0
	if !l.Close(func() { calls++ }) || l.Close(func() { calls++ }) || calls != 1 {
		t.Fatalf("Close twice: hook ran %d times, want 1", calls)
	}
	if !l.WhileClosed(func() { calls += 10 }) || calls != 11 {
		t.Fatal("WhileClosed did not run on a closed latch")
	}
	calls = 1
	w := l.Wait()
	if w == nil || !l.Closed() {
		t.Fatal("closed latch has nothing to wait on")
	}
	done := make(chan struct{})
	go func() { <-w; close(done) }()
	select {
	case <-done:
		t.Fatal("waiter woke while closed")
	case <-time.After(10 * time.Millisecond):
	}
	if !l.Open(func() { calls++ }) || l.Open(func() { calls++ }) || calls != 2 {
		t.Fatalf("Open twice: hooks ran %d times, want 2", calls)
	}
	select {
	case <-done:
	case <-time.After(time.Second):
		t.Fatal("Open did not wake the waiter")
	}
	if l.Closed() || l.Wait() != nil {
		t.Fatal("opened latch still closed")
	}
	if l.WhileClosed(func() { t.Fatal("ran while open") }) {
		t.Fatal("WhileClosed reported a run on an open latch")
	}
}
