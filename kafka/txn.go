package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/internal/optcheck"
)

// Interface checks.
var (
	_ sluice.Sink             = (*TxnSink)(nil)
	_ sluice.DeadLetterWriter = (*TxnSink)(nil)
	_ sluice.AsyncAcker       = (*TxnSink)(nil)
	_ sluice.Flusher          = (*TxnSink)(nil)
	_ sluice.Readier          = (*TxnSink)(nil)
)

var (
	// ErrTransactionsUnavailable matches the error [NewTxnSink] returns when
	// the cluster does not serve transactions, most often because
	// transaction.state.log.replication.factor (3 by default) or
	// transaction.state.log.min.isr is larger than the number of brokers.
	ErrTransactionsUnavailable = errors.New("kafka: the cluster does not serve transactions")

	// ErrFenced matches the error a [TxnSink] reports for acks of a
	// partition that this member no longer owns: the broker refused the
	// transaction's offset commit because the group moved on (a rebalance,
	// or this member was paused past its session timeout). Their outputs
	// were aborted, and the member that owns the partition now processes
	// the events again.
	ErrFenced = errors.New("kafka: fenced: the partition belongs to another member now")
)

// TxnSink writes enriched events and dead letters to Kafka exactly once:
// every transaction holds the outputs and dead letters of a set of events
// together with the consumed offsets of those events, committed for the
// [Source]'s consumer group (AddOffsetsToTxn and TxnOffsetCommit). A
// downstream consumer with isolation.level=read_committed therefore sees
// the output (or the dead letter) of every input exactly once, whatever
// crashes, restarts or rebalances happen. Build it with [NewTxnSink].
//
// It implements [sluice.Sink], [sluice.DeadLetterWriter],
// [sluice.AsyncAcker], [sluice.Flusher] and [sluice.Readier]; [sluice.New]
// uses it as the pipeline's acker. Write and WriteDeadLetters only stage
// records; every [WithTxnInterval] the sink commits one transaction with
// the staged records of each partition below its first unfinished offset,
// and that offset. Events that finished above an unfinished one wait, in
// the pipeline's bounded in-flight window, until it finishes: a
// transaction never holds an output whose input offset it does not commit.
//
// Zombies are fenced (KIP-447): the offset commit of each transaction
// carries the consumer group generation, member id and instance id of the
// session that read the events, and the broker refuses it once the group
// has moved on; the transaction is then aborted and its acks are reported
// with [ErrFenced]. A transaction that fails otherwise is aborted and tried
// again with the same events, so nothing is lost; if the producer itself
// failed, it is rebuilt under the same transactional id, and the group's
// committed offsets tell whether the last transaction committed.
//
// The transactional id must be stable across restarts of one instance, so
// that a restarted instance aborts (or completes) the transaction its
// predecessor left open, and distinct between instances running at once:
// two producers with one id fence each other.
type TxnSink struct {
	src      *Source
	topic    string
	dlqTopic string
	id       string
	group    string
	instance *string
	brokers  []string
	log      *slog.Logger
	cfg      *sarama.Config
	timeout  time.Duration // connect timeout
	interval time.Duration

	txMu     sync.Mutex // one transaction at a time; guards ap and broken
	ap       sarama.AsyncProducer
	broken   bool       // the producer failed for good and must be rebuilt
	clientMu sync.Mutex // guards client, which Ready reads during a transaction
	client   sarama.Client
	closeOne sync.Once

	mu     sync.Mutex
	parts  map[*claim]*txnPart
	closed bool

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	commits   atomic.Int64
	aborts    atomic.Int64
	fenced    atomic.Int64
	committed atomic.Int64 // events whose offsets a transaction committed
	produced  atomic.Int64 // records failed by the producer, for logs
}

// txnPart is what a TxnSink holds for one claim: staged records by input
// offset, acks waiting for a commit, and how far it committed.
type txnPart struct {
	recs      map[int64]staged
	acks      []heldAck
	committed int64 // offset the last transaction committed for the claim
	abandoned int64 // lowest offset the pipeline abandoned, or -1
	dead      error // set once the claim can commit nothing more
}

