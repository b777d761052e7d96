package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/internal/chans"
	"github.com/sluicehq/sluice/internal/latch"
	"github.com/sluicehq/sluice/internal/offsets"
	"github.com/sluicehq/sluice/internal/optcheck"
)

// watchdogGrace is how long past the revoke timeout a revoked partition may
// take to commit before the watchdog gives up on it.
const watchdogGrace = 30 * time.Second

// Source consumes topics as a member of a Kafka consumer group. It
// implements [sluice.Source], [sluice.Acker], [sluice.Pauser],
// [sluice.LagReporter], [sluice.Readier] and [sluice.Flusher].
//
// Offsets are committed by hand: for each partition, only the contiguous
// prefix of acked offsets is committed, however out of order acks arrive.
// Commits happen every commit interval, when a partition is revoked, on
// Flush and on Close. A revoked partition stops handing out messages, waits
// up to the revoke timeout for its in-flight events, commits what finished
// and lets go; acks that arrive later for it are ignored, so they can never
// move the offset of a partition another member now owns.
type Source struct {
	cfg    *config
	log    *slog.Logger
	group  string
	topics []string
	client sarama.Client
	cg     sarama.ConsumerGroup
	// prober and admin serve Lag and Ready over connections of their own:
	// on the consumer's, a request waits behind the long-polling fetch in
	// flight (up to Consumer.Fetch.MaxWaitTime) before the broker reads it.
	prober  sarama.Client
	admin   sarama.ClusterAdmin
	handler *handler

	buf     chan *sluice.Message
	ctx     context.Context // ends when Close starts
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	closing atomic.Bool
	closeMu sync.Mutex
	closed  bool

	// paused is closed by Pause and opened by Resume.
	paused latch.Latch

	probeMu sync.Mutex
	probe   *probe // the latest round trip for Lag and Ready
	// staleMetadata makes the next lag probe refresh the cluster metadata
	// first: a broker did not answer, or a partition's leader is unknown.
	staleMetadata atomic.Bool

	commitMu sync.Mutex // serialises marking and committing

	// txn, when set, commits the offsets in its transactions instead.
	txn      atomic.Pointer[TxnSink]
	attached atomic.Bool // a TxnSink is being built or is attached

	mu       sync.Mutex
	claims   map[topicPartition]*claim
	joined   chan struct{} // closed by the first Setup
	joinOnce sync.Once
	sessions int   // Setup calls so far
	gen      int32 // generation of the latest Setup
	failErr  error
	failed   chan struct{} // closed by the watchdog
	ignored  atomic.Int64  // acks dropped because their claim was revoked
}

type topicPartition struct {
	topic     string
	partition int32
}

// claim is one partition owned in one consumer-group generation. It is the
// Token of every message it hands out.
type claim struct {
	topicPartition
	generation int32
	sess       sarama.ConsumerGroupSession
	track      *offsets.Partition
	progress   chan struct{} // poked by Ack

	mu      sync.Mutex
	revoked bool  // no more deliveries, acks ignored
	marked  int64 // last offset passed to MarkOffset

	waiting atomic.Int32 // what ConsumeClaim is blocked on: waitNone, waitBuffer or waitResume
}

// What a claim's ConsumeClaim is blocked on (tests look at it).
const (
	waitNone   int32 = iota // reading the partition, or moving a message on
	waitBuffer              // the shared buffer is full
	waitResume              // the source is paused
)

