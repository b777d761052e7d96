package kafka

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/internal/testutil"
)

// readCommitted reads topic as a downstream consumer with
// isolation.level=read_committed does, from the start to the end of what
// is decided now. It first appends a plain (non-transactional) end marker
// to every partition and reads until it meets it, so that it neither stops
// early nor waits on commit markers, which a consumer never sees. Call it
// once nothing writes to topic any more. The markers are not returned.
func readCommitted(t testing.TB, bs []string, topic string) []*sarama.ConsumerMessage {
	t.Helper()
	cfg := testConfig()
	cfg.Producer.Partitioner = sarama.NewManualPartitioner
	cfg.Consumer.IsolationLevel = sarama.ReadCommitted
	client, err := sarama.NewClient(bs, cfg)
	if err != nil {
		t.Fatalf("client: %v", err)
	}
	defer client.Close()
	ps, err := client.Partitions(topic)
	if err != nil {
		t.Fatalf("partitions: %v", err)
	}
	prod, err := sarama.NewSyncProducerFromClient(client)
	if err != nil {
		t.Fatalf("producer: %v", err)
	}
	ends := map[int32]int64{}
	for _, p := range ps {
		_, off, err := prod.SendMessage(&sarama.ProducerMessage{Topic: topic, Partition: p, Value: sarama.StringEncoder("end")})
		if err != nil {
			t.Fatalf("end marker: %v", err)
		}
		ends[p] = off
	}
	c, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		t.Fatalf("consumer: %v", err)
	}
	defer c.Close()
	var out []*sarama.ConsumerMessage
	for _, p := range ps {
		pc, err := c.ConsumePartition(topic, p, sarama.OffsetOldest)
		if err != nil {
			t.Fatalf("consume: %v", err)
		}
		timeout := time.NewTimer(60 * time.Second)
		for done := false; !done; {
			select {
			case m := <-pc.Messages():
				if m.Offset == ends[p] {
					done = true
					continue
				}
				out = append(out, m)
			case <-timeout.C:
				t.Fatalf("timed out reading %s/%d (read_committed) up to the end marker at %d", topic, p, ends[p])
			}
		}
		timeout.Stop()
		pc.Close()
	}
	return out
}

// countOrigins counts, per input "topic/partition@offset", the records of
// msgs (outputs and dead letters).
func countOrigins(msgs []*sarama.ConsumerMessage) map[string]int {
	seen := map[string]int{}
	for _, m := range msgs {
		tp, _ := header(m, sluice.HeaderSourceTopic)
		p, _ := header(m, sluice.HeaderSourcePartition)
		o, _ := header(m, sluice.HeaderSourceOffset)
		seen[tp+"/"+p+"@"+o]++
	}
	return seen
}

// exactlyOnce checks that every one of n inputs appears once in outs+dls.
func exactlyOnce(t testing.TB, n int, outs, dls []*sarama.ConsumerMessage) (missing, dups int) {
	t.Helper()
	seen := countOrigins(append(append([]*sarama.ConsumerMessage(nil), outs...), dls...))
	for _, c := range seen {
		dups += c - 1
	}
	missing = n - len(seen)
	return missing, dups
}

// txnMember is one exactly-once pipeline instance.
type txnMember struct {
	src    *Source
	sink   *TxnSink
	cancel context.CancelFunc
	done   chan error
}

