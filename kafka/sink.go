package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/IBM/sarama"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/internal/optcheck"
)

// Sink writes enriched events to a topic and dead letters to the
// dead-letter topic, through one idempotent, LZ4-compressing async
// producer with acks=all. It implements [sluice.Sink],
// [sluice.DeadLetterWriter] and [sluice.Readier].
//
// A Write returns only once the broker has acknowledged every record of the
// batch. Output records keep the input's key and headers and add the origin
// headers (source_topic, source_partition, source_offset). Dead letters keep
// the original key, value and headers and add those of
// [sluice.DeadLetter.Headers].
type Sink struct {
	topic    string
	dlqTopic string
	log      *slog.Logger
	client   sarama.Client
	ap       sarama.AsyncProducer
	cfg      *sarama.Config

	mu      sync.RWMutex // held for reading while sending; Close takes it
	closed  bool
	drained chan struct{}
}

// NewSink connects to brokers and returns a sink for topic. It
// fails with an error matching [ErrUnreachable] when no broker answers
// within the connect timeout, or one matching [sluice.ErrInvalidConfig]
// naming the bad setting.
//
// The producer is idempotent (acks=all, one request in flight per broker),
// compresses with LZ4 and lingers 5ms to fill batches; [WithLinger],
// [WithCompression] and [WithSaramaConfig] change that.
func NewSink(ctx context.Context, brokers []string, topic string, opts ...SinkOption) (*Sink, error) {
	c := sinkConfig(opts)
	validBrokers(c, brokers)
	if err := validTopic(topic); err != nil {
		c.reject("topic", err.Error(), topicRule)
	}
	if c.txnInterval != 0 {
		c.reject(optcheck.Call("WithTxnInterval", c.txnInterval), "applies to a transactional sink only", "use NewTxnSink, or leave the option out")
	}
	if err := c.errs.Err(); err != nil {
		return nil, err
	}
	sc, err := c.saramaConfig(func(sc *sarama.Config) {
		c.producerConfig(sc)
		sc.Producer.Return.Successes = true
	})
	if err != nil {
		return nil, err
	}
	client, err := newClient(ctx, brokers, sc, c.connectTimeout)
	if err != nil {
		return nil, err
	}
	ap, err := sarama.NewAsyncProducerFromClient(client)
	if err != nil {
		_ = client.Close()
		return nil, fmt.Errorf("kafka: producer: %w", err)
	}
	p := &Sink{
		topic:    topic,
		dlqTopic: c.deadLetterTopic,
		log:      c.logger,
		client:   client,
		ap:       ap,
		cfg:      sc,
		drained:  make(chan struct{}),
	}
	go p.drain()
	return p, nil
}

// batch collects the broker's answers for the records of one call.
type batch struct {
	left atomic.Int64
	done chan struct{}
	mu   sync.Mutex
	errs sluice.WriteErrors
}

func newBatch(n int) *batch {
	b := &batch{done: make(chan struct{})}
	b.left.Store(int64(n))
	if n == 0 {
		close(b.done)
	}
	return b
}

// finish records the answer for one record.
func (b *batch) finish(idx int, err error) {
	if err != nil {
		b.mu.Lock()
		b.errs = append(b.errs, sluice.WriteError{Index: idx, Err: err})
		b.mu.Unlock()
	}
	b.settle(1)
}

func (b *batch) settle(n int64) {
	if b.left.Add(-n) == 0 {
		close(b.done)
	}
}

// ticket is the Metadata of every record: where its answer goes.
type ticket struct {
	b   *batch
	idx int
}

// drain is the only reader of Successes and Errors; both must be read or
// the producer deadlocks.
func (p *Sink) drain() {
	defer close(p.drained)
	succ, errs := p.ap.Successes(), p.ap.Errors()
	for succ != nil || errs != nil {
		// Successes are the common case: one already waiting is taken
		// without the two-way select.
		var m *sarama.ProducerMessage
		var ok bool
		select {
		case m, ok = <-succ:
		default:
			select {
			case m, ok = <-succ:
			case e, open := <-errs:
				if !open {
					errs = nil
				} else if t, ok := e.Msg.Metadata.(*ticket); ok {
					t.b.finish(t.idx, classify(e.Msg.Topic, e.Err))
				}
				continue
			}
		}
		if !ok {
			succ = nil
			continue
		}
		if t, ok := m.Metadata.(*ticket); ok {
			t.b.finish(t.idx, nil)
		}
	}
}

