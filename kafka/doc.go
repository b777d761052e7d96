// Package kafka connects sluice pipelines to Apache Kafka, through
// github.com/IBM/sarama.
//
// [NewSource] joins a consumer group and returns a [Source] that implements
// [sluice.Source] and [sluice.Acker] plus the optional [sluice.Pauser],
// [sluice.LagReporter], [sluice.Readier] and [sluice.Flusher].
// [NewSink] returns a [Sink] that implements [sluice.Sink] and
// [sluice.DeadLetterWriter]. A pipeline moves from Redis Streams to Kafka by
// changing only these constructors: both packages have the same
// constructor policy, option style and start position.
//
// # Delivery
//
// Delivery is at least once. Auto-commit is off: the source commits, per
// partition, only the offsets below the first event that has not finished
// (been written or dead-lettered, and acked by the pipeline), however out of
// order events finish. It commits every second, when a partition is
// revoked, on Flush and on Close. A revoked partition stops handing out
// events, waits up to the revoke timeout for those in flight, commits and
// lets go; late acks for it are ignored, since each message's Token names
// the claim (partition and generation) that fetched it.
//
// The sink's producer is idempotent with acks=all, compresses with LZ4 and lingers
// 5ms. A write returns only once the broker has acknowledged every record.
// Outputs keep the input's key and headers and add source_topic,
// source_partition, source_offset and idempotency_key; dead letters go to the "dead_letter"
// topic with the original key, value and headers plus the headers of
// [sluice.DeadLetter.Headers]. A record larger than the broker accepts is
// reported as a [sluice.Permanent] write error, so the event is
// dead-lettered instead of retried forever.
//
// # Exactly once
//
// [NewTxnSink] replaces the sink for Kafka-to-Kafka pipelines that must not
// write duplicates: every 100ms ([WithTxnInterval]) it commits one
// transaction holding the outputs and dead letters of the events finished
// below each partition's first unfinished offset, and that offset for the
// source's group, with the group generation and member id so that the
// broker fences a member that lost its partitions (KIP-447). The source
// must read committed ([WithReadCommitted]); the pipeline uses the sink as
// its acker. Consumers that read with isolation.level=read_committed see
// each input exactly once. docs/guarantees.md has the details and the
// costs.
//
// # Constructors
//
// Both constructors take a context first and check that they can work
// before they return: they connect (within the connect timeout, or until
// the context ends) and fail with an error matching [ErrUnreachable] when
// no broker answers. [NewSource] then joins its group in the background.
//
// # Options
//
// Options are typed by what they configure, so that a misplaced option is
// a compile error rather than a run-time surprise: a [SourceOption] goes to
// [NewSource] only, a [SinkOption] to [NewSink] only, and an [Option]
// (connection, TLS, SASL, client id, version, logger, dialer, raw sarama
// edits) to both and to [ClientConfig]. Every option checks its argument;
// a constructor reports every bad one at once, joined, each matching
// [sluice.ErrInvalidConfig] and reading "kafka: WithX(value): what is
// wrong; what to do".
//
// The defaults are safe: session timeout 30s, heartbeat 3s, rebalance
// timeout 600s, dynamic membership unless [WithInstanceID] makes the member
// static, and a new group starts at the oldest retained event
// ([WithStartAt]), as a new redisstream group does. [WithTLS] and
// [WithSASL] (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512) secure the connection,
// and [WithSaramaConfig] edits the *sarama.Config last, for anything else.
// [WithDialer] sends every broker connection through a dial function of
// your own (a SOCKS proxy, a tunnel, a fault-injecting proxy in tests).
//
// # Health
//
// [Source.Lag] and [Source.Ready] share one round trip to the cluster
// (committed offsets from the group coordinator in one OffsetFetch, high
// watermarks in one ListOffsets per partition leader, all at once, over
// connections of their own), so a topic of 1,000 partitions costs as many
// requests as one of 4; they wait for it only
// as long as their context allows: with the brokers down or unreachable
// both return an error matching [ErrUnreachable] when the context ends. The
// pipeline's probes give them well under a second and report the failure
// as a "degraded" /healthz and a 503 from /readyz.
package kafka
