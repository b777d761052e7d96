package offsets

import (
	"math/rand/v2"
	"testing"
)

func TestCommitPointIsTheFirstUnfinishedOffset(t *testing.T) {
	p := NewPartition(10)
	if got := p.CommitPoint(); got != 10 {
		t.Fatalf("before any delivery: %d, want 10", got)
	}
	// Kafka skips offsets (transaction markers, compaction): 10, 11, 13, 17.
	for _, o := range []int64{10, 11, 13, 17} {
		if err := p.Deliver(o); err != nil {
			t.Fatal(err)
		}
	}
	steps := []struct {
		done int64
		want int64
	}{{17, 10}, {11, 10}, {10, 13}, {13, 18}}
	for _, s := range steps {
		if !p.Done(s.done) {
			t.Fatalf("Done(%d) = false", s.done)
		}
		if got := p.CommitPoint(); got != s.want {
			t.Fatalf("after Done(%d): commit point %d, want %d", s.done, got, s.want)
		}
	}
	if p.Pending() != 0 {
		t.Fatalf("pending %d", p.Pending())
	}
	if p.Done(13) || p.Done(12) {
		t.Fatal("Done accepted an offset that is not pending")
	}
	if err := p.Deliver(17); err == nil {
		t.Fatal("Deliver accepted an offset below the last one")
	}
}

func TestRandomCompletionOrder(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	p := NewPartition(0)
	const n = 5000
	for o := range int64(n) {
		if err := p.Deliver(o * 2); err != nil { // every other offset
			t.Fatal(err)
		}
	}
	done := make([]bool, n)
	for _, i := range rnd.Perm(n) {
		p.Done(int64(i) * 2)
		done[i] = true
		first := n
		for j, d := range done {
			if !d {
				first = j
				break
			}
		}
		want := int64(first) * 2
		if first == n {
			want = 2*n - 1
		}
		if got := p.CommitPoint(); got != want {
			t.Fatalf("commit point %d, want %d", got, want)
		}
	}
}
