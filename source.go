package sluice

import (
	"context"
	"strconv"
	"time"
)

// Header is one key/value pair of message metadata. Kafka record headers and
// Redis stream fields other than the payload map to headers.
type Header struct {
	Key   string
	Value []byte
}

// Origin says where a message was read from. Kafka adapters fill Topic,
// Partition and Offset; stream adapters such as Redis Streams fill Topic (the
// stream key) and ID, and set Offset to -1.
type Origin struct {
	// Topic is the Kafka topic or the Redis stream key.
	Topic string
	// Partition is the Kafka partition, or 0 for sources without partitions.
	Partition int32
	// Offset is the Kafka offset, or -1 when the source uses IDs.
	Offset int64
	// ID is the Redis stream entry ID, or "" for offset-based sources.
	ID string
}

// String renders the origin as "topic/partition@offset" or "stream/id".
func (o Origin) String() string {
	if o.ID != "" {
		return o.Topic + "/" + o.ID
	}
	return o.Topic + "/" + strconv.FormatInt(int64(o.Partition), 10) + "@" + strconv.FormatInt(o.Offset, 10)
}

// Message is one event flowing through a pipeline.
//
// The Source that creates a message owns its memory until it is handed to the
// pipeline; from then until it is acked the pipeline owns it, and every
// enricher, sink and dead-letter writer must treat it as read-only. To produce
// an output, build a new message with [Message.WithValue].
type Message struct {
	// Key is the partitioning key (Kafka record key). It may be nil.
	Key []byte
	// Value is the raw event, usually a JSON object.
	Value []byte
	// Headers carries metadata. Sinks write them back out unchanged.
	Headers []Header
	// Origin says where the message was read from; acks use it.
	Origin Origin
	// Timestamp is the broker or producer timestamp, if the source knows it.
	Timestamp time.Time
	// Deliveries is how many times the broker has handed this event to a
	// consumer, counting this one, or 0 when the source cannot tell.
	Deliveries int

	// Err, when a source sets it, says the source could not decode this
	// event (for example a stream entry without its payload field). The
	// pipeline does not enrich such an event: it dead-letters it at once
	// with Err as the reason, so that it is neither dropped nor passed on.
	Err error

	// Token is opaque per-message state owned by the source (for example
	// the consumer-group generation that fetched it), passed back untouched
	// to its Acker. Enrichers copy it along with the rest of the message.
	Token any

	// ctx is the event's context; see [Message.Context].
	ctx context.Context
}

// WithValue returns a shallow copy of m whose Value is v. Key, Headers,
// Origin and Timestamp are shared with m and must not be modified.
func (m *Message) WithValue(v []byte) *Message {
	out := *m
	out.Value = v
	return &out
}

// Header returns the value of the first header named key, and whether it
// exists.
func (m *Message) Header(key string) ([]byte, bool) {
	for _, h := range m.Headers {
		if h.Key == key {
			return h.Value, true
		}
	}
	return nil, false
}

// Source yields messages in batches.
//
// Fetch blocks until at least one message is available, ctx is done, or the
// source is closed. It returns at most max messages. It returns ctx.Err() when
// ctx is done, and [ErrSourceClosed] (possibly wrapped) once the source has
// been closed or has ended for good; any other error is reported by the
// pipeline and ends its Run. Fetch is called from one goroutine at a time.
type Source interface {
	Fetch(ctx context.Context, max int) ([]*Message, error)
	Close() error
}

// Acker marks messages as processed. What that means is the adapter's
// business: a Kafka adapter commits the contiguous prefix of finished
// offsets per partition, a Redis Streams adapter sends XACK.
//
// The pipeline calls Ack only after the message's enriched form or its dead
// letter has been durably written. Acks arrive out of order and in batches,
// possibly from several goroutines at once.
type Acker interface {
	Ack(ctx context.Context, msgs []*Message) error
}

// Pauser is an optional capability of a Source: it stops and restarts
// fetching from the broker without leaving the consumer group. The pipeline
// also stops calling Fetch while paused, so messages the source has already
// buffered stay where they are. Pause and Resume must not block.
type Pauser interface {
	Pause()
	Resume()
}

// Lag is the number of events waiting to be consumed.
type Lag struct {
	// Total is the sum over all partitions or streams, or -1 when unknown.
	Total int64 `json:"total"`
	// ByPartition holds the lag per "topic/partition" or per stream, with -1
	// for a part whose lag is unknown.
	ByPartition map[string]int64 `json:"by_partition"`
}

// LagReporter is an optional capability of a Source that can tell how far
// behind the consumer is.
type LagReporter interface {
	Lag(ctx context.Context) (Lag, error)
}

// Readier is an optional capability of sources, enrichers and sinks: Ready
// returns nil once the component is connected and, for sources, has
// finished any startup reconciliation (an enricher may report whether its
// model answered a check). Health endpoints use it for readiness.
type Readier interface {
	Ready(ctx context.Context) error
}

// Flusher is an optional capability of an Acker or Sink: Flush makes
// everything accepted so far durable (for example it commits pending
// offsets). The pipeline calls it when it shuts down.
type Flusher interface {
	Flush(ctx context.Context) error
}

// AsyncAcker is an optional capability of an [Acker] whose acknowledgements
// become durable only later, and all together with the outputs: for example
// a Kafka sink that writes outputs, dead letters and the consumed offsets in
// one transaction, and may commit an offset only once every offset below it
// has finished. When the pipeline's acker implements AsyncAcker, the
// pipeline calls AckAsync instead of Ack, and each event keeps its in-flight
// slot until done reports it: so events that finish above an unfinished one
// are held within the bounded window.
//
// AckAsync records msgs as finished and returns at once. It calls done
// exactly once, from any goroutine, when every message of msgs is settled:
// with nil when all were committed, or with a [WriteErrors] listing the
// messages that were not (for example their partition moved to another
// consumer, or the pipeline abandoned an event below them); those are
// delivered again and their outputs never become visible. done must not
// block for long.
//
// Abandon tells the acker that msgs will not be acked in this run (the
// pipeline is stopping and left them unfinished): acks waiting behind them
// can never be committed and are settled at once as not committed. Abandon
// must not block.
type AsyncAcker interface {
	Acker
	AckAsync(ctx context.Context, msgs []*Message, done func(error))
	Abandon(msgs []*Message)
}