// NewSource joins consumer group group on topics. It connects before it
// returns and fails with an error matching [ErrUnreachable] when no broker
// answers within the connect timeout, or one matching
// [sluice.ErrInvalidConfig] naming the bad setting. Consumption starts in
// the background at once; Fetch returns what it brings.
func NewSource(ctx context.Context, brokers []string, group string, topics []string, opts ...SourceOption) (*Source, error) {
	c := sourceConfig(opts)
	validBrokers(c, brokers)
	if group == "" {
		c.reject("group", "the consumer group name is empty", "pass the name of the group to join")
	}
	if len(topics) == 0 {
		c.reject("topics", "the list is empty", "pass at least one topic")
	}
	for _, t := range topics {
		if err := validTopic(t); err != nil {
			c.reject("topics", err.Error(), topicRule)
		}
	}
	if c.revokeTimeout >= c.rebalanceTimeout {
		c.reject(optcheck.Call("WithRevokeTimeout", c.revokeTimeout), fmt.Sprintf("the revoke timeout is not below the rebalance timeout (%s)", c.rebalanceTimeout),
			"lower WithRevokeTimeout or raise WithRebalanceTimeout")
	}
	if c.instanceID != "" && !c.version.IsAtLeast(sarama.V2_3_0_0) {
		c.reject(optcheck.Call("WithInstanceID", c.instanceID), fmt.Sprintf("static membership needs protocol version 2.3 or later, have %s", c.version),
			"raise WithVersion to 2.3 or later")
	}
	if err := c.errs.Err(); err != nil {
		return nil, err
	}
	sc, err := c.saramaConfig(func(sc *sarama.Config) {
		sc.Consumer.Return.Errors = true
		sc.Consumer.Offsets.AutoCommit.Enable = false
		sc.Consumer.Offsets.Initial = sarama.OffsetOldest
		if c.startAt == Newest {
			sc.Consumer.Offsets.Initial = sarama.OffsetNewest
		}
		sc.Consumer.Group.Session.Timeout = c.sessionTimeout
		sc.Consumer.Group.Heartbeat.Interval = c.heartbeat
		sc.Consumer.Group.Rebalance.Timeout = c.rebalanceTimeout
		sc.Consumer.Group.InstanceId = c.instanceID
		if c.readCommitted {
			sc.Consumer.IsolationLevel = sarama.ReadCommitted
		}
		if c.balanceStrategies != nil {
			sc.Consumer.Group.Rebalance.GroupStrategies = c.balanceStrategies
		}
	})
	if err != nil {
		return nil, err
	}
	client, err := newClient(ctx, brokers, sc, c.connectTimeout)
	if err != nil {
		return nil, err
	}
	cg, err := sarama.NewConsumerGroupFromClient(group, client)
	if err != nil {
		_ = client.Close()
		return nil, fmt.Errorf("kafka: consumer group %q: %w", group, err)
	}
	prober, err := newClient(ctx, brokers, sc, c.connectTimeout)
	if err != nil {
		_ = cg.Close()
		_ = client.Close()
		return nil, err
	}
	admin, err := sarama.NewClusterAdminFromClient(prober)
	if err != nil {
		_ = prober.Close()
		_ = cg.Close()
		_ = client.Close()
		return nil, fmt.Errorf("kafka: admin client: %w", err)
	}
	s := &Source{
		cfg:    c,
		log:    c.logger.With("group", group),
		group:  group,
		topics: append([]string(nil), topics...),
		client: client,
		cg:     cg,
		prober: prober,
		admin:  admin,
		buf:    make(chan *sluice.Message, c.bufferSize),
		claims: map[topicPartition]*claim{},
		joined: make(chan struct{}),
		failed: make(chan struct{}),
	}
	s.handler = &handler{s: s}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.wg.Add(3)
	go s.consumeLoop()
	go s.errorLoop()
	go s.commitLoop()
	return s, nil
}

func (s *Source) consumeLoop() {
	defer s.wg.Done()
	backoff := time.NewTimer(0)
	<-backoff.C
	for {
		err := s.cg.Consume(s.ctx, s.topics, s.handler)
		if s.ctx.Err() != nil || errors.Is(err, sarama.ErrClosedConsumerGroup) {
			return
		}
		if err != nil {
			s.log.Warn("kafka: consumer group session failed; rejoining", "err", err)
			backoff.Reset(time.Second)
			select {
			case <-backoff.C:
			case <-s.ctx.Done():
				return
			}
		}
	}
}

func (s *Source) errorLoop() {
	defer s.wg.Done()
	for err := range s.cg.Errors() {
		if s.closing.Load() {
			continue
		}
		s.log.Warn("kafka: consumer error", "err", err)
	}
}

func (s *Source) commitLoop() {
	defer s.wg.Done()
	t := time.NewTicker(s.cfg.commitInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			s.commit()
		case <-s.ctx.Done():
			return
		}
	}
}

