package redisstream_test

// Fast tests on miniredis, an embedded server. They cover the mapping and the
// pipeline wiring; the behaviour that depends on Redis's own bookkeeping
// (delivery counts, XAUTOCLAIM of deleted entries, lag) is tested against a
// real server in integration_test.go and crash_test.go.

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/internal/testutil"
	"github.com/sluicehq/sluice/redisstream"
)

func miniClient(t *testing.T) *redis.Client {
	t.Helper()
	srv := miniredis.RunT(t)
	c := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func TestFastPipelineClasses(t *testing.T) {
	c := miniClient(t)
	in, out, dlq := "in", "out", "dlq"
	_, classes := publishClasses(t, c, in, 120)
	src := newSource(t, in, "g", redisstream.WithClient(c))
	sink, err := redisstream.NewSink(context.Background(), out, redisstream.WithClient(c), redisstream.WithDeadLetterStream(dlq))
	if err != nil {
		t.Fatal(err)
	}
	r := startPipeline(t, src, classEnricher(), sink)
	var o outcome
	testutil.WaitFor(t, 30*time.Second, "all outcomes", func() (bool, string) {
		o = collect(t, c, in, out, dlq)
		return o.done() >= 120, fmt.Sprintf("%d done", o.done())
	})
	r.stop(t)
	verifyClasses(t, o, classes)
	if n := pending(t, c, in, "g"); n != 0 {
		t.Errorf("%d pending", n)
	}
	if err := src.Ready(ctxT(t, 5*time.Second)); err != nil {
		t.Errorf("Ready: %v", err)
	}
}

func TestFastSinkMaxLenAndKey(t *testing.T) {
	c := miniClient(t)
	sink, err := redisstream.NewSink(context.Background(), "out", redisstream.WithClient(c), redisstream.WithMaxLen(5), redisstream.WithKeyField("k"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t, 10*time.Second)
	var msgs []*sluice.Message
	for i := range 20 {
		msgs = append(msgs, &sluice.Message{
			Key: []byte("key"), Value: []byte(fmt.Sprint(i)), Headers: []sluice.Header{{Key: "h", Value: []byte("v")}},
			Origin: sluice.Origin{Topic: "kafka-topic", Partition: 2, Offset: int64(i)},
		})
	}
	if err := sink.Write(ctx, msgs); err != nil {
		t.Fatal(err)
	}
	entries := readStream(t, c, "out")
	if len(entries) > 19 || len(entries) < 5 {
		t.Errorf("%d entries after MAXLEN ~ 5", len(entries))
	}
	last := entries[len(entries)-1]
	for k, v := range map[string]string{"payload": "19", "k": "key", "h": "v", "source_topic": "kafka-topic", "source_partition": "2", "source_offset": "19"} {
		if got, _ := field(last, k); got != v {
			t.Errorf("field %s = %q, want %q (all %v)", k, got, v, last.Values)
		}
	}
}

func TestFastSinkRefusesBadJSON(t *testing.T) {
	c := miniClient(t)
	sink, err := redisstream.NewSink(context.Background(), "out", redisstream.WithClient(c), redisstream.WithFieldsAsJSON())
	if err != nil {
		t.Fatal(err)
	}
	err = sink.Write(ctxT(t, 10*time.Second), []*sluice.Message{{Value: []byte(`{"a":"b"}`)}, {Value: []byte(`[]`)}})
	we, ok := err.(sluice.WriteErrors)
	if !ok || len(we) != 1 || we[0].Index != 1 || !errors.Is(we[0].Err, sluice.ErrPermanent) {
		t.Fatalf("Write: %v, want one permanent error for message 1", err)
	}
	if n := len(readStream(t, c, "out")); n != 1 {
		t.Errorf("%d entries written, want 1", n)
	}
}

func TestFastCloseUnblocksFetch(t *testing.T) {
	c := miniClient(t)
	src := newSource(t, "in", "g", redisstream.WithClient(c))
	errc := make(chan error, 1)
	go func() {
		_, err := src.Fetch(context.Background(), 10)
		errc <- err
	}()
	// Wait until the group exists, so the Fetch is in its read loop.
	testutil.WaitFor(t, 10*time.Second, "the group", func() (bool, string) {
		g, err := c.XInfoGroups(context.Background(), "in").Result()
		return err == nil && len(g) == 1, fmt.Sprint(err)
	})
	if err := src.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != sluice.ErrSourceClosed {
		t.Errorf("Fetch after Close: %v, want ErrSourceClosed", err)
	}
	if err := src.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// A record from Kafka with a "payload" header: written as a field, the header
// would replace the event. Write refuses it as permanent, writes the rest of
// the batch, and its dead letter carries the event, not the header.
func TestFastSinkRefusesHeaderNamedLikeThePayload(t *testing.T) {
	c := miniClient(t)
	sink, err := redisstream.NewSink(context.Background(), "out", redisstream.WithClient(c), redisstream.WithDeadLetterStream("dlq"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t, 10*time.Second)
	bad := &sluice.Message{Value: []byte(`{"text":"the event"}`), Headers: []sluice.Header{{Key: "payload", Value: []byte("a header")}},
		Origin: sluice.Origin{Topic: "in", Partition: 0, Offset: 8}}
	good := &sluice.Message{Value: []byte(`{"text":"another"}`), Origin: sluice.Origin{Topic: "in", Partition: 0, Offset: 9}}
	err = sink.Write(ctx, []*sluice.Message{bad, good})
	var we sluice.WriteErrors
	if !errors.As(err, &we) || len(we) != 1 || we[0].Index != 0 || !errors.Is(we[0].Err, sluice.ErrPermanent) ||
		!errors.Is(we[0].Err, redisstream.ErrFieldCollision) {
		t.Fatalf("Write: %v, want one permanent ErrFieldCollision for message 0", err)
	}
	outs := readStream(t, c, "out")
	if len(outs) != 1 {
		t.Fatalf("%d entries written, want 1", len(outs))
	}
	if got, _ := field(outs[0], "payload"); got != `{"text":"another"}` {
		t.Errorf("written payload %q", got)
	}
	if err := sink.WriteDeadLetters(ctx, []sluice.DeadLetter{{Msg: bad, Reason: we[0].Err.Error(), Attempts: 0}}); err != nil {
		t.Fatal(err)
	}
	dls := readStream(t, c, "dlq")
	if len(dls) != 1 {
		t.Fatalf("%d dead letters, want 1", len(dls))
	}
	if got, _ := field(dls[0], "payload"); got != `{"text":"the event"}` {
		t.Errorf("dead letter payload %q, want the event", got)
	}
	if got, _ := field(dls[0], "failure_reason"); !strings.Contains(got, `header "payload"`) {
		t.Errorf("dead letter failure_reason %q does not name the header", got)
	}
}