// classify marks errors that no retry can fix as permanent, so that the
// pipeline dead-letters the event instead of retrying it forever. A write
// the authorizer refused matches [ErrAccessDenied] and is permanent and
// fatal: retrying cannot grant the right, and no other event would get
// past it, so the pipeline stops with the event unacked.
func classify(topic string, err error) error {
	var ce sarama.ConfigurationError
	switch {
	case deniedError(err):
		return sluice.Permanent(sluice.Fatal(fmt.Errorf("kafka: produce to %q: %w (grant the user Write on the topic): %w", topic, ErrAccessDenied, err)))
	case errors.Is(err, sarama.ErrMessageSizeTooLarge),
		errors.Is(err, sarama.ErrMessageSetSizeTooLarge),
		errors.Is(err, sarama.ErrInvalidMessage),
		errors.Is(err, sarama.ErrInvalidRecord),
		errors.Is(err, sarama.ErrInvalidTimestamp),
		errors.As(err, &ce): // e.g. larger than Producer.MaxMessageBytes
		return sluice.Permanent(fmt.Errorf("kafka: produce: %w", err))
	default:
		return fmt.Errorf("kafka: produce: %w", err)
	}
}

// Write sends msgs to the producer's topic and waits until the broker has
// acknowledged all of them. Failed records are reported as
// [sluice.WriteErrors]; those that cannot succeed on retry (for example a
// record larger than the broker accepts) are marked [sluice.Permanent].
func (p *Sink) Write(ctx context.Context, msgs []*sluice.Message) error {
	slab := make([]record, len(msgs)) // one allocation: the producer holds them until Write returns
	recs := make([]*sarama.ProducerMessage, len(msgs))
	for i, m := range msgs {
		recs[i] = slab[i].fill(p.topic, m.Key, m.Value, recordHeaders(m.Headers, m.Origin))
	}
	return p.send(ctx, recs, slab)
}

// record is what one produced record needs besides its bytes, allocated
// together for a whole batch: the message, its key and value encoders
// (pointed to, so that putting them in the message's interfaces allocates
// nothing) and its ticket.
type record struct {
	msg        sarama.ProducerMessage
	key, value sarama.ByteEncoder
	ticket     ticket
}

// fill sets the record up and returns its message. A nil key stays null.
func (r *record) fill(topic string, key, value []byte, hs []sarama.RecordHeader) *sarama.ProducerMessage {
	r.key, r.value = key, value
	r.msg = sarama.ProducerMessage{Topic: topic, Value: &r.value, Headers: hs}
	if key != nil {
		r.msg.Key = &r.key
	}
	return &r.msg
}

// WriteDeadLetters sends letters to the dead-letter topic with the original
// key, value and headers plus the failure and origin headers, and waits for
// the broker's acknowledgement.
func (p *Sink) WriteDeadLetters(ctx context.Context, letters []sluice.DeadLetter) error {
	slab := make([]record, len(letters))
	recs := make([]*sarama.ProducerMessage, len(letters))
	for i, d := range letters {
		recs[i] = slab[i].fill(p.dlqTopic, d.Msg.Key, d.Msg.Value, letterHeaders(d))
	}
	return p.send(ctx, recs, slab)
}

// send hands recs, whose records are slab's, to the producer and waits for
// the broker's answers.
func (p *Sink) send(ctx context.Context, recs []*sarama.ProducerMessage, slab []record) error {
	b := newBatch(len(recs))
	p.mu.RLock()
	if p.closed {
		p.mu.RUnlock()
		return fmt.Errorf("%w: sink", ErrClosed)
	}
	in := p.ap.Input()
	for i, r := range recs {
		slab[i].ticket = ticket{b: b, idx: i}
		r.Metadata = &slab[i].ticket
		select {
		case in <- r: // the producer has room: no need to watch ctx
			continue
		default:
		}
		select {
		case in <- r:
		case <-ctx.Done():
			p.mu.RUnlock()
			b.settle(int64(len(recs) - i))
			return ctx.Err()
		}
	}
	p.mu.RUnlock()
	select {
	case <-b.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	if len(b.errs) == 0 {
		return nil
	}
	slices.SortFunc(b.errs, func(x, y sluice.WriteError) int { return x.Index - y.Index })
	return b.errs
}

// Ready returns nil when the sink can reach the partition leaders of its
// topic, and an error matching [ErrNotReady] otherwise.
func (p *Sink) Ready(ctx context.Context) error {
	p.mu.RLock()
	closed := p.closed
	p.mu.RUnlock()
	if closed {
		return fmt.Errorf("%w: sink closed", ErrNotReady)
	}
	_, err := call(ctx, func() (struct{}, error) {
		if err := p.client.RefreshMetadata(p.topic); err != nil {
			return struct{}{}, err
		}
		ps, err := p.client.WritablePartitions(p.topic)
		if err == nil && len(ps) == 0 {
			err = errors.New("no writable partition")
		}
		return struct{}{}, err
	})
	if err != nil {
		return fmt.Errorf("%w: topic %s: %w", ErrNotReady, p.topic, err)
	}
	return nil
}

// Config returns the sink's sarama configuration, for inspection. It
// must not be modified.
func (p *Sink) Config() *sarama.Config { return p.cfg }

// Close flushes buffered records, waits for their acknowledgements and
// closes the connections. Writes still waiting get their answers first.
func (p *Sink) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.mu.Unlock()
	p.ap.AsyncClose()
	<-p.drained
	err := p.client.Close()
	if err != nil {
		return fmt.Errorf("kafka: close sink: %w", err)
	}
	return nil
}