// commit marks the commit point of every live claim and commits. A source
// with a transactional sink leaves that to the sink's transactions.
func (s *Source) commit() {
	if s.attached.Load() {
		return
	}
	s.mu.Lock()
	live := make([]*claim, 0, len(s.claims))
	for _, c := range s.claims {
		live = append(live, c)
	}
	s.mu.Unlock()

	s.commitMu.Lock()
	defer s.commitMu.Unlock()
	dirty := map[sarama.ConsumerGroupSession]bool{}
	for _, c := range live {
		c.mu.Lock()
		if !c.revoked && c.mark() {
			dirty[c.sess] = true
		}
		c.mu.Unlock()
	}
	for sess := range dirty {
		sess.Commit()
	}
}

// mark passes the commit point to sarama if it moved. sarama expects the
// next offset to read, which is exactly the tracker's commit point (the
// lowest unfinished offset). Caller holds c.mu.
func (c *claim) mark() bool {
	cp := c.track.CommitPoint()
	if cp < 0 || cp <= c.marked {
		return false
	}
	c.sess.MarkOffset(c.topic, c.partition, cp, "")
	c.marked = cp
	return true
}

// Fetch returns up to max buffered messages, waiting for at least one. It
// returns ctx.Err() when ctx ends and an error matching
// [sluice.ErrSourceClosed] once Close has been called.
func (s *Source) Fetch(ctx context.Context, max int) ([]*sluice.Message, error) {
	if max < 1 {
		max = 1
	}
	for {
		var first *sluice.Message
		select {
		case first = <-s.buf:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-s.ctx.Done():
			return nil, sluice.ErrSourceClosed
		case <-s.failed:
			return nil, s.failErr
		}
		out := make([]*sluice.Message, 1, min(max, len(s.buf)+1))
		out[0] = first
		if out = s.deliver(chans.TakeMore(out, s.buf, max, nil)); len(out) > 0 {
			return out, nil
		}
	}
}

// deliver records msgs as handed out and returns them, in place, without
// those whose claim has been revoked. Each run of messages from one claim
// takes the claim's lock once.
func (s *Source) deliver(msgs []*sluice.Message) []*sluice.Message {
	keep := msgs[:0]
	for i := 0; i < len(msgs); {
		c := msgs[i].Token.(*claim)
		j := i + 1
		for j < len(msgs) && msgs[j].Token == any(c) {
			j++
		}
		c.mu.Lock()
		if !c.revoked {
			for _, m := range msgs[i:j] {
				if err := c.track.Deliver(m.Origin.Offset); err != nil {
					s.log.Error("kafka: offset out of order; dropping message", "origin", m.Origin.String(), "err", err)
					continue
				}
				keep = append(keep, m)
			}
		}
		c.mu.Unlock()
		i = j
	}
	clear(msgs[len(keep):])
	return keep
}

// Ack records msgs as finished. Offsets are committed later, up to the
// first unfinished offset of each partition. Acks for partitions this
// member no longer owns in the generation that fetched them are ignored.
func (s *Source) Ack(_ context.Context, msgs []*sluice.Message) error {
	if s.attached.Load() {
		return fmt.Errorf("%w: kafka: this source's offsets are committed by its TxnSink; use the sink as the acker (sluice.New does when WithAcker is left out)", sluice.ErrFatal)
	}
	// The pipeline acks in batches whose messages mostly come from one
	// partition in a row: each such run takes its claim's lock once.
	for i := 0; i < len(msgs); {
		c, ok := msgs[i].Token.(*claim)
		if !ok {
			return fmt.Errorf("kafka: Ack of message %s that this source did not fetch", msgs[i].Origin)
		}
		j := i + 1
		for j < len(msgs) && msgs[j].Token == any(c) {
			j++
		}
		c.mu.Lock()
		if c.revoked {
			s.ignored.Add(int64(j - i))
		} else {
			for _, m := range msgs[i:j] {
				c.track.Done(m.Origin.Offset)
			}
		}
		c.mu.Unlock()
		select {
		case c.progress <- struct{}{}:
		default:
		}
		i = j
	}
	return nil
}

// Flush commits the offsets of everything acked so far.
func (s *Source) Flush(ctx context.Context) error {
	_, err := call(ctx, func() (struct{}, error) { s.commit(); return struct{}{}, nil })
	return err
}

// Pause stops fetching from the brokers without leaving the group. Messages
// already buffered stay buffered; the partition consumers stop reading too.
func (s *Source) Pause() {
	s.paused.Close(s.cg.PauseAll)
}

// Resume undoes Pause.
func (s *Source) Resume() {
	s.paused.Open(s.cg.ResumeAll)
}

