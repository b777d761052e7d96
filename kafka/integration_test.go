package kafka

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/internal/testutil"
	"github.com/sluicehq/sluice/jsonenrich"
)

// TestKafkaOutOfOrderCommitAndRestart forces later offsets to finish first,
// checks the committed offset never passes an unfinished event, then kills
// the consumer and checks a restart redelivers from the first unfinished
// offset.
func TestKafkaOutOfOrderCommitAndRestart(t *testing.T) {
	bs := brokers(t)
	topic := createTopic(t, bs, "ooo", 1)
	group := topic + "-g"
	produce(t, bs, topic, 1, 10)

	src, err := NewSource(context.Background(), bs, group, []string{topic}, WithLogger(testutil.Quiet()))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	msgs := fetchN(t, src, 10, 60*time.Second)
	ack := func(offs ...int) {
		t.Helper()
		for _, o := range offs {
			if err := src.Ack(context.Background(), []*sluice.Message{msgs[o]}); err != nil {
				t.Fatal(err)
			}
		}
		if err := src.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	ack(9, 8, 5, 4)
	if got := committed(t, bs, group, topic, 0); got > 0 {
		t.Fatalf("committed %d while offset 0 is unfinished", got)
	}
	ack(1, 0, 2)
	if got := committed(t, bs, group, topic, 0); got != 3 {
		t.Fatalf("committed %d, want 3", got)
	}
	ack(6, 7) // 3 stays unfinished
	if got := committed(t, bs, group, topic, 0); got != 3 {
		t.Fatalf("committed %d with 3 unfinished, want 3", got)
	}
	if err := src.Close(); err != nil { // no drain: 3 is still in flight
		t.Fatal(err)
	}
	if got := committed(t, bs, group, topic, 0); got != 3 {
		t.Fatalf("after close committed %d, want 3", got)
	}

	src2, err := NewSource(context.Background(), bs, group, []string{topic}, WithLogger(testutil.Quiet()))
	if err != nil {
		t.Fatal(err)
	}
	defer src2.Close()
	again := fetchN(t, src2, 7, 60*time.Second)
	for i, m := range again {
		if m.Origin.Offset != int64(3+i) {
			t.Fatalf("redelivery %d has offset %d, want %d", i, m.Origin.Offset, 3+i)
		}
	}
}

// countingSink records the distinct origins confirmed written, so a test
// can wait for completeness without reading the topics.
type countingSink struct {
	p    *Sink
	mu   sync.Mutex
	seen map[string]bool
	cond chan struct{}
}

func newCountingSink(p *Sink) *countingSink {
	return &countingSink{p: p, seen: map[string]bool{}, cond: make(chan struct{}, 1)}
}

func (c *countingSink) record(origins []sluice.Origin, err error) {
	failed := map[int]bool{}
	var we sluice.WriteErrors
	if errors.As(err, &we) {
		for _, e := range we {
			failed[e.Index] = true
		}
	} else if err != nil {
		return
	}
	c.mu.Lock()
	for i, o := range origins {
		if !failed[i] {
			c.seen[o.String()] = true
		}
	}
	c.mu.Unlock()
	select {
	case c.cond <- struct{}{}:
	default:
	}
}

func (c *countingSink) Write(ctx context.Context, msgs []*sluice.Message) error {
	err := c.p.Write(ctx, msgs)
	os := make([]sluice.Origin, len(msgs))
	for i, m := range msgs {
		os[i] = m.Origin
	}
	c.record(os, err)
	return err
}

func (c *countingSink) WriteDeadLetters(ctx context.Context, ls []sluice.DeadLetter) error {
	err := c.p.WriteDeadLetters(ctx, ls)
	os := make([]sluice.Origin, len(ls))
	for i, l := range ls {
		os[i] = l.Msg.Origin
	}
	c.record(os, err)
	return err
}

func (c *countingSink) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.seen)
}

// waitCount blocks until at least n distinct events were written.
func (c *countingSink) waitCount(t *testing.T, n int, within time.Duration) {
	t.Helper()
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	for c.count() < n {
		select {
		case <-c.cond:
		case <-deadline.C:
			t.Fatalf("timed out: %d of %d events written", c.count(), n)
		}
	}
}

// member is one pipeline instance of a test group.
type member struct {
	src    *Source
	cancel context.CancelFunc
	done   chan error
}

