// Package kafka connects sluice pipelines to Apache Kafka, through
// github.com/IBM/sarama.
//
// [NewSource] joins a consumer group and returns a [Source] that implements
// [sluice.Source] and [sluice.Acker] plus the optional [sluice.Pauser],
// [sluice.LagReporter], [sluice.Readier] and [sluice.Flusher].
// [NewProducer] returns a [Producer] that implements [sluice.Sink] and
// [sluice.DeadLetterWriter]. A pipeline moves from Redis Streams to Kafka by
// changing only these constructors.
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
// The producer is idempotent with acks=all, compresses with LZ4 and lingers
// 5ms. A write returns only once the broker has acknowledged every record.
// Outputs keep the input's key and headers and add source_topic,
// source_partition and source_offset; dead letters go to the "dead_letter"
// topic with the original key, value and headers plus the headers of
// [sluice.DeadLetter.Headers]. A record larger than the broker accepts is
// reported as a [sluice.Permanent] write error, so the event is
// dead-lettered instead of retried forever.
//
// # Configuration
//
// Options are functions with safe defaults: session timeout 30s, heartbeat
// 3s, rebalance timeout 600s, initial offset oldest, dynamic membership
// unless [WithInstanceID] makes the member static. [WithTLS] and [WithSASL]
// (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512) secure the connection, and
// [WithSaramaConfig] edits the *sarama.Config last, for anything else. A bad
// setting fails at construction with an error matching
// [sluice.ErrInvalidConfig] that names it; a broker that does not answer
// fails it with [ErrUnreachable] within the connect timeout. [WithDialer]
// sends every broker connection through a dial function of your own (a
// SOCKS proxy, a tunnel, a fault-injecting proxy in tests).
//
// # Health
//
// [Source.Lag] and [Source.Ready] share one round trip to the cluster
// (committed offsets from the group coordinator, high watermarks from the
// partition leaders, over connections of their own) and wait for it only
// as long as their context allows: with the brokers down or unreachable
// both return an error matching [ErrUnreachable] when the context ends. The
// pipeline's probes give them well under a second and report the failure
// as a "degraded" /healthz and a 503 from /readyz.
package kafka