// Ready returns nil once the consumer has joined its group and the cluster
// answers, and an error matching [ErrNotReady] before that, after Close, or
// while the group coordinator or a partition leader does not answer before
// ctx ends. It shares its round trip with [Source.Lag], and reuses the
// answer of a probe that ended less than 5s ago, so that a readiness probe
// on a busy machine does not wait for a fresh one.
func (s *Source) Ready(ctx context.Context) error {
	if s.ctx.Err() != nil {
		return fmt.Errorf("%w: source closed", ErrNotReady)
	}
	select {
	case <-s.failed:
		return s.failErr
	case <-s.joined:
	default:
		return fmt.Errorf("%w: consumer group %q not joined yet", ErrNotReady, s.group)
	}
	s.probeMu.Lock()
	last := s.probe
	s.probeMu.Unlock()
	if last != nil && last.finished() && time.Since(last.at) < readyProbeReuse {
		if last.err != nil {
			return fmt.Errorf("%w: %w", ErrNotReady, last.err)
		}
		return nil
	}
	if _, err := s.clusterLag(ctx); err != nil {
		return fmt.Errorf("%w: %w", ErrNotReady, err)
	}
	return nil
}

// readyProbeReuse is how long Ready trusts a finished probe.
const readyProbeReuse = 5 * time.Second

// Lag reports, per "topic/partition" and in total, the high watermark minus
// the group's committed offset, both read from the cluster. A partition
// with no committed offset counts from its oldest retained offset. It
// waits for the cluster only until ctx ends, then returns an error matching
// [ErrUnreachable]: give it a deadline, as the pipeline's health probes do.
//
// One probe costs one OffsetFetch and one ListOffsets per partition leader
// (plus one more per leader of the partitions with no committed offset),
// however many partitions there are. A partition whose lag could not be
// read is -1 in ByPartition and makes Total -1; Lag then still returns the
// others without an error, and errs only when no partition answered (the
// error names the failing partitions), so that one partition in a leader
// election does not make the source look unreachable.
func (s *Source) Lag(ctx context.Context) (sluice.Lag, error) {
	return s.clusterLag(ctx)
}

// probe is one computation of the lag, shared by the Lag and Ready calls
// that arrive while it runs.
type probe struct {
	done chan struct{}
	lag  sluice.Lag
	err  error
	at   time.Time // when it ended; set before done is closed
}

// clusterLag joins the probe in flight, or starts one, and waits for it
// until ctx ends. At most one probe runs at a time, so a cluster that does
// not answer never piles up goroutines: a probe stuck on a black-holed
// connection keeps answering its callers with a timeout until sarama gives
// up on the connection (Net.ReadTimeout).
func (s *Source) clusterLag(ctx context.Context) (sluice.Lag, error) {
	s.probeMu.Lock()
	p := s.probe
	if p == nil || p.finished() {
		p = &probe{done: make(chan struct{})}
		s.probe = p
		go func() {
			p.lag, p.err = s.lag()
			p.at = time.Now()
			close(p.done)
		}()
	}
	s.probeMu.Unlock()

	select {
	case <-p.done:
		return p.lag, p.err
	case <-ctx.Done():
		return sluice.Lag{Total: -1}, fmt.Errorf("%w: lag: no answer from the cluster: %w", ErrUnreachable, ctx.Err())
	}
}