func startMember(t *testing.T, bs []string, group, topic string, sink sluice.Sink, enr sluice.Enricher, opts ...SourceOption) *member {
	t.Helper()
	src, err := NewSource(context.Background(), bs, group, []string{topic},
		append([]SourceOption{WithLogger(testutil.Quiet()), WithRevokeTimeout(5 * time.Second)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	p, err := sluice.New(src, enr, sink, sluice.WithLogger(testutil.Quiet()), sluice.WithConcurrency(16),
		sluice.WithDrainTimeout(5*time.Second), sluice.WithRetries(1), sluice.WithBackoff(time.Millisecond, 10*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &member{src: src, cancel: cancel, done: make(chan error, 1)}
	go func() { m.done <- p.Run(ctx) }()
	t.Cleanup(func() { m.stop(t) })
	return m
}

func (m *member) stop(t *testing.T) {
	if m.cancel == nil {
		return
	}
	m.cancel()
	m.cancel = nil
	if err := <-m.done; err != nil {
		t.Errorf("Run: %v", err)
	}
	if err := m.src.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}

// TestKafkaRebalance runs two pipeline instances over a 4-partition topic
// while 5,000 events flow, adds a third, stops one, and checks every event
// reached the output or the dead-letter topic.
func TestKafkaRebalance(t *testing.T) { testRebalance(t) }

// TestKafkaRebalanceCooperative is TestKafkaRebalance with the
// cooperative-sticky assignor: only the partitions that move are revoked.
func TestKafkaRebalanceCooperative(t *testing.T) {
	testRebalance(t, WithBalanceStrategies(sarama.NewBalanceStrategyCooperativeSticky()))
}

func testRebalance(t *testing.T, opts ...SourceOption) {
	if testing.Short() {
		t.Skip("slow")
	}
	bs := brokers(t)
	const n = 5000
	in := createTopic(t, bs, "rb-in", 4)
	out := createTopic(t, bs, "rb-out", 4)
	dlq := createTopic(t, bs, "rb-dlq", 1)
	group := in + "-g"
	prod, err := NewSink(context.Background(), bs, out, WithDeadLetterTopic(dlq), WithLogger(testutil.Quiet()))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	sink := newCountingSink(prod)
	enr := sluice.EnricherFunc(func(ctx context.Context, m *sluice.Message) (*sluice.Message, error) {
		if m.Origin.Offset%250 == 7 {
			return nil, sluice.Permanent(errors.New("unlucky offset"))
		}
		// A little work, so that many events are in flight at a rebalance.
		select {
		case <-time.After(time.Duration(rand.IntN(3)) * time.Millisecond):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return m, nil
	})

	// Publish in the background, in 10 waves, while the group changes.
	published := make(chan struct{})
	go func() {
		defer close(published)
		for w := range 10 {
			produceRange(t, bs, in, 4, w*n/10, (w+1)*n/10)
		}
	}()

	m1 := startMember(t, bs, group, in, sink, enr, opts...)
	m2 := startMember(t, bs, group, in, sink, enr, opts...)
	sink.waitCount(t, n/4, 2*time.Minute)
	m3 := startMember(t, bs, group, in, sink, enr, opts...)
	sink.waitCount(t, n/2, 2*time.Minute)
	m1.stop(t)
	<-published
	sink.waitCount(t, n, 2*time.Minute)
	m2.stop(t)
	m3.stop(t)

	outs := readAll(t, bs, out)
	dls := readAll(t, bs, dlq)
	seen := map[string]int{}
	for _, m := range append(outs, dls...) {
		tp, _ := header(m, sluice.HeaderSourceTopic)
		p, _ := header(m, sluice.HeaderSourcePartition)
		o, _ := header(m, sluice.HeaderSourceOffset)
		seen[tp+"/"+p+"@"+o]++
	}
	dups := 0
	for _, c := range seen {
		dups += c - 1
	}
	if len(seen) != n {
		t.Fatalf("%d distinct events in output+DLQ, want %d", len(seen), n)
	}
	t.Logf("rebalance: %d events, %d outputs, %d dead letters, %d duplicates, %d late acks ignored",
		n, len(outs), len(dls), dups, m1.src.ignored.Load()+m2.src.ignored.Load()+m3.src.ignored.Load())
	if len(dls) < n/250 {
		t.Fatalf("%d dead letters, want at least %d", len(dls), n/250)
	}
}

// produceRange writes events lo..hi-1 round-robin over the partitions.
func produceRange(t testing.TB, bs []string, topic string, partitions int32, lo, hi int) {
	cfg := testConfig()
	cfg.Producer.Partitioner = sarama.NewManualPartitioner
	p, err := sarama.NewSyncProducer(bs, cfg)
	if err != nil {
		t.Errorf("producer: %v", err)
		return
	}
	defer p.Close()
	var msgs []*sarama.ProducerMessage
	for i := lo; i < hi; i++ {
		msgs = append(msgs, &sarama.ProducerMessage{
			Topic: topic, Partition: int32(i) % partitions,
			Key: sarama.StringEncoder(strconv.Itoa(i)), Value: sarama.StringEncoder(fmt.Sprintf(`{"n":%d}`, i)),
		})
	}
	if err := p.SendMessages(msgs); err != nil {
		t.Errorf("produce: %v", err)
	}
}

// TestKafkaStaticMembership restarts a static member within the session
// timeout and checks that the group does not reassign partitions.
func TestKafkaStaticMembership(t *testing.T) {
	bs := brokers(t)
	topic := createTopic(t, bs, "static", 2)
	group := topic + "-g"
	opts := func(id string) []SourceOption {
		return []SourceOption{WithLogger(testutil.Quiet()), WithInstanceID(id), WithSessionTimeout(20*time.Second, 2*time.Second)}
	}
	a, err := NewSource(context.Background(), bs, group, []string{topic}, opts("a")...)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	testutil.Eventually(t, time.Minute, "a to join", func() bool { return a.Ready(context.Background()) == nil })
	b, err := NewSource(context.Background(), bs, group, []string{topic}, opts("b")...)
	if err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, time.Minute, "both to own one partition", func() bool {
		return len(a.owned()) == 1 && len(b.owned()) == 1
	})
	aSessions, aGen := a.sessionCount(), a.generation()
	bOwned := b.owned()
	b.Close() // a static member sends no LeaveGroup

	b2, err := NewSource(context.Background(), bs, group, []string{topic}, opts("b")...)
	if err != nil {
		t.Fatal(err)
	}
	defer b2.Close()
	testutil.Eventually(t, time.Minute, "b to rejoin with its partition", func() bool { return len(b2.owned()) == 1 })
	if got := b2.owned(); got[0] != bOwned[0] {
		t.Fatalf("b got %v back, had %v", got, bOwned)
	}
	if s, g := a.sessionCount(), a.generation(); s != aSessions || g != aGen {
		t.Fatalf("a went through a rebalance: sessions %d→%d, generation %d→%d", aSessions, s, aGen, g)
	}
}

// TestKafkaEventPath follows events through a pipeline: pause and resume
// act on broker fetches, dead letters carry their headers, and the lag
// reaches 0 once the pipeline has caught up.
func TestKafkaEventPath(t *testing.T) {
	bs := brokers(t)
	in := createTopic(t, bs, "path-in", 2)
	out := createTopic(t, bs, "path-out", 2)
	dlq := createTopic(t, bs, "path-dlq", 1)
	group := in + "-g"
	prod, err := NewSink(context.Background(), bs, out, WithDeadLetterTopic(dlq), WithLogger(testutil.Quiet()))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	sink := newCountingSink(prod)
	enr := sluice.EnricherFunc(func(_ context.Context, m *sluice.Message) (*sluice.Message, error) {
		if bytes.Contains(m.Value, []byte(`"n":13}`)) {
			return nil, sluice.Permanent(errors.New("thirteen"))
		}
		v, err := jsonenrich.Merge(m.Value, jsonenrich.DefaultKey, []byte(`"ok"`))
		return m.WithValue(v), err
	})
	reg := sarama.NewConfig().MetricRegistry // a fresh go-metrics registry
	produce(t, bs, in, 2, 20)
	m := startMember(t, bs, group, in, sink, enr, WithSaramaConfig(func(c *sarama.Config) { c.MetricRegistry = reg }))
	sink.waitCount(t, 20, time.Minute)
	lagIs := func(want int64) func() bool {
		return func() bool {
			l, err := m.src.Lag(context.Background())
			return err == nil && l.Total == want && len(l.ByPartition) == 2
		}
	}
	testutil.Eventually(t, 30*time.Second, "lag 0", lagIs(0))

	dls := readAll(t, bs, dlq)
	if len(dls) != 1 {
		t.Fatalf("%d dead letters, want 1", len(dls))
	}
	d := dls[0]
	if string(d.Value) != `{"n":13}` || string(d.Key) != "k13" {
		t.Fatalf("dead letter key/value = %q/%q", d.Key, d.Value)
	}
	for k, v := range map[string]string{"trace": "t13", "failure_reason": "", "failure_attempts": "1",
		"source_topic": in, "source_partition": "1", "source_offset": "6"} {
		got, ok := header(d, k)
		if !ok || (v != "" && got != v) {
			t.Errorf("dead-letter header %s = %q (present %v), want %q", k, got, ok, v)
		}
	}
	outs := readAll(t, bs, out)
	if len(outs) != 19 {
		t.Fatalf("%d outputs, want 19", len(outs))
	}
	if !bytes.Contains(outs[0].Value, []byte(`"ai_enrichment":"ok"`)) {
		t.Fatalf("output not enriched: %s", outs[0].Value)
	}

	// Pause: the partition consumers stop fetching from the broker. The
	// counter moves when a request is encoded, so a request built just
	// before the pause may still be counted after it: at most one. A fetch
	// already in flight returns (at the latest after the broker's
	// MaxWaitTime) and is not followed by another.
	fetches := func() int64 { return reg.Get("consumer-fetch-rate").(interface{ Count() int64 }).Count() }
	before := fetches()
	m.src.Pause()
	produceRange(t, bs, in, 2, 100, 110)
	testutil.Eventually(t, 30*time.Second, "lag 10 while paused", lagIs(10))
	// Asserting an absence needs a window: four of the consumer's long
	// polls (sarama's MaxWaitTime, 500ms), in which an unpaused consumer
	// fetches at least four times.
	pauseWindow := time.NewTimer(4 * sarama.NewConfig().Consumer.MaxWaitTime)
	<-pauseWindow.C
	settled := fetches()
	if n := settled - before; n > 1 {
		t.Fatalf("%d broker fetches while paused, want at most the one being built at the pause", n)
	}
	if sink.count() != 20 {
		t.Fatalf("events consumed while paused: %d", sink.count()-20)
	}
	m.src.Resume()
	sink.waitCount(t, 30, time.Minute)
	if fetches() <= settled {
		t.Fatal("no broker fetch after resume")
	}
	testutil.Eventually(t, 30*time.Second, "lag 0 after resume", lagIs(0))
}

// TestKafkaProducerBatches checks on the broker's own record batches that
// the producer compresses with LZ4 and is idempotent.
func TestKafkaProducerBatches(t *testing.T) {
	bs := brokers(t)
	out := createTopic(t, bs, "batches", 1)
	p, err := NewSink(context.Background(), bs, out, WithLogger(testutil.Quiet()))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	msgs := make([]*sluice.Message, 100)
	for i := range msgs {
		msgs[i] = &sluice.Message{Value: bytes.Repeat([]byte(`{"x":1}`), 50), Origin: sluice.Origin{Topic: "in", Offset: int64(i)}}
	}
	if err := p.Write(context.Background(), msgs); err != nil {
		t.Fatal(err)
	}
	codecs, pids := batchInfo(t, bs, out, 0)
	if len(codecs) == 0 {
		t.Fatal("no record batch")
	}
	for i := range codecs {
		if codecs[i] != sarama.CompressionLZ4 || pids[i] < 0 {
			t.Fatalf("batch %d: codec %v producer id %d; want lz4 and an id >= 0", i, codecs[i], pids[i])
		}
	}
	t.Logf("%d batches for 100 records, all LZ4, producer id %d", len(codecs), pids[0])

	// A record over the broker's limit is dead-letter material.
	big := &sluice.Message{Value: bytes.Repeat([]byte("x"), 2<<20)}
	err = p.Write(context.Background(), []*sluice.Message{big})
	var we sluice.WriteErrors
	if !errors.As(err, &we) || !errors.Is(we[0].Err, sluice.ErrPermanent) {
		t.Fatalf("oversized write: %v, want a permanent WriteError", err)
	}
}

// TestKafkaStartAt checks where a new group starts on a topic with a
// backlog: at the oldest retained event by default, after the newest with
// WithStartAt(Newest). The redisstream suite has the same test.
func TestKafkaStartAt(t *testing.T) {
	bs := brokers(t)
	topic := createTopic(t, bs, "startat", 1)
	produceRange(t, bs, topic, 1, 0, 5) // the backlog

	oldest, err := NewSource(context.Background(), bs, topic+"-oldest", []string{topic}, WithLogger(testutil.Quiet()))
	if err != nil {
		t.Fatal(err)
	}
	defer oldest.Close()
	if got := fetchN(t, oldest, 5, 60*time.Second); string(got[0].Value) != `{"n":0}` || got[0].Origin.Offset != 0 {
		t.Fatalf("default start: first event %s at offset %d, want the backlog's first", got[0].Value, got[0].Origin.Offset)
	}

	newest, err := NewSource(context.Background(), bs, topic+"-newest", []string{topic}, WithLogger(testutil.Quiet()), WithStartAt(Newest))
	if err != nil {
		t.Fatal(err)
	}
	defer newest.Close()
	testutil.Eventually(t, 60*time.Second, "the newest group to own its partition", func() bool { return len(newest.owned()) == 1 })
	produceRange(t, bs, topic, 1, 5, 8)
	got := fetchN(t, newest, 3, 60*time.Second)
	for i, m := range got {
		if want := fmt.Sprintf(`{"n":%d}`, 5+i); string(m.Value) != want {
			t.Fatalf("WithStartAt(Newest): event %d is %s, want %s (the backlog must be skipped)", i, m.Value, want)
		}
	}
}