// staged is a record waiting for its transaction.
type staged struct {
	topic   string
	key     []byte
	value   []byte
	headers []sarama.RecordHeader
}

// heldAck is one acked message waiting for the transaction that commits
// its offset.
type heldAck struct {
	off int64
	w   *ackWait
	idx int
}

// ackWait collects the outcome of one AckAsync call.
type ackWait struct {
	mu   sync.Mutex
	left int
	errs sluice.WriteErrors
	done func(error)
}

// settle records the outcome of message idx and returns true when that was
// the last one.
func (w *ackWait) settle(idx int, err error) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err != nil {
		w.errs = append(w.errs, sluice.WriteError{Index: idx, Err: err})
	}
	w.left--
	return w.left == 0
}

func (w *ackWait) finish() {
	if len(w.errs) > 0 {
		w.done(w.errs)
		return
	}
	w.done(nil)
}

// NewTxnSink returns an exactly-once sink for topic that commits the
// offsets of src, which must have been built with [WithReadCommitted] and
// must not have acknowledged anything yet. transactionalID names this
// instance's producer (see [TxnSink]). It takes the options of [NewSink]
// and [WithTxnInterval]; bad options fail with an error matching
// [sluice.ErrInvalidConfig]. Before it returns it initialises the
// transactional producer, which aborts or completes a transaction left
// open by a previous run with the same id; a cluster whose transaction
// coordinator does not answer within the connect timeout
// ([WithConnectTimeout]) fails it with an error matching
// [ErrTransactionsUnavailable], and one that does not answer at all with
// [ErrUnreachable].
func NewTxnSink(ctx context.Context, brokers []string, topic string, src *Source, transactionalID string, opts ...SinkOption) (*TxnSink, error) {
	c := sinkConfig(opts)
	validBrokers(c, brokers)
	if err := validTopic(topic); err != nil {
		c.reject("topic", err.Error(), topicRule)
	}
	if src == nil {
		c.reject("src", "the source is nil", "pass the *kafka.Source whose offsets the transactions commit")
	} else if src.client.Config().Consumer.IsolationLevel != sarama.ReadCommitted {
		c.reject("src", "the source reads uncommitted records and offsets", "build it with kafka.WithReadCommitted()")
	}
	if transactionalID == "" {
		c.reject("transactionalID", "the transactional id is empty", "pass an id that is stable across restarts of this instance and unique among running instances")
	}
	if !c.version.IsAtLeast(sarama.V2_5_0_0) {
		c.reject(optcheck.Call("WithVersion", c.version), "fencing of stale group members in transactions needs protocol version 2.5 or later",
			"raise WithVersion to 2.5 or later")
	}
	if c.txnInterval == 0 {
		c.txnInterval = DefaultTxnInterval
	}
	if err := c.errs.Err(); err != nil {
		return nil, err
	}
	sc, err := c.saramaConfig(func(sc *sarama.Config) {
		c.producerConfig(sc)
		sc.Producer.Return.Successes = false
		sc.Producer.Transaction.ID = transactionalID
		sc.Producer.Transaction.Timeout = max(10*time.Second, 10*c.txnInterval)
		sc.Producer.Transaction.Retry.Max = 50
		sc.Producer.Transaction.Retry.Backoff = 100 * time.Millisecond
	})
	if err != nil {
		return nil, err
	}
	if !src.attachTxn() {
		return nil, fmt.Errorf("%w: kafka: NewTxnSink(src): the source already has a transactional sink; build one sink per source", sluice.ErrInvalidConfig)
	}
	t := &TxnSink{
		src:      src,
		topic:    topic,
		dlqTopic: c.deadLetterTopic,
		id:       transactionalID,
		group:    src.group,
		brokers:  append([]string(nil), brokers...),
		log:      c.logger.With("transactional_id", transactionalID),
		cfg:      sc,
		timeout:  c.connectTimeout,
		interval: c.txnInterval,
		parts:    map[*claim]*txnPart{},
	}
	if id := src.cfg.instanceID; id != "" {
		t.instance = &id
	}
	if err := t.connect(ctx); err != nil {
		src.detachTxn()
		return nil, err
	}
	src.txn.Store(t)
	t.ctx, t.cancel = context.WithCancel(context.Background())
	t.wg.Add(1)
	go t.loop()
	return t, nil
}

