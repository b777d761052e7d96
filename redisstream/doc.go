// Package redisstream connects sluice pipelines to Redis Streams, on
// github.com/redis/go-redis/v9. [Source] reads a stream as a member of a
// consumer group and acknowledges with XACK; [Sink] appends enriched events
// to a stream and dead letters to a dead-letter stream. They implement the
// same sluice interfaces as the Kafka adapter, so switching brokers changes
// the constructors and nothing else.
//
// # Message mapping
//
// By default the event is the value of one field, "payload" (see
// [WithPayloadField]); every other field becomes a header, in field-name
// order, and on output the headers become fields again. [WithKeyField] maps
// one field to Message.Key. With [WithFieldsAsJSON] the whole field map is
// the event instead, as one JSON object with string values.
//
// On output the event's fields come first, then the headers, then the
// origin fields. A header may not take the name of one of the event's
// fields (the payload or key field, or a member of a field-map value): the
// Sink refuses such a message (say a Kafka record with a "payload" header)
// as permanent, with [ErrFieldCollision], so it is dead-lettered instead of
// written with its event replaced by the header; the dead letter keeps the
// event and leaves that header out. Headers named like the origin fields are
// replaced by the origin, and the marker [HeaderEntryError] is kept only on
// dead letters. For the same reason a Sink refuses a payload or key field named
// like a field it writes itself (source_stream, source_id, idempotency_key, failure_reason,
// ...).
//
// An entry without the payload field is neither dropped nor fatal: the
// source hands it over with an empty Value, a [HeaderEntryError] header and
// Message.Err set to a [*MissingFieldError], and the pipeline dead-letters it
// at once, with its fields, without calling the enricher. As a second line
// of defence, [Sink.Write] refuses such a message with a permanent error
// naming [ErrMissingPayload].
//
// # Consumer group and startup reconciliation
//
// [NewSource] creates the group with XGROUP CREATE ... MKSTREAM before it
// returns (an existing group is fine), so an entry added once it returned is
// never skipped. A new group starts at the oldest entry the stream holds (ID
// 0), as a new Kafka group starts at the oldest retained offset;
// WithStartAt([Newest]) starts it at $ instead. Then, before any new entry
// is read, the first Fetch reconciles:
//
//  1. It re-reads this consumer's own pending entries (XREADGROUP with ID 0),
//     page by page: entries a previous run of the same consumer read but
//     never acknowledged, for example because it crashed.
//  2. It claims the entries that have been idle longer than the min-idle
//     time ([WithMinIdle]), until the XAUTOCLAIM cursor comes back to 0-0.
//
// All of them go through the pipeline and are acknowledged like any other
// entry. [Source.Ready] returns nil only once every one of them has been
// acknowledged. The consumer name ([WithConsumer]) defaults to the host name
// so that a restarted process finds its own pending entries; two processes
// must never share a name.
//
// While running, the source claims stuck entries every claim interval
// ([WithClaimInterval]). The min-idle time defaults to five minutes, far
// above the time an event can spend in a pipeline with default settings, so
// that entries another consumer is still working on are not taken from it.
//
// A claim is XAUTOCLAIM ... JUSTID, which moves idle entries to this consumer
// without counting a delivery, followed by XCLAIM of those that this source
// does not have in flight, which counts one and returns their data. An entry
// of this consumer that is idle only because the pipeline is slow with it (a
// long key-ordered queue, a slow writer) is therefore left alone, and its
// delivery counter does not grow while it waits.
//
// # Replies lost in transit
//
// A blocked XREADGROUP > whose connection breaks (a network fault, a
// proxy or load balancer cutting idle connections) may have delivered
// entries on the server with the reply that never arrived: Redis then counts
// them as delivered to this consumer, and no later XREADGROUP > returns them.
// The source therefore sends that read once (go-redis would otherwise retry
// it silently on a broken connection, up to MaxRetries times, and read past
// the lost entries; the retry is turned off for this one command, the client
// and its options are left as they are), and it looks for such entries in
// its own pending list after every failed command and, while reading, at
// least every five seconds (every claim interval when that is shorter). An
// entry there that the source has not handed out (is not in flight) is taken
// with XCLAIM ... JUSTID to this consumer, which confirms it is still pending
// and resets its idle time without counting a delivery, read with XRANGE and
// handed out, logged as a warning. Its Deliveries is Redis's counter as it
// stands, 1 for an entry whose only delivery was lost. Entries in flight are
// never claimed or handed out again by this look-up, and one look-up is one
// XPENDING of this consumer's pending entries (a page per thousand). It is
// one more reason why two processes must never share a consumer name: each
// would take the other's entries in flight for lost ones within seconds.
//
// # Deliveries
//
// Message.Deliveries follows Redis's delivery counter (XPENDING), with one
// rule: an entry re-read from the consumer's own pending list at startup
// gets the counter minus one, because that re-read resumes an earlier
// delivery rather than being a new one. So:
//
//   - a new entry (XREADGROUP >) has Deliveries 1;
//   - an entry claimed from another consumer has the counter, which the claim
//     raised: 2 for an entry whose first consumer died (an entry still in
//     flight in this source is never claimed, so waiting in the pipeline
//     does not raise it);
//   - an entry read, then recovered by a restart of the same consumer, has 1
//     after one restart, 2 after two, and so on;
//   - an entry whose read reply was lost has the counter unchanged by its
//     recovery: 1 when the lost read was its only delivery.
//
// A plain restart therefore does not move healthy entries toward the
// pipeline's delivery limit ([sluice.WithMaxDeliveries], retries+1 by
// default), while an entry that crashes its consumer again and again still
// reaches it and is dead-lettered with a reason that says so.
//
// Entries deleted from the stream (for example trimmed) while pending are
// acknowledged and logged: XAUTOCLAIM on Redis 7 drops them and reports them,
// and XREADGROUP with ID 0 returns them without fields.
//
// # Acknowledgement and connection errors
//
// Ack sends one XACK per batch. If it fails, the IDs are kept and sent again
// with the next Ack, Flush or Close. Fetch logs connection errors, retries
// with backoff (go-redis reconnects), looks for entries whose reply was lost
// (see above), and reports the error through Ready until a read succeeds; errors no retry can fix (rejected credentials,
// missing permissions, a key that is not a stream) are returned and stop the
// pipeline. Connection settings are [WithAddr], [WithCredentials], [WithDB]
// and [WithTLS], or [WithClient] for a client you built.
//
// # Throughput
//
// A source reads at most as many entries as the pipeline has free in-flight
// slots. The pipeline's default window (four times the concurrency, at least
// 64) suits slow model calls; for fast enrichers raise it, for example with
// sluice.WithMaxInFlight(1024), so that each XREADGROUP, each pipelined
// batch of XADDs and each XACK carries a few hundred entries. The
// BenchmarkPassThrough benchmark compares both settings with a hand-written
// go-redis loop.
//
// # Dead letters
//
// The sink writes dead letters to the "dead_letter" stream
// ([WithDeadLetterStream]) with the original payload and fields plus
// failure_reason, failure_attempts, failure_time, source_stream and
// source_id. Every XADD reply is checked, of dead letters and of outputs
// alike: a letter or output Redis refused (for example with WRONGTYPE,
// because the key holds another type) is reported to the pipeline, which
// writes it again and does not acknowledge its entry meanwhile. When the
// source and the sink share one *redis.Client (see [Source.Client]), the
// sink (with [WithAtomicAck]) writes outputs and acknowledges their entries
// in one Lua script (a failing XADD stops it before the XACK), and
// acknowledges the entries
// whose dead letters Redis confirmed, and only those, right after the
// XADDs. (It does not queue the XACKs in a MULTI/EXEC with the XADDs: Redis
// does not roll back a transaction when one command fails at run time, so
// an XACK there would run even when its XADD failed, and the entry would be
// lost.) [WithWaitReplicas] adds a WAIT behind each batch of XADDs.
//
// # Redis versions
//
// A [Source] needs Redis 7.0 or newer ([MinRedisVersion]): before 7.0,
// XAUTOCLAIM answers a pending entry deleted from the stream with a null
// element that go-redis cannot parse (after the server has already moved the
// page's entries), and XINFO GROUPS reports no lag. [NewSource] reads
// redis_version from INFO server and refuses an older server with an error
// matching [ErrUnsupportedServer]; a server that does not answer INFO
// server (for example an embedded test server) is used with a warning. A
// [Sink] checks no version: it uses only XADD and XACK.
//
// # Constructors and options
//
// Both constructors take a context first and check that they can work
// before they return, as the kafka constructors do: [NewSink] that the
// server answers PING, [NewSource] also its version and the group. A
// server that does not answer fails them with an error matching
// [ErrUnreachable].
//
// Options are typed by what they configure, so that a misplaced option is
// a compile error: a [SourceOption] goes to [NewSource] only, a
// [SinkOption] to [NewSink] only, and an [Option] (connection, TLS, field
// mapping, logger) to both. Every option checks its argument; a
// constructor reports every bad one at once, joined, each matching
// [sluice.ErrInvalidConfig] and reading "redisstream: WithX(value): what is
// wrong; what to do".
package redisstream
