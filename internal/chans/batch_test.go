package chans

import "testing"

func TestTakeMore(t *testing.T) {
	ch := make(chan int, 10)
	for i := range 6 {
		ch <- i
	}
	b := TakeMore([]int{-1}, ch, 3, nil)
	if len(b) != 3 || b[1] != 0 || b[2] != 1 {
		t.Fatalf("got %v, want [-1 0 1]", b)
	}
	odd := func(v int) bool { return v%2 == 1 }
	b = TakeMore(nil, ch, 10, odd)
	if len(b) != 2 || b[0] != 3 || b[1] != 5 {
		t.Fatalf("got %v, want [3 5] from an emptied channel", b)
	}
	close(ch)
	if b := TakeMore(nil, ch, 10, nil); len(b) != 0 {
		t.Fatalf("closed channel gave %v", b)
	}
}
