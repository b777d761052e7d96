package redisstream_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

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
		var logs bytes.Buffer
		snk, err := redisstream.NewSink(context.Background(), out, opt, redisstream.WithMaxLen(100), redisstream.WithAtomicAck(),
			redisstream.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
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
		// A sink that cannot acknowledge says so, once, instead of
		// silently writing apart.
		if warned := strings.Contains(logs.String(), "written apart"); warned == shared {
			t.Errorf("shared %v: warning logged %v: %q", shared, warned, logs.String())
		}
		_ = snk.Close()
	}
}

// WithAtomicAck is refused where it could not hold, rather than ignored:
// with a replica wait, and with a cluster client.
func TestAtomicAckRefusedWhereItCannotHold(t *testing.T) {
	ctx := context.Background()
	_, err := redisstream.NewSink(ctx, "out", redisstream.WithAtomicAck(), redisstream.WithWaitReplicas(1, time.Second))
	if !errors.Is(err, sluice.ErrInvalidConfig) || !strings.Contains(err.Error(), "WithWaitReplicas") {
		t.Errorf("with WithWaitReplicas: %v", err)
	}
	cluster := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{"127.0.0.1:1"}})
	defer cluster.Close()
	_, err = redisstream.NewSink(ctx, "out", redisstream.WithClient(cluster), redisstream.WithAtomicAck())
	if !errors.Is(err, sluice.ErrInvalidConfig) || !strings.Contains(err.Error(), "*redis.ClusterClient") {
		t.Errorf("with a cluster client: %v", err)
	}
}