// connect builds the client and the transactional producer; the producer's
// constructor runs InitProducerId. Caller holds txMu, or has the sink to
// itself.
func (t *TxnSink) connect(ctx context.Context) error {
	client, err := newClient(ctx, t.brokers, t.cfg, t.timeout)
	if err != nil {
		return err
	}
	ap, err := initProducer(ctx, client, t.timeout)
	if err != nil {
		_ = client.Close()
		if errors.Is(err, errInitTimeout) {
			return fmt.Errorf("%w: transactional producer %q: InitProducerId got no answer within %s (WithConnectTimeout); check that the brokers' transaction.state.log.replication.factor and transaction.state.log.min.isr do not exceed the number of brokers: %w", ErrTransactionsUnavailable, t.id, t.timeout, err)
		}
		if errors.Is(err, sarama.ErrConsumerCoordinatorNotAvailable) || errors.Is(err, sarama.ErrNotCoordinatorForConsumer) ||
			errors.Is(err, sarama.ErrTransactionCoordinatorFenced) || errors.Is(err, sarama.ErrOffsetsLoadInProgress) {
			return fmt.Errorf("%w: transactional producer %q: InitProducerId: %w; check that the brokers' transaction.state.log.replication.factor and transaction.state.log.min.isr do not exceed the number of brokers", ErrTransactionsUnavailable, t.id, err)
		}
		return fmt.Errorf("kafka: transactional producer %q: %w", t.id, err)
	}
	t.clientMu.Lock()
	t.client = client
	t.clientMu.Unlock()
	t.ap, t.broken = ap, false
	go t.drainErrors(ap)
	return nil
}

// errInitTimeout is why initProducer gave up.
var errInitTimeout = errors.New("timed out")

// initProducer builds the transactional producer, whose constructor runs
// InitProducerId and retries it for as long as the coordinator is
// unavailable, within timeout or until ctx ends. A producer built after
// that is closed.
func initProducer(ctx context.Context, client sarama.Client, timeout time.Duration) (sarama.AsyncProducer, error) {
	type result struct {
		ap  sarama.AsyncProducer
		err error
	}
	ch := make(chan result, 1)
	go func() {
		ap, err := sarama.NewAsyncProducerFromClient(client)
		ch <- result{ap, err}
	}()
	t := time.NewTimer(timeout)
	defer t.Stop()
	abandon := func() {
		go func() {
			if r := <-ch; r.ap != nil {
				_ = r.ap.Close()
			}
		}()
	}
	select {
	case r := <-ch:
		return r.ap, r.err
	case <-t.C:
		abandon()
		return nil, errInitTimeout
	case <-ctx.Done():
		abandon()
		return nil, ctx.Err()
	}
}

// drainErrors reads the producer's errors until it closes: a record that
// fails puts the transaction in error, and CommitTxn reports it.
func (t *TxnSink) drainErrors(ap sarama.AsyncProducer) {
	for e := range ap.Errors() {
		if t.produced.Add(1) == 1 || t.produced.Load()%1000 == 0 {
			t.log.Warn("kafka: transactional record failed; the transaction will be aborted and tried again", "topic", e.Msg.Topic, "err", e.Err)
		}
	}
}