// finished reports whether p has ended.
func (p *probe) finished() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// lag computes the lag of every partition of the source's topics in a
// number of round trips that does not grow with the number of partitions:
//
//   - one OffsetFetch to the group coordinator for the committed offsets,
//     while, at the same time, one ListOffsets (latest) goes to each
//     partition leader for the high watermarks of all the partitions it
//     leads;
//   - then, only if some partitions have no committed offset, one
//     ListOffsets (earliest) to each leader of those partitions.
//
// A partition whose leader is unknown in the cached metadata, or whose
// leader answers that it no longer leads it, is asked again once, after
// a metadata refresh, from its new leader. A leader that does not answer
// at all is not retried in this probe (a black-holed broker would double
// its time); its connection is closed and the next probe starts with a
// metadata refresh.
//
// Partitions that still fail are -1 in ByPartition, and Total is then -1.
// lag returns an error only when not a single partition answered, or the
// committed offsets could not be read: a partition in a leader election
// does not make the whole source unreachable. The error then names each
// failing partition (the first few).
func (s *Source) lag() (sluice.Lag, error) {
	if s.staleMetadata.Swap(false) {
		if err := s.prober.RefreshMetadata(s.topics...); err != nil {
			s.staleMetadata.Store(true)
			return sluice.Lag{Total: -1}, fmt.Errorf("kafka: lag: metadata: %w", err)
		}
	}
	want := map[string][]int32{}
	var parts []topicPartition
	for _, t := range s.topics {
		ps, err := s.prober.Partitions(t)
		if err != nil {
			return sluice.Lag{Total: -1}, fmt.Errorf("kafka: lag: partitions of %s: %w", t, err)
		}
		want[t] = ps
		for _, p := range ps {
			parts = append(parts, topicPartition{t, p})
		}
	}

	var (
		resp *sarama.OffsetFetchResponse
		ferr error
		wg   sync.WaitGroup
	)
	wg.Go(func() { resp, ferr = s.admin.ListConsumerGroupOffsets(s.group, want) })
	high := s.listOffsets(parts, sarama.OffsetNewest)
	wg.Wait()
	if ferr != nil {
		return sluice.Lag{Total: -1}, fmt.Errorf("kafka: lag: committed offsets: %w", ferr)
	}
	if resp.Err != sarama.ErrNoError {
		return sluice.Lag{Total: -1}, fmt.Errorf("kafka: lag: committed offsets: %w", resp.Err)
	}

	from := make(map[topicPartition]offsetAt, len(parts))
	var fromOldest []topicPartition
	for _, tp := range parts {
		if high[tp].err != nil {
			continue
		}
		b := resp.GetBlock(tp.topic, tp.partition)
		switch {
		case b != nil && b.Err != sarama.ErrNoError:
			from[tp] = offsetAt{err: fmt.Errorf("committed offset: %w", b.Err)}
		case b != nil && b.Offset >= 0:
			from[tp] = offsetAt{off: b.Offset}
		default:
			fromOldest = append(fromOldest, tp)
		}
	}
	if len(fromOldest) > 0 {
		for tp, o := range s.listOffsets(fromOldest, sarama.OffsetOldest) {
			from[tp] = o
		}
	}

	lag := sluice.Lag{ByPartition: make(map[string]int64, len(parts))}
	var failed []string
	for _, tp := range parts {
		key := tp.topic + "/" + strconv.FormatInt(int64(tp.partition), 10)
		err := high[tp].err
		if err == nil {
			err = from[tp].err
		}
		if err != nil {
			lag.ByPartition[key] = -1
			lag.Total = -1
			failed = append(failed, key+": "+err.Error())
			continue
		}
		n := max(high[tp].off-from[tp].off, 0)
		lag.ByPartition[key] = n
		if lag.Total >= 0 {
			lag.Total += n
		}
	}
	if len(failed) == 0 {
		return lag, nil
	}
	slices.Sort(failed)
	summary := strings.Join(failed[:min(len(failed), 3)], "; ")
	if len(failed) > 3 {
		summary += fmt.Sprintf("; and %d more", len(failed)-3)
	}
	if len(failed) == len(parts) {
		return lag, fmt.Errorf("kafka: lag unknown on all %d partitions: %s", len(parts), summary)
	}
	s.log.Debug("kafka: lag unknown on some partitions", "failed", len(failed), "of", len(parts), "errors", summary)
	return lag, nil
}

// offsetAt is an offset read from the cluster, or why it could not be.
type offsetAt struct {
	off int64
	err error
}

// listOffsets reads the offset at time at (sarama.OffsetNewest or
// OffsetOldest) of each of parts, with one ListOffsets request per
// partition leader, all leaders at once. Partitions whose leader is
// unknown or has moved are retried once after a metadata refresh.
func (s *Source) listOffsets(parts []topicPartition, at int64) map[topicPartition]offsetAt {
	out := make(map[topicPartition]offsetAt, len(parts))
	retry := s.listOffsetsOnce(parts, at, out)
	if len(retry) == 0 {
		return out
	}
	var topics []string
	for _, tp := range retry {
		if !slices.Contains(topics, tp.topic) {
			topics = append(topics, tp.topic)
		}
	}
	if err := s.prober.RefreshMetadata(topics...); err != nil {
		s.staleMetadata.Store(true)
		return out // the first errors stand
	}
	if again := s.listOffsetsOnce(retry, at, out); len(again) > 0 {
		s.staleMetadata.Store(true)
	}
	return out
}

