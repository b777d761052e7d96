package sluice_test

import (
	"errors"
	"fmt"
	"strconv"
	"testing"

	"github.com/sluicehq/sluice"
)

func TestDedupDropsCopiesAndForgetsTheOldest(t *testing.T) {
	d, err := sluice.NewDedup(3)
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		key  string
		seen bool
	}{
		{"a", false}, {"b", false}, {"a", true}, {"c", false}, {"", false}, {"", false},
		{"d", false}, // forgets a
		{"a", false}, // forgets b
		{"c", true}, {"d", true}, {"b", false},
	}
	for i, s := range steps {
		if got := d.Seen(s.key); got != s.seen {
			t.Fatalf("step %d: Seen(%q) = %v, want %v", i, s.key, got, s.seen)
		}
	}
	if d.Len() != 3 {
		t.Fatalf("Len %d, want 3", d.Len())
	}
	for _, c := range []int{0, -1} {
		if _, err := sluice.NewDedup(c); !errors.Is(err, sluice.ErrInvalidConfig) {
			t.Errorf("NewDedup(%d): %v, want ErrInvalidConfig", c, err)
		}
	}
}

// Redelivered copies carry the same idempotency key as the first delivery.
func TestIdempotencyKeyHeader(t *testing.T) {
	for _, o := range []sluice.Origin{{Topic: "orders", Partition: 3, Offset: 1042}, {Topic: "orders", ID: "1700000000000-0", Offset: -1}} {
		hs := sluice.AppendOriginHeaders(nil, o)
		last := hs[len(hs)-1]
		if last.Key != sluice.HeaderIdempotencyKey || string(last.Value) != o.String() {
			t.Errorf("origin %v: last header %s=%s, want %s=%s", o, last.Key, last.Value, sluice.HeaderIdempotencyKey, o.String())
		}
	}
}

func BenchmarkDedupSeen(b *testing.B) {
	d, _ := sluice.NewDedup(1 << 16)
	keys := make([]string, 1<<17)
	for i := range keys {
		keys[i] = "orders/" + strconv.Itoa(i%4) + "@" + strconv.Itoa(i)
	}
	b.ResetTimer()
	for i := range b.N {
		d.Seen(keys[i%len(keys)])
	}
}

// A downstream consumer drops the copies of an event delivered twice.
func ExampleDedup() {
	d, _ := sluice.NewDedup(100000)
	records := []sluice.Message{ // as read from the output topic
		{Value: []byte(`{"n":1}`), Headers: []sluice.Header{{Key: sluice.HeaderIdempotencyKey, Value: []byte("orders/0@7")}}},
		{Value: []byte(`{"n":2}`), Headers: []sluice.Header{{Key: sluice.HeaderIdempotencyKey, Value: []byte("orders/0@8")}}},
		{Value: []byte(`{"n":1}`), Headers: []sluice.Header{{Key: sluice.HeaderIdempotencyKey, Value: []byte("orders/0@7")}}}, // redelivered
	}
	for _, r := range records {
		key, _ := r.Header(sluice.HeaderIdempotencyKey)
		if d.Seen(string(key)) {
			continue
		}
		fmt.Println(string(r.Value))
	}
	// Output:
	// {"n":1}
	// {"n":2}
}
