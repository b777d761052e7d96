package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
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
		select {
		case m, ok := <-succ:
			if !ok {
				succ = nil
				continue
			}
			if t, ok := m.Metadata.(ticket); ok {
				t.b.finish(t.idx, nil)
			}
		case e, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			if t, ok := e.Msg.Metadata.(ticket); ok {
				t.b.finish(t.idx, classify(e.Msg.Topic, e.Err))
			}
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
	recs := make([]*sarama.ProducerMessage, len(msgs))
	for i, m := range msgs {
		recs[i] = &sarama.ProducerMessage{
			Topic:   p.topic,
			Key:     bytesOrNil(m.Key),
			Value:   sarama.ByteEncoder(m.Value),
			Headers: recordHeaders(m.Headers, m.Origin),
		}
	}
	return p.send(ctx, recs)
}

// WriteDeadLetters sends letters to the dead-letter topic with the original
// key, value and headers plus the failure and origin headers, and waits for
// the broker's acknowledgement.
func (p *Sink) WriteDeadLetters(ctx context.Context, letters []sluice.DeadLetter) error {
	recs := make([]*sarama.ProducerMessage, len(letters))
	for i, d := range letters {
		recs[i] = &sarama.ProducerMessage{
			Topic:   p.dlqTopic,
			Key:     bytesOrNil(d.Msg.Key),
			Value:   sarama.ByteEncoder(d.Msg.Value),
			Headers: letterHeaders(d),
		}
	}
	return p.send(ctx, recs)
}

func (p *Sink) send(ctx context.Context, recs []*sarama.ProducerMessage) error {
	b := newBatch(len(recs))
	p.mu.RLock()
	if p.closed {
		p.mu.RUnlock()
		return fmt.Errorf("%w: sink", ErrClosed)
	}
	in := p.ap.Input()
	for i, r := range recs {
		r.Metadata = ticket{b: b, idx: i}
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
// in order, then its origin headers.
func recordHeaders(hs []sluice.Header, o sluice.Origin) []sarama.RecordHeader {
	out := make([]sarama.RecordHeader, 0, len(hs)+3)
	for _, h := range hs {
		out = append(out, sarama.RecordHeader{Key: []byte(h.Key), Value: h.Value})
	}
	for _, h := range sluice.AppendOriginHeaders(nil, o) {
		out = append(out, sarama.RecordHeader{Key: []byte(h.Key), Value: h.Value})
	}
	return out
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
