package sluice

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"
)

// A batch that fails the same way at its size every time (too big to go
// through a slow link before the client's timeout, say) must not be retried
// at that size forever: each failed attempt halves it.
func TestWriteRetryingSplitsABatchThatKeepsFailing(t *testing.T) {
	p := &Pipeline{
		cfg:   config{backoffBase: time.Millisecond, backoffMax: time.Millisecond},
		log:   slog.New(slog.NewTextHandler(io.Discard, nil)),
		clock: wallClock{},
		stats: newStats(time.Minute),
	}
	r := newRunner(p)
	r.writeCtx, r.cancelWrite = context.WithCancel(context.Background())
	defer r.cancelWrite()
	items := make([]*item, 8)
	for i := range items {
		items[i] = &item{in: &Message{Value: []byte{byte('a' + i)}}}
	}
	var sizes []int
	written := map[*item]int{}
	r.writeRetrying("sink", items, func(_ context.Context, part []*item) error {
		sizes = append(sizes, len(part))
		if len(sizes) > 100 {
			t.Fatalf("still retrying after 100 writes of sizes %v", sizes)
		}
		if len(part) > 2 {
			return errors.New("i/o timeout")
		}
		for _, it := range part {
			written[it]++
		}
		return nil
	}, func(it *item, err error) { t.Errorf("rejected %q: %v", it.in.Value, err) })
	if len(written) != len(items) {
		t.Fatalf("%d of %d items written (write sizes %v)", len(written), len(items), sizes)
	}
	for it, n := range written {
		if n != 1 {
			t.Errorf("item %q written %d times", it.in.Value, n)
		}
	}
	want := []int{8, 4, 2, 2, 2, 2}
	if len(sizes) != len(want) {
		t.Fatalf("write sizes %v, want %v", sizes, want)
	}
	for i := range want {
		if sizes[i] != want[i] {
			t.Fatalf("write sizes %v, want %v", sizes, want)
		}
	}
}