func startTxnMember(t *testing.T, bs []string, group, in, out, dlq, id string, enr sluice.Enricher, srcOpts []SourceOption, popts ...sluice.Option) *txnMember {
	t.Helper()
	src, err := NewSource(context.Background(), bs, group, []string{in},
		append([]SourceOption{WithLogger(testutil.Quiet()), WithRevokeTimeout(5 * time.Second), WithReadCommitted()}, srcOpts...)...)
	if err != nil {
		t.Fatal(err)
	}
	sink, err := NewTxnSink(context.Background(), bs, out, src, id, WithDeadLetterTopic(dlq), WithLogger(testutil.Quiet()))
	if err != nil {
		_ = src.Close()
		t.Fatal(err)
	}
	p, err := sluice.New(src, enr, sink, append([]sluice.Option{sluice.WithLogger(testutil.Quiet()), sluice.WithConcurrency(16),
		sluice.WithDrainTimeout(5 * time.Second), sluice.WithRetries(1), sluice.WithBackoff(time.Millisecond, 10*time.Millisecond)}, popts...)...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &txnMember{src: src, sink: sink, cancel: cancel, done: make(chan error, 1)}
	go func() { m.done <- p.Run(ctx) }()
	t.Cleanup(func() { m.stop(t) })
	return m
}

func (m *txnMember) stop(t *testing.T) {
	if m.cancel == nil {
		return
	}
	m.cancel()
	m.cancel = nil
	if err := <-m.done; err != nil {
		t.Errorf("Run: %v", err)
	}
	if err := m.src.Close(); err != nil {
		t.Errorf("source Close: %v", err)
	}
	if err := m.sink.Close(); err != nil {
		t.Errorf("sink Close: %v", err)
	}
}

// outOfOrder finishes events after random short delays, and dead-letters
// one offset in 100.
var outOfOrder = sluice.EnricherFunc(func(ctx context.Context, m *sluice.Message) (*sluice.Message, error) {
	if m.Origin.Offset%100 == 3 {
		return nil, sluice.Permanent(errors.New("unlucky offset"))
	}
	select {
	case <-time.After(time.Duration(rand.IntN(4)) * time.Millisecond):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return m.WithValue(append([]byte(`{"enriched":true,"in":`), append(m.Value, '}')...)), nil
})

// TestKafkaTxnExactlyOnce runs an exactly-once pipeline whose events finish
// out of order and sometimes fail, and reads the output and dead-letter
// topics as a read_committed consumer: every input appears exactly once,
// and the group's offsets reached the end of every partition.
func TestKafkaTxnExactlyOnce(t *testing.T) {
	bs := brokers(t)
	const n = 3000
	in := createTopic(t, bs, "eos-in", 4)
	out := createTopic(t, bs, "eos-out", 4)
	dlq := createTopic(t, bs, "eos-dlq", 1)
	group := in + "-g"
	produce(t, bs, in, 4, n)
	m := startTxnMember(t, bs, group, in, out, dlq, in+"-tx", outOfOrder, nil)
	testutil.WaitFor(t, time.Minute, "all events committed", func() (bool, string) {
		st := m.sink.Stats()
		return st.Events >= n, fmt.Sprintf("%+v", st)
	})
	m.stop(t)
	outs, dls := readCommitted(t, bs, out), readCommitted(t, bs, dlq)
	missing, dups := exactlyOnce(t, n, outs, dls)
	if missing != 0 || dups != 0 {
		t.Fatalf("%d missing, %d duplicates (outputs %d, dead letters %d)", missing, dups, len(outs), len(dls))
	}
	if want := 4 * (n/4/100 + 1); len(dls) != want { // offsets 3, 103, ... of each partition
		t.Fatalf("%d dead letters, want %d", len(dls), want)
	}
	for p := range int32(4) {
		if got, want := committed(t, bs, group, in, p), int64(n/4); got != want {
			t.Fatalf("partition %d: committed offset %d, want %d", p, got, want)
		}
	}
	t.Logf("exactly once: %d events, %d outputs, %d dead letters; %+v", n, len(outs), len(dls), m.sink.Stats())
}

// TestKafkaTxnHoldsEventsAboveAGap blocks one event and checks that no
// output of its partition at or above its offset becomes visible to a
// read_committed consumer, nor is its offset committed, until it finishes;
// the other partitions are committed meanwhile. Then it lets the event go
// and everything is committed exactly once.
func TestKafkaTxnHoldsEventsAboveAGap(t *testing.T) {
	bs := brokers(t)
	const n = 400
	in := createTopic(t, bs, "gap-in", 2)
	out := createTopic(t, bs, "gap-out", 2)
	dlq := createTopic(t, bs, "gap-dlq", 1)
	group := in + "-g"
	produce(t, bs, in, 2, n)
	const gap = 50 // offset of partition 0 that waits
	release := make(chan struct{})
	enr := sluice.EnricherFunc(func(ctx context.Context, m *sluice.Message) (*sluice.Message, error) {
		if m.Origin.Partition == 0 && m.Origin.Offset == gap {
			select {
			case <-release:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		return m, nil
	})
	// The window holds every event: those finished above the gap keep
	// their slots until it closes, and must not starve partition 1.
	m := startTxnMember(t, bs, group, in, out, dlq, in+"-tx", enr, nil, sluice.WithMaxInFlight(1024))
	testutil.WaitFor(t, time.Minute, "partition 1 committed to its end, partition 0 to the gap", func() (bool, string) {
		c0, c1 := committed(t, bs, group, in, 0), committed(t, bs, group, in, 1)
		return c0 == gap && c1 == n/2, fmt.Sprintf("committed %d and %d; %+v", c0, c1, m.sink.Stats())
	})
	// Every event of partition 0 above the gap has finished by now (the
	// enricher returns at once), yet none may be visible.
	for _, r := range readCommitted(t, bs, out) {
		p, _ := header(r, sluice.HeaderSourcePartition)
		o, _ := header(r, sluice.HeaderSourceOffset)
		off, _ := strconv.ParseInt(o, 10, 64)
		if p == "0" && off >= gap {
			t.Fatalf("output of offset %d of partition 0 is visible while offset %d is unfinished", off, gap)
		}
	}
	close(release)
	testutil.WaitFor(t, time.Minute, "all committed", func() (bool, string) {
		st := m.sink.Stats()
		return st.Events >= n, fmt.Sprintf("%+v", st)
	})
	m.stop(t)
	outs, dls := readCommitted(t, bs, out), readCommitted(t, bs, dlq)
	outs = dropMarkers(outs)
	if missing, dups := exactlyOnce(t, n, outs, dls); missing != 0 || dups != 0 {
		t.Fatalf("%d missing, %d duplicates", missing, dups)
	}
}

// dropMarkers removes the end markers earlier reads appended.
func dropMarkers(msgs []*sarama.ConsumerMessage) []*sarama.ConsumerMessage {
	out := msgs[:0]
	for _, m := range msgs {
		if string(m.Value) != "end" {
			out = append(out, m)
		}
	}
	return out
}

// TestKafkaTxnFencesAZombie pauses member A past its session timeout (its
// consumer's connections are black-holed) while it holds finished events
// behind an unfinished one; member B takes every partition over and
// processes everything. Then A's last event finishes and A tries to commit
// its events for partitions it no longer owns: the broker must refuse the
// transaction (KIP-447 fencing), and a read_committed consumer sees every
// input exactly once.
func TestKafkaTxnFencesAZombie(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: waits out a 6s session timeout")
	}
	bs := brokers(t)
	const n = 400
	in := createTopic(t, bs, "zombie-in", 2)
	out := createTopic(t, bs, "zombie-out", 2)
	dlq := createTopic(t, bs, "zombie-dlq", 1)
	group := in + "-g"
	produce(t, bs, in, 2, n)

	proxy, viaProxy, _ := proxied(t, bs[0])
	const gap = 10
	release := make(chan struct{})
	var aDone atomic.Int64
	enrA := sluice.EnricherFunc(func(ctx context.Context, m *sluice.Message) (*sluice.Message, error) {
		if m.Origin.Offset == gap {
			select {
			case <-release:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		aDone.Add(1)
		return m, nil
	})
	session := []SourceOption{viaProxy, WithSessionTimeout(6*time.Second, 500*time.Millisecond), WithInstanceID("a")}
	a := startTxnMember(t, bs, group, in, out, dlq, in+"-tx-a", enrA, session, sluice.WithMaxInFlight(1024))
	testutil.WaitFor(t, time.Minute, "A finished events above the gap and committed up to it", func() (bool, string) {
		c0, c1 := committed(t, bs, group, in, 0), committed(t, bs, group, in, 1)
		return aDone.Load() == n-2 && c0 == gap && c1 == gap, fmt.Sprintf("finished %d, committed %d and %d", aDone.Load(), c0, c1)
	})
	if err := proxy.Blackhole(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = proxy.Heal() }) // before A stops, if the test fails
	b := startTxnMember(t, bs, group, in, out, dlq, in+"-tx-b", outOfOrder, []SourceOption{WithSessionTimeout(6*time.Second, 500*time.Millisecond), WithInstanceID("b")})
	testutil.WaitFor(t, 2*time.Minute, "B owns both partitions and committed everything", func() (bool, string) {
		return len(b.src.owned()) == 2 && b.sink.Stats().Events >= n-2*gap,
			fmt.Sprintf("B owns %v, %+v", b.src.owned(), b.sink.Stats())
	})
	// A wakes up: its held events can now be committed, as far as it knows.
	close(release)
	testutil.WaitFor(t, time.Minute, "A's transaction fenced", func() (bool, string) {
		st := a.sink.Stats()
		return st.Fenced > 0, fmt.Sprintf("A: %+v", st)
	})
	if err := proxy.Heal(); err != nil {
		t.Fatal(err)
	}
	b.stop(t)
	a.stop(t)
	outs, dls := readCommitted(t, bs, out), readCommitted(t, bs, dlq)
	if missing, dups := exactlyOnce(t, n, outs, dls); missing != 0 || dups != 0 {
		t.Fatalf("%d missing, %d duplicates; A %+v, B %+v", missing, dups, a.sink.Stats(), b.sink.Stats())
	}
	t.Logf("zombie fenced: A %+v, B %+v", a.sink.Stats(), b.sink.Stats())
}

// TestKafkaTxnSinkOptions checks what NewTxnSink refuses.
func TestKafkaTxnSinkOptions(t *testing.T) {
	bs := brokers(t)
	in := createTopic(t, bs, "eos-opt", 1)
	plain, err := NewSource(context.Background(), bs, in+"-g", []string{in}, WithLogger(testutil.Quiet()))
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	_, err = NewTxnSink(context.Background(), bs, in, plain, "", WithLogger(testutil.Quiet()), WithTxnInterval(0))
	if !errors.Is(err, sluice.ErrInvalidConfig) {
		t.Fatalf("err = %v, want ErrInvalidConfig", err)
	}
	for _, want := range []string{"WithReadCommitted", "transactional id is empty", "WithTxnInterval"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if _, err := NewSink(context.Background(), bs, in, WithTxnInterval(time.Second)); !errors.Is(err, sluice.ErrInvalidConfig) {
		t.Errorf("NewSink with WithTxnInterval: %v, want ErrInvalidConfig", err)
	}
	rc, err := NewSource(context.Background(), bs, in+"-g2", []string{in}, WithLogger(testutil.Quiet()), WithReadCommitted())
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	s1, err := NewTxnSink(context.Background(), bs, in, rc, in+"-tx", WithLogger(testutil.Quiet()))
	if err != nil {
		t.Fatal(err)
	}
	defer s1.Close()
	if _, err := NewTxnSink(context.Background(), bs, in, rc, in+"-tx2", WithLogger(testutil.Quiet())); !errors.Is(err, sluice.ErrInvalidConfig) {
		t.Errorf("second sink on one source: %v, want ErrInvalidConfig", err)
	}
	if err := rc.Ack(context.Background(), nil); !errors.Is(err, sluice.ErrFatal) {
		t.Errorf("Ack on the source of a transactional sink: %v, want ErrFatal", err)
	}
}

// TestKafkaTxnSurvivesProducerFaults takes the transactional producer's
// connections down (the proxy refuses them) for a few seconds, then resets
// every connection for a while, during the run: transactions fail and are
// aborted or the producer rebuilt, their events stay staged, and a later
// transaction commits them; a read_committed consumer sees every input once.
func TestKafkaTxnSurvivesProducerFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: waits out producer retries")
	}
	bs := brokers(t)
	const n = 2000
	in := createTopic(t, bs, "txfault-in", 4)
	out := createTopic(t, bs, "txfault-out", 4)
	dlq := createTopic(t, bs, "txfault-dlq", 1)
	group := in + "-g"
	produce(t, bs, in, 4, n)
	proxy, viaProxy, _ := proxied(t, bs[0])

	src, err := NewSource(context.Background(), bs, group, []string{in}, WithLogger(testutil.Quiet()), WithReadCommitted())
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	snk, err := NewTxnSink(context.Background(), bs, out, src, in+"-tx", WithDeadLetterTopic(dlq), WithLogger(testutil.Quiet()), viaProxy)
	if err != nil {
		t.Fatal(err)
	}
	defer snk.Close()
	slow := sluice.EnricherFunc(func(ctx context.Context, m *sluice.Message) (*sluice.Message, error) {
		select { // about 800 events/s with 16 calls at once: the run spans the faults
		case <-time.After(20 * time.Millisecond):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return outOfOrder.Enrich(ctx, m)
	})
	p, err := sluice.New(src, slow, snk, sluice.WithLogger(testutil.Quiet()), sluice.WithConcurrency(16), sluice.WithDrainTimeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	testutil.WaitFor(t, time.Minute, "some events committed", func() (bool, string) {
		st := snk.Stats()
		return st.Events >= 200, fmt.Sprintf("%+v", st)
	})
	if err := proxy.Down(); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, time.Minute, "a transaction failed", func() (bool, string) {
		st := snk.Stats()
		return st.Aborts > 0, fmt.Sprintf("%+v", st)
	})
	if err := proxy.Up(); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 2*time.Minute, "all committed", func() (bool, string) {
		st := snk.Stats()
		return st.Events >= n, fmt.Sprintf("%+v", st)
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	outs, dls := readCommitted(t, bs, out), readCommitted(t, bs, dlq)
	if missing, dups := exactlyOnce(t, n, outs, dls); missing != 0 || dups != 0 {
		t.Fatalf("%d missing, %d duplicates; %+v", missing, dups, snk.Stats())
	}
	t.Logf("producer faults: %+v", snk.Stats())
}