// listOffsetsOnce does one round of listOffsets, records an answer or an
// error for each partition in out, and returns the partitions worth asking
// again after a metadata refresh.
func (s *Source) listOffsetsOnce(parts []topicPartition, at int64, out map[topicPartition]offsetAt) (retry []topicPartition) {
	writable := map[string][]int32{} // partitions with a leader, by topic
	byLeader := map[*sarama.Broker][]topicPartition{}
	for _, tp := range parts {
		ps, ok := writable[tp.topic]
		if !ok {
			ps, _ = s.prober.WritablePartitions(tp.topic)
			writable[tp.topic] = ps
		}
		if _, found := slices.BinarySearch(ps, tp.partition); !found {
			out[tp] = offsetAt{err: fmt.Errorf("leader: %w", sarama.ErrLeaderNotAvailable)}
			retry = append(retry, tp)
			continue
		}
		b, err := s.prober.Leader(tp.topic, tp.partition)
		if err != nil {
			out[tp] = offsetAt{err: fmt.Errorf("leader: %w", err)}
			retry = append(retry, tp)
			continue
		}
		byLeader[b] = append(byLeader[b], tp)
	}

	var (
		mu sync.Mutex
		wg sync.WaitGroup
	)
	version := s.prober.Config().Version
	for b, tps := range byLeader {
		wg.Go(func() {
			req := sarama.NewOffsetRequest(version)
			for _, tp := range tps {
				req.AddBlock(tp.topic, tp.partition, at, 1)
			}
			resp, err := b.GetAvailableOffsets(req)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				// As sarama's own GetOffset does: drop the connection, so
				// that the next request dials again.
				_ = b.Close()
				s.staleMetadata.Store(true)
				for _, tp := range tps {
					out[tp] = offsetAt{err: fmt.Errorf("list offsets from broker %d: %w", b.ID(), err)}
				}
				return
			}
			for _, tp := range tps {
				blk := resp.GetBlock(tp.topic, tp.partition)
				switch {
				case blk == nil:
					out[tp] = offsetAt{err: fmt.Errorf("list offsets from broker %d: %w", b.ID(), sarama.ErrIncompleteResponse)}
				case blk.Err != sarama.ErrNoError:
					out[tp] = offsetAt{err: fmt.Errorf("list offsets from broker %d: %w", b.ID(), blk.Err)}
					if leaderMoved(blk.Err) {
						retry = append(retry, tp)
					}
				case len(blk.Offsets) == 0:
					out[tp] = offsetAt{err: fmt.Errorf("list offsets from broker %d: %w", b.ID(), sarama.ErrOffsetOutOfRange)}
				default:
					out[tp] = offsetAt{off: blk.Offsets[0]}
				}
			}
		})
	}
	wg.Wait()
	return retry
}

// leaderMoved reports whether a partition error of ListOffsets means that
// the metadata named the wrong leader, or one still being elected.
func leaderMoved(err sarama.KError) bool {
	switch err {
	case sarama.ErrNotLeaderForPartition, sarama.ErrLeaderNotAvailable, sarama.ErrUnknownTopicOrPartition,
		sarama.ErrFencedLeaderEpoch, sarama.ErrUnknownLeaderEpoch, sarama.ErrOffsetNotAvailable, sarama.ErrReplicaNotAvailable:
		return true
	}
	return false
}

// Close stops consuming, commits what finished and leaves the group (a
// static member stays registered until its session times out, so that a
// quick restart gets its partitions back). In-flight events are not waited
// for: they are delivered again. Fetch then returns [sluice.ErrSourceClosed].
func (s *Source) Close() error {
	s.closeMu.Lock()
	defer s.closeMu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	s.closing.Store(true)
	s.cancel()
	s.Resume() // unblock claims waiting on a pause
	err := s.cg.Close()
	s.wg.Wait()
	if cerr := s.admin.Close(); cerr != nil && !errors.Is(cerr, sarama.ErrClosedClient) && err == nil {
		err = cerr // closes prober too
	}
	if cerr := s.client.Close(); cerr != nil && !errors.Is(cerr, sarama.ErrClosedClient) && err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("kafka: close: %w", err)
	}
	return nil
}