// Write stages msgs for the next transaction. Each output must carry the
// Origin and Token of the input it was made from, as [sluice.Message.WithValue]
// keeps them; one that does not, or that is larger than the producer
// accepts, is refused with a [sluice.Permanent] error so that the pipeline
// dead-letters its input.
func (t *TxnSink) Write(_ context.Context, msgs []*sluice.Message) error {
	var werrs sluice.WriteErrors
	recs := make([]staged, len(msgs))
	for i, m := range msgs {
		if err := t.checkOrigin(m); err != nil {
			werrs = append(werrs, sluice.WriteError{Index: i, Err: sluice.Permanent(err)})
			continue
		}
		recs[i] = staged{topic: t.topic, key: m.Key, value: m.Value, headers: recordHeaders(m.Headers, m.Origin)}
		if err := t.checkSize(recs[i]); err != nil {
			werrs = append(werrs, sluice.WriteError{Index: i, Err: sluice.Permanent(err)})
		}
	}
	return t.stage(msgs, recs, werrs)
}

// WriteDeadLetters stages letters for the next transaction, with the
// original key, value and headers plus those of [sluice.DeadLetter.Headers].
func (t *TxnSink) WriteDeadLetters(_ context.Context, letters []sluice.DeadLetter) error {
	var werrs sluice.WriteErrors
	msgs := make([]*sluice.Message, len(letters))
	recs := make([]staged, len(letters))
	for i, d := range letters {
		msgs[i] = d.Msg
		if err := t.checkOrigin(d.Msg); err != nil {
			werrs = append(werrs, sluice.WriteError{Index: i, Err: sluice.Permanent(err)})
			continue
		}
		hs := d.Headers()
		rh := make([]sarama.RecordHeader, len(hs))
		for j, h := range hs {
			rh[j] = sarama.RecordHeader{Key: []byte(h.Key), Value: h.Value}
		}
		recs[i] = staged{topic: t.dlqTopic, key: d.Msg.Key, value: d.Msg.Value, headers: rh}
	}
	return t.stage(msgs, recs, werrs)
}

// stage keeps recs, by the offset of the input of msgs, except those
// refused in werrs.
func (t *TxnSink) stage(msgs []*sluice.Message, recs []staged, werrs sluice.WriteErrors) error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return fmt.Errorf("%w: transactional sink", ErrClosed)
	}
	bad := 0
	for i, m := range msgs {
		if bad < len(werrs) && werrs[bad].Index == i {
			bad++
			continue
		}
		p := t.part(m.Token.(*claim))
		if p.dead == nil {
			p.recs[m.Origin.Offset] = recs[i] // a write tried again replaces its record
		}
	}
	t.mu.Unlock()
	if len(werrs) > 0 {
		return werrs
	}
	return nil
}

func (t *TxnSink) checkOrigin(m *sluice.Message) error {
	if c, ok := m.Token.(*claim); !ok || c.topic != m.Origin.Topic || c.partition != m.Origin.Partition || m.Origin.Offset < 0 {
		return fmt.Errorf("kafka: exactly-once output %s does not carry the position of an event read by the transactional sink's source; build outputs with Message.WithValue, which keeps it", m.Origin)
	}
	return nil
}

// checkSize refuses a record larger than the producer accepts, which would
// otherwise fail every transaction it is in.
func (t *TxnSink) checkSize(r staged) error {
	n := len(r.key) + len(r.value) + 64
	for _, h := range r.headers {
		n += len(h.Key) + len(h.Value) + 10
	}
	if limit := t.cfg.Producer.MaxMessageBytes; n > limit {
		return fmt.Errorf("kafka: record of about %d bytes exceeds the producer's limit of %d (Producer.MaxMessageBytes)", n, limit)
	}
	return nil
}

// part returns the claim's part, creating it. A claim already revoked gets
// a dead part that is not kept: nothing more is committed for it, and a
// transaction never carries its offsets (with a stale generation they would
// fail the whole transaction). Caller holds t.mu.
func (t *TxnSink) part(c *claim) *txnPart {
	p := t.parts[c]
	if p == nil {
		c.mu.Lock()
		from, revoked := c.marked, c.revoked
		c.mu.Unlock()
		p = &txnPart{recs: map[int64]staged{}, committed: from, abandoned: -1}
		if revoked {
			p.dead = fmt.Errorf("kafka: partition %s/%d was revoked before these offsets were committed", c.topic, c.partition)
			return p
		}
		t.parts[c] = p
	}
	return p
}