// recordHeaders are the record headers of an output message: its headers,
// in order, then its origin headers (those of [sluice.AppendOriginHeaders],
// in the same order). It makes two allocations whatever the origin: the
// header slice, and one buffer that spells the idempotency key
// "topic/partition@offset" and whose parts are the other origin values.
func recordHeaders(hs []sluice.Header, o sluice.Origin) []sarama.RecordHeader {
	out := make([]sarama.RecordHeader, len(hs), len(hs)+4)
	for i, h := range hs {
		out[i] = sarama.RecordHeader{Key: []byte(h.Key), Value: h.Value}
	}
	if o.ID != "" { // a stream entry: stream, ID, key
		key := make([]byte, 0, len(o.Topic)+1+len(o.ID))
		key = append(append(append(key, o.Topic...), '/'), o.ID...)
		t, id := len(o.Topic), len(o.Topic)+1
		return append(out,
			sarama.RecordHeader{Key: originKeys.stream, Value: key[:t:t]},
			sarama.RecordHeader{Key: originKeys.id, Value: key[id:len(key):len(key)]},
			sarama.RecordHeader{Key: originKeys.idempotency, Value: key},
		)
	}
	key := make([]byte, 0, len(o.Topic)+2+2*20)
	key = append(append(key, o.Topic...), '/')
	p := len(key)
	key = strconv.AppendInt(key, int64(o.Partition), 10)
	pe := len(key)
	key = strconv.AppendInt(append(key, '@'), o.Offset, 10)
	t, off := len(o.Topic), pe+1
	return append(out,
		sarama.RecordHeader{Key: originKeys.topic, Value: key[:t:t]},
		sarama.RecordHeader{Key: originKeys.partition, Value: key[p:pe:pe]},
		sarama.RecordHeader{Key: originKeys.offset, Value: key[off:len(key):len(key)]},
		sarama.RecordHeader{Key: originKeys.idempotency, Value: key[:len(key):len(key)]},
	)
}

// originKeys are the origin header names as record header keys, made once:
// the producer only reads a record's header keys.
var originKeys = struct{ topic, partition, offset, stream, id, idempotency []byte }{
	[]byte(sluice.HeaderSourceTopic), []byte(sluice.HeaderSourcePartition), []byte(sluice.HeaderSourceOffset),
	[]byte(sluice.HeaderSourceStream), []byte(sluice.HeaderSourceID), []byte(sluice.HeaderIdempotencyKey),
}

// letterHeaders are the record headers of a dead letter: those of
// [sluice.DeadLetter.Headers], in order.
func letterHeaders(d sluice.DeadLetter) []sarama.RecordHeader {
	hs := d.Headers()
	rh := make([]sarama.RecordHeader, len(hs))
	for j, h := range hs {
		rh[j] = sarama.RecordHeader{Key: []byte(h.Key), Value: h.Value}
	}
	return rh
}

func bytesOrNil(b []byte) sarama.Encoder {
	if b == nil {
		return nil
	}
	return sarama.ByteEncoder(b)
}

// producerConfig sets what every producer of the package shares: an
// idempotent producer (acks from all in-sync replicas, one request in
// flight per broker, retries), the sink's compression and linger, and
// errors returned on the Errors channel.
func (c *config) producerConfig(sc *sarama.Config) {
	sc.Producer.Idempotent = true
	sc.Producer.RequiredAcks = sarama.WaitForAll
	sc.Net.MaxOpenRequests = 1
	sc.Producer.Retry.Max = 10
	sc.Producer.Compression = c.compression
	sc.Producer.Flush.Frequency = c.linger
	sc.Producer.Return.Errors = true
}