// owned lists the partitions claimed now, as "topic/partition", sorted.
func (s *Source) owned() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.claims))
	for tp := range s.claims {
		out = append(out, tp.topic+"/"+strconv.FormatInt(int64(tp.partition), 10))
	}
	slices.Sort(out)
	return out
}

// sessionCount is the number of group sessions (generations joined) so far.
func (s *Source) sessionCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sessions
}

// generation is the generation of the latest session.
func (s *Source) generation() int32 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gen
}

func (s *Source) fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failErr == nil {
		s.failErr = err
		close(s.failed)
	}
}

// handler implements sarama.ConsumerGroupHandler. It is a separate type so
// that its methods stay out of Source's API.
type handler struct{ s *Source }

// Setup records the new generation.
func (h *handler) Setup(sess sarama.ConsumerGroupSession) error {
	s := h.s
	s.mu.Lock()
	s.sessions++
	s.gen = sess.GenerationID()
	s.mu.Unlock()
	s.joinOnce.Do(func() { close(s.joined) })
	s.log.Info("kafka: joined group", "generation", sess.GenerationID(), "member", sess.MemberID(), "claims", sess.Claims())
	return nil
}

// Cleanup does nothing: each claim commits when it is revoked.
func (h *handler) Cleanup(sarama.ConsumerGroupSession) error { return nil }

// ConsumeClaim moves the claim's messages into the shared buffer until the
// claim is revoked, then drains and commits it.
func (h *handler) ConsumeClaim(sess sarama.ConsumerGroupSession, sc sarama.ConsumerGroupClaim) error {
	s := h.s
	start := sc.InitialOffset()
	if start < 0 {
		start = -1 // sarama.OffsetOldest/Newest: learnt from the first message
	}
	c := &claim{
		topicPartition: topicPartition{sc.Topic(), sc.Partition()},
		generation:     sess.GenerationID(),
		sess:           sess,
		track:          offsets.NewPartition(start),
		progress:       make(chan struct{}, 1),
		marked:         start,
	}
	s.mu.Lock()
	s.claims[c.topicPartition] = c
	s.mu.Unlock()
	s.pauseClaim(c)

	// With an eager strategy a rebalance ends the session, and its context.
	// With a cooperative one the session carries on and only the revoked
	// claims are closed, which Messages() reports only once everything
	// buffered in it has been read; gone reports it at once, so that a claim
	// blocked on a full buffer or a pause lets go too.
	// Messages are allocated messageSlab at a time: one allocation instead
	// of one per message.
	var slab []sluice.Message
	gone := s.watchClaim(sc)
	done := sess.Context().Done()
	msgs := sc.Messages()
	for {
		select {
		case <-gone:
			s.release(c)
			return nil
		default:
		}
		select {
		case <-done:
			s.release(c)
			return nil
		default:
		}
		// A message already waiting is taken without the three-way select;
		// the checks above keep a revoke or a session's end prompt.
		var m *sarama.ConsumerMessage
		var ok bool
		select {
		case m, ok = <-msgs:
		default:
			select {
			case m, ok = <-msgs:
			case <-done:
				s.release(c)
				return nil
			case <-gone:
				s.release(c)
				return nil
			}
		}
		if !ok {
			s.release(c)
			return nil
		}
		// A fetch in flight when Pause was called still delivers: hold the
		// message, and stop reading the claim, until Resume.
		if ch := s.paused.Wait(); ch != nil {
			c.waiting.Store(waitResume)
			select {
			case <-ch:
			case <-done:
				s.release(c)
				return nil
			case <-gone:
				s.release(c)
				return nil
			}
			c.waiting.Store(waitNone)
		}
		if len(slab) == 0 {
			slab = make([]sluice.Message, messageSlab)
		}
		out := &slab[0]
		slab = slab[1:]
		convertInto(out, m, c)
		select {
		case s.buf <- out:
			continue
		default:
		}
		c.waiting.Store(waitBuffer)
		select {
		case s.buf <- out:
		case <-done:
			s.release(c)
			return nil
		case <-gone:
			s.release(c)
			return nil
		}
		c.waiting.Store(waitNone)
	}
}

