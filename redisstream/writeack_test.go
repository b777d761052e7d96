package redisstream_test

import (
	"context"
	"testing"
	"time"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/redisstream"
)

// With WithAtomicAck, when the source and the sink share one client, Write
// appends the outputs
// and acknowledges their entries in one script, so an entry is never left
// pending once its output exists (no crash can fall between the two). A
// sink on another client only writes, and the entries wait for the
// pipeline's Ack.
func TestWriteAcknowledgesAtomically(t *testing.T) {
	c := newClient(t)
	ctx := ctxT(t, 30*time.Second)
	for _, shared := range []bool{true, false} {
		in, out := uniq(t, c, "in"), uniq(t, c, "out")
		add(t, c, in, []any{"payload", "a"}, []any{"payload", "b"}, []any{"payload", "c"})
		src := newSource(t, in, "g", redisstream.WithClient(c))
		opt := redisstream.WithClient(c)
		if !shared {
			opt = redisstream.WithAddr(redisAddr(t))
		}
		snk, err := redisstream.NewSink(context.Background(), out, opt, redisstream.WithMaxLen(100), redisstream.WithAtomicAck())
		if err != nil {
			t.Fatal(err)
		}
		got := fetchN(t, src, 3)
		outs := make([]*sluice.Message, len(got))
		for i, m := range got {
			outs[i] = m.WithValue(append([]byte("enriched "), m.Value...))
		}
		if err := snk.Write(ctx, outs); err != nil {
			t.Fatal(err)
		}
		written := readStream(t, c, out)
		if len(written) != 3 {
			t.Fatalf("shared %v: %d outputs, want 3", shared, len(written))
		}
		if v, _ := field(written[1], "payload"); v != "enriched b" {
			t.Errorf("shared %v: second output %q", shared, v)
		}
		if key, _ := field(written[2], sluice.HeaderIdempotencyKey); key != in+"/"+got[2].Origin.ID {
			t.Errorf("shared %v: idempotency_key %q", shared, key)
		}
		wantPending := int64(3)
		if shared {
			wantPending = 0
		}
		if p := pending(t, c, in, "g"); p != wantPending {
			t.Errorf("shared %v: %d entries pending after Write, want %d", shared, p, wantPending)
		}
		_ = snk.Close()
	}
}