// Ack records msgs as finished and waits until a transaction has committed
// them or ctx ends. The pipeline uses [TxnSink.AckAsync] instead.
func (t *TxnSink) Ack(ctx context.Context, msgs []*sluice.Message) error {
	ch := make(chan error, 1)
	t.AckAsync(ctx, msgs, func(err error) { ch <- err })
	select {
	case err := <-ch:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// AckAsync implements [sluice.AsyncAcker]: it records msgs as finished and
// calls done once the transactions that commit their offsets (and their
// staged outputs) have committed. Messages of a partition that was revoked
// or fenced, or that wait behind an event the pipeline abandoned, are
// reported in a [sluice.WriteErrors]; their outputs are never committed.
func (t *TxnSink) AckAsync(_ context.Context, msgs []*sluice.Message, done func(error)) {
	w := &ackWait{left: len(msgs), done: done}
	if len(msgs) == 0 {
		done(nil)
		return
	}
	var failed []ackFailure
	t.mu.Lock()
	for i, m := range msgs {
		c, ok := m.Token.(*claim)
		if !ok {
			failed = append(failed, ackFailure{i, fmt.Errorf("kafka: Ack of message %s that the source did not fetch", m.Origin)})
			continue
		}
		if t.closed {
			failed = append(failed, ackFailure{i, fmt.Errorf("%w: transactional sink", ErrClosed)})
			continue
		}
		p := t.part(c)
		c.mu.Lock()
		revoked := c.revoked
		if !revoked && p.dead == nil {
			c.track.Done(m.Origin.Offset)
		}
		c.mu.Unlock()
		select {
		case c.progress <- struct{}{}:
		default:
		}
		switch {
		case p.dead != nil:
			failed = append(failed, ackFailure{i, p.dead})
		case revoked:
			failed = append(failed, ackFailure{i, fmt.Errorf("kafka: partition %s/%d was revoked before its offset %d was committed", c.topic, c.partition, m.Origin.Offset)})
		case p.abandoned >= 0 && m.Origin.Offset > p.abandoned:
			failed = append(failed, ackFailure{i, abandonedErr(c, m.Origin.Offset, p.abandoned)})
		default:
			p.acks = append(p.acks, heldAck{off: m.Origin.Offset, w: w, idx: i})
		}
	}
	t.mu.Unlock()
	for _, f := range failed {
		if w.settle(f.idx, f.err) {
			w.finish()
		}
	}
}

// ackFailure is a message of an AckAsync call settled at once.
type ackFailure struct {
	idx int
	err error
}

// abandonedErr says why an ack above an abandoned offset is not committed.
func abandonedErr(c *claim, off, below int64) error {
	return fmt.Errorf("kafka: offset %d of %s/%d waits behind offset %d, which the pipeline abandoned", off, c.topic, c.partition, below)
}

// Abandon implements [sluice.AsyncAcker]: the offsets of msgs will not be
// acked in this run, so the acks held above them in their partitions are
// settled at once as not committed.
func (t *TxnSink) Abandon(msgs []*sluice.Message) {
	var done []*ackWait
	t.mu.Lock()
	for _, m := range msgs {
		c, ok := m.Token.(*claim)
		if !ok {
			continue
		}
		p := t.part(c)
		if p.abandoned >= 0 && p.abandoned <= m.Origin.Offset {
			continue
		}
		p.abandoned = m.Origin.Offset
		kept := p.acks[:0]
		for _, a := range p.acks {
			if a.off > p.abandoned {
				if a.w.settle(a.idx, abandonedErr(c, a.off, p.abandoned)) {
					done = append(done, a.w)
				}
				continue
			}
			kept = append(kept, a)
		}
		clear(p.acks[len(kept):])
		p.acks = kept
	}
	t.mu.Unlock()
	for _, w := range done {
		w.finish()
	}
}

// loop commits a transaction every interval.
func (t *TxnSink) loop() {
	defer t.wg.Done()
	tick := time.NewTicker(t.interval)
	defer tick.Stop()
	failures := 0
	for {
		select {
		case <-tick.C:
		case <-t.ctx.Done():
			return
		}
		if err := t.commit(nil); err != nil {
			failures++
			d := min(time.Duration(failures)*t.interval, 5*time.Second)
			t.log.Warn("kafka: transaction failed; its events stay staged and are committed by a later one", "attempt", failures, "retry_in", d, "err", err)
			select {
			case <-time.After(d):
			case <-t.ctx.Done():
				return
			}
			continue
		}
		failures = 0
	}
}

// cut is the part of one claim that a transaction commits.
type cut struct {
	c    *claim
	p    *txnPart
	upTo int64 // the offset committed: every offset below it finished
	recs []staged
}

// commit runs one transaction for the claim only, or for every claim when
// only is nil. It returns an error when the transaction failed and its
// events stay staged for the next one.
func (t *TxnSink) commit(only *claim) error {
	t.txMu.Lock()
	defer t.txMu.Unlock()
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return fmt.Errorf("%w: transactional sink", ErrClosed)
	}
	var cuts []cut
	for c, p := range t.parts {
		if (only != nil && c != only) || p.dead != nil {
			continue
		}
		upTo := c.track.CommitPoint()
		if upTo <= p.committed {
			continue
		}
		k := cut{c: c, p: p, upTo: upTo}
		for off, r := range p.recs {
			if off < upTo {
				k.recs = append(k.recs, r)
			}
		}
		cuts = append(cuts, k)
	}
	t.mu.Unlock()
	if len(cuts) == 0 {
		return nil
	}
	err := t.transact(cuts)
	switch {
	case err == nil:
		t.commits.Add(1)
		t.settle(cuts, nil)
		return nil
	case isFenced(err):
		t.fenced.Add(1)
		t.log.Warn("kafka: the group moved on; the transaction was aborted and its partitions are left to their new owner", "partitions", len(cuts), "err", err)
		t.settle(cuts, fmt.Errorf("%w: %w", ErrFenced, err))
		return nil
	default:
		return err
	}
}

// isFenced reports whether a transaction failed because the consumer
// group no longer recognises the member or its generation.
func isFenced(err error) bool {
	return errors.Is(err, sarama.ErrIllegalGeneration) || errors.Is(err, sarama.ErrUnknownMemberId) ||
		errors.Is(err, sarama.ErrFencedInstancedId)
}

// transact runs one transaction with the records and offsets of cuts and
// returns nil once it committed. After a failure it leaves the producer
// ready for the next transaction (aborting, or rebuilding it), and returns
// nil anyway if the group's committed offsets show that the transaction
// committed after all.
func (t *TxnSink) transact(cuts []cut) error {
	if t.broken {
		if err := t.rebuild(); err != nil {
			return err
		}
	}
	ap := t.ap
	if err := ap.BeginTxn(); err != nil {
		return t.recover(cuts, fmt.Errorf("kafka: begin transaction: %w", err))
	}
	in := ap.Input()
	for _, k := range cuts {
		for _, r := range k.recs {
			in <- &sarama.ProducerMessage{Topic: r.topic, Key: bytesOrNil(r.key), Value: sarama.ByteEncoder(r.value), Headers: r.headers}
		}
	}
	bySession := map[sarama.ConsumerGroupSession]map[string][]*sarama.PartitionOffsetMetadata{}
	for _, k := range cuts {
		offs := bySession[k.c.sess]
		if offs == nil {
			offs = map[string][]*sarama.PartitionOffsetMetadata{}
			bySession[k.c.sess] = offs
		}
		offs[k.c.topic] = append(offs[k.c.topic], &sarama.PartitionOffsetMetadata{Partition: k.c.partition, Offset: k.upTo})
	}
	for sess, offs := range bySession {
		md := sarama.NewConsumerGroupMetadataFromSession(sess, t.group, t.instance)
		if err := ap.AddOffsetsToTxnWithGroupMetadata(offs, md); err != nil {
			return t.recover(cuts, fmt.Errorf("kafka: add offsets to transaction: %w", err))
		}
	}
	if err := ap.CommitTxn(); err != nil {
		return t.recover(cuts, fmt.Errorf("kafka: commit transaction: %w", err))
	}
	return nil
}

// recover ends a failed transaction. If it can be aborted it is, and err
// is returned (fencing errors included, for the caller to tell). If the
// producer failed for good it is rebuilt under the same transactional id,
// which ends the transaction on the broker's side, and the group's
// committed offsets then say whether it committed.
func (t *TxnSink) recover(cuts []cut, err error) error {
	if !isFenced(err) {
		t.aborts.Add(1) // counted now: ending it may wait for the cluster
	}
	ap := t.ap
	if ap.TxnStatus()&sarama.ProducerTxnFlagFatalError == 0 {
		if aerr := ap.AbortTxn(); aerr == nil {
			return err
		} else {
			err = fmt.Errorf("%w; abort: %w", err, aerr)
		}
	}
	t.broken = true
	if isFenced(err) {
		return err
	}
	if rerr := t.rebuild(); rerr != nil {
		return fmt.Errorf("%w; rebuilding the producer: %w", err, rerr)
	}
	ok, cerr := t.committedAlready(cuts)
	if cerr != nil {
		return fmt.Errorf("%w; and the outcome is unknown: %w", err, cerr)
	}
	if ok {
		t.log.Info("kafka: the transaction reported an error but committed; its events are done", "err", err)
		return nil
	}
	return err
}

// rebuild replaces a failed producer. InitProducerId under the same
// transactional id bumps the epoch and ends the transaction left open.
// Caller holds txMu.
func (t *TxnSink) rebuild() error {
	if t.ap != nil {
		_ = t.ap.Close()
		t.clientMu.Lock()
		_ = t.client.Close()
		t.client = nil
		t.clientMu.Unlock()
		t.ap = nil
	}
	ctx, cancel := context.WithTimeout(t.ctx, t.timeout)
	defer cancel()
	return t.connect(ctx)
}

// committedAlready reports whether the group's committed offsets reached
// every cut: then the transaction that carried them committed.
func (t *TxnSink) committedAlready(cuts []cut) (bool, error) {
	want := map[string][]int32{}
	for _, k := range cuts {
		want[k.c.topic] = append(want[k.c.topic], k.c.partition)
	}
	resp, err := t.src.admin.ListConsumerGroupOffsets(t.group, want)
	if err != nil {
		return false, err
	}
	for _, k := range cuts {
		b := resp.GetBlock(k.c.topic, k.c.partition)
		if b == nil || b.Err != sarama.ErrNoError || b.Offset < k.upTo {
			return false, nil
		}
	}
	return true, nil
}

// settle ends the acks the cuts covered: committed when err is nil, else
// failed with err, and then the claims commit nothing more.
func (t *TxnSink) settle(cuts []cut, err error) {
	var done []*ackWait
	t.mu.Lock()
	for _, k := range cuts {
		p := k.p
		if err != nil {
			p.dead = err
			done = failAll(p, err, done)
			continue
		}
		p.committed = k.upTo
		for off := range p.recs {
			if off < k.upTo {
				delete(p.recs, off)
			}
		}
		kept := p.acks[:0]
		var n int64
		for _, a := range p.acks {
			if a.off < k.upTo {
				n++
				if a.w.settle(a.idx, nil) {
					done = append(done, a.w)
				}
				continue
			}
			kept = append(kept, a)
		}
		clear(p.acks[len(kept):])
		p.acks = kept
		t.committed.Add(n)
	}
	t.mu.Unlock()
	for _, w := range done {
		w.finish()
	}
}

// failAll fails every ack held in p and drops its records. Caller holds
// t.mu.
func failAll(p *txnPart, err error, done []*ackWait) []*ackWait {
	for _, a := range p.acks {
		if a.w.settle(a.idx, err) {
			done = append(done, a.w)
		}
	}
	p.acks = nil
	p.recs = map[int64]staged{}
	return done
}

// release is called by the source when claim c is revoked, after c stopped
// taking acks: one last transaction commits what finished, and whatever
// is still held is failed.
func (t *TxnSink) release(c *claim) {
	if err := t.commit(c); err != nil {
		t.log.Warn("kafka: last transaction of a revoked partition failed; its events will be processed again by the next owner",
			"topic", c.topic, "partition", c.partition, "err", err)
	}
	var done []*ackWait
	t.mu.Lock()
	if p := t.parts[c]; p != nil {
		done = failAll(p, fmt.Errorf("kafka: partition %s/%d was revoked before these offsets were committed", c.topic, c.partition), nil)
		delete(t.parts, c)
	}
	t.mu.Unlock()
	for _, w := range done {
		w.finish()
	}
}

// Flush implements [sluice.Flusher]: it commits a transaction with
// everything that can be committed now.
func (t *TxnSink) Flush(ctx context.Context) error {
	_, err := call(ctx, func() (struct{}, error) { return struct{}{}, t.commit(nil) })
	return err
}

// TxnStats counts what a [TxnSink] did.
type TxnStats struct {
	// Commits is the number of transactions committed.
	Commits int64
	// Aborts is the number of transactions that failed and were aborted
	// (their events were committed by a later one), not counting fenced
	// ones.
	Aborts int64
	// Fenced is the number of transactions the broker refused because the
	// group had moved on.
	Fenced int64
	// Events is the number of events whose offsets were committed.
	Events int64
}

// Stats returns the sink's counters.
func (t *TxnSink) Stats() TxnStats {
	return TxnStats{Commits: t.commits.Load(), Aborts: t.aborts.Load(), Fenced: t.fenced.Load(), Events: t.committed.Load()}
}

// Ready returns nil when the sink's producer can reach the partition
// leaders of its topic, and an error matching [ErrNotReady] otherwise.
func (t *TxnSink) Ready(ctx context.Context) error {
	t.mu.Lock()
	closed := t.closed
	t.mu.Unlock()
	if closed {
		return fmt.Errorf("%w: transactional sink closed", ErrNotReady)
	}
	_, err := call(ctx, func() (struct{}, error) {
		t.clientMu.Lock()
		client := t.client
		t.clientMu.Unlock()
		if client == nil {
			return struct{}{}, errors.New("producer being rebuilt")
		}
		if err := client.RefreshMetadata(t.topic); err != nil {
			return struct{}{}, err
		}
		ps, err := client.WritablePartitions(t.topic)
		if err == nil && len(ps) == 0 {
			err = errors.New("no writable partition")
		}
		return struct{}{}, err
	})
	if err != nil {
		return fmt.Errorf("%w: topic %s: %w", ErrNotReady, t.topic, err)
	}
	return nil
}

// Close stops committing, fails the acks still held (their events are
// delivered again), and closes the producer; a transaction in progress
// finishes first. Call [TxnSink.Flush] before, as the pipeline does, to
// commit what finished.
func (t *TxnSink) Close() error {
	var err error
	t.closeOne.Do(func() { err = t.close() })
	return err
}

func (t *TxnSink) close() error {
	t.cancel()
	t.wg.Wait()
	t.txMu.Lock()
	defer t.txMu.Unlock()
	var done []*ackWait
	t.mu.Lock()
	t.closed = true
	for c, p := range t.parts {
		done = failAll(p, fmt.Errorf("%w: transactional sink", ErrClosed), done)
		delete(t.parts, c)
	}
	t.mu.Unlock()
	for _, w := range done {
		w.finish()
	}
	// The source stays attached: it must never commit offsets itself for
	// events whose outputs were staged here.
	var err error
	if t.ap != nil {
		err = t.ap.Close()
		t.clientMu.Lock()
		if cerr := t.client.Close(); err == nil && cerr != nil && !errors.Is(cerr, sarama.ErrClosedClient) {
			err = cerr
		}
		t.clientMu.Unlock()
	}
	if err != nil {
		return fmt.Errorf("kafka: close transactional sink: %w", err)
	}
	return nil
}