// pauseClaim pauses a new claim's partition if the source is paused. It
// runs under the pause latch's lock, as Pause and Resume do, so that a
// Resume cannot land between the check and the Pause and leave the
// partition paused for good.
func (s *Source) pauseClaim(c *claim) {
	s.paused.WhileClosed(func() {
		if h := s.cfg.hookClaimPause; h != nil {
			h(s)
		}
		s.cg.Pause(map[string][]int32{c.topic: {c.partition}})
	})
}

// watchClaim returns a channel that is closed once sarama closes the
// claim's partition consumer: when the claim is revoked, or the session
// ends. The partition consumer closes its error channel at the same time as
// its message channel, but without waiting for buffered messages to be read,
// so this goroutine drains the errors (logging them, as errorLoop would) and
// closes the channel when they end. It returns nil, a channel that never
// closes, for a claim that does not expose its errors.
func (s *Source) watchClaim(sc sarama.ConsumerGroupClaim) <-chan struct{} {
	ec, ok := sc.(interface {
		Errors() <-chan *sarama.ConsumerError
	})
	if !ok {
		return nil
	}
	gone := make(chan struct{})
	go func() {
		defer close(gone)
		for err := range ec.Errors() {
			if !s.closing.Load() {
				s.log.Warn("kafka: consumer error", "err", err)
			}
		}
	}()
	return gone
}

// release lets a revoked claim go: it waits up to the revoke timeout for the
// claim's in-flight events (not at all when the source is closing),
// commits what finished, and ignores acks from then on. A watchdog fails
// the source if the commit itself hangs.
func (s *Source) release(c *claim) {
	watchdog := time.AfterFunc(s.cfg.revokeTimeout+watchdogGrace, func() {
		s.log.Error("kafka: revoked partition still not released; stopping the source",
			"topic", c.topic, "partition", c.partition, "generation", c.generation)
		s.fail(fmt.Errorf("%w: %s/%d", ErrClaimStuck, c.topic, c.partition))
	})
	defer watchdog.Stop()

	if !s.closing.Load() {
		deadline := time.NewTimer(s.cfg.revokeTimeout)
		defer deadline.Stop()
	wait:
		for c.track.Pending() > 0 {
			select {
			case <-c.progress:
			case <-s.ctx.Done():
				break wait
			case <-deadline.C:
				s.log.Warn("kafka: revoke timeout; unfinished events of the partition will be delivered again",
					"topic", c.topic, "partition", c.partition, "unfinished", c.track.Pending())
				break wait
			}
		}
	}

	if t := s.txn.Load(); t != nil {
		c.mu.Lock()
		c.revoked = true
		c.mu.Unlock()
		t.release(c) // commits what finished in one last transaction
		s.forget(c)
		return
	}
	s.commitMu.Lock()
	c.mu.Lock()
	c.revoked = true
	marked := c.mark()
	c.mu.Unlock()
	if marked {
		c.sess.Commit()
	}
	s.commitMu.Unlock()
	s.forget(c)
}

// forget drops a released claim.
func (s *Source) forget(c *claim) {
	s.mu.Lock()
	if s.claims[c.topicPartition] == c {
		delete(s.claims, c.topicPartition)
	}
	s.mu.Unlock()
}

// attachTxn reserves the source for a transactional sink; it reports false
// if one has it already.
func (s *Source) attachTxn() bool { return s.attached.CompareAndSwap(false, true) }

// detachTxn undoes attachTxn.
func (s *Source) detachTxn() {
	s.txn.Store(nil)
	s.attached.Store(false)
}

// messageSlab is how many messages a claim allocates at once.
const messageSlab = 32

// convert turns a consumed record into a message of claim c.
func convert(m *sarama.ConsumerMessage, c *claim) *sluice.Message {
	out := new(sluice.Message)
	convertInto(out, m, c)
	return out
}

// convertInto is convert into a message the caller provides.
func convertInto(out *sluice.Message, m *sarama.ConsumerMessage, c *claim) {
	*out = sluice.Message{
		Key:       m.Key,
		Value:     m.Value,
		Origin:    sluice.Origin{Topic: m.Topic, Partition: m.Partition, Offset: m.Offset},
		Timestamp: m.Timestamp,
		Token:     c,
	}
	if len(m.Headers) > 0 {
		out.Headers = make([]sluice.Header, 0, len(m.Headers))
		for _, h := range m.Headers {
			if h != nil {
				out.Headers = append(out.Headers, sluice.Header{Key: string(h.Key), Value: h.Value})
			}
		}
	}
}
