package conformance

import (
	"log/slog"
	"testing"
	"time"

	"github.com/sluicehq/sluice"
)

// Harness connects the suite to one adapter and its broker. An adapter's
// test fills it in and passes it to [Run]. The function fields receive the
// *testing.T of the subtest that calls them: they should report setup
// failures with t.Fatal and register cleanups with t.Cleanup, which then run
// when that subtest ends.
//
// The fields marked required must be set; the others have defaults or turn
// a subtest off when nil.
type Harness struct {
	// Name identifies the adapter in logs, for example "kafka".
	Name string

	// NewTopic returns the name of a fresh, empty topic or stream that no
	// other test uses, with the given number of partitions; adapters
	// without partitions ignore the count. The suite calls it for input,
	// output and dead-letter topics alike. Required.
	NewTopic func(t *testing.T, partitions int) string

	// Publish writes input events to topic and returns once the broker has
	// durably accepted all of them. Only Key, Value and Headers of msgs are
	// set; Publish must write them unchanged (a nil and an empty key or
	// value may be treated alike) and spread keyed events over partitions
	// the way the adapter's users would. Required.
	Publish func(t *testing.T, topic string, msgs []*sluice.Message)

	// NewSource opens the adapter's source on topic as consumer member
	// member of consumer group group. A group that has never consumed
	// topic must start at its earliest event, since the suite publishes
	// before it consumes (Kafka: initial offset oldest; Redis: create the
	// group at ID 0). Opening a source again with the same group and
	// member is a restart of that member; a different member name is
	// another member of the same group.
	//
	// The source must also implement [sluice.Acker]; it is checked for
	// [sluice.Pauser], [sluice.LagReporter] and [sluice.Readier] too. The
	// suite closes every source it opens, sometimes while a Fetch is
	// blocked in another goroutine, and may close one twice; NewSource may
	// also register a t.Cleanup that closes it. Required.
	NewSource func(t *testing.T, topic, group, member string) sluice.Source

	// NewSink opens the adapter's sink writing enriched events to topic
	// out and dead letters to topic dlq. It must implement
	// [sluice.DeadLetterWriter], put the origin headers of
	// [sluice.AppendOriginHeaders] on every enriched record and the headers
	// of [sluice.DeadLetter.Headers] on every dead letter. The suite never
	// closes a sink: NewSink should register a t.Cleanup that does.
	// Required.
	NewSink func(t *testing.T, out, dlq string) sluice.Sink

	// ReadAll returns every record now in topic, in log order, with Key,
	// Value and Headers as the broker stores them and Origin set as the
	// adapter's source would set it (Topic plus Partition and Offset, or
	// Topic and ID). It must not consume on behalf of any consumer group
	// the suite uses and must not block waiting for new records. The suite
	// polls it to wait for outputs, so it should be quick for a few
	// hundred records. Required.
	ReadAll func(t *testing.T, topic string) []*sluice.Message

	// RestartServer stops the broker or server and starts it again,
	// keeping its data (Redis needs persistence, such as appendonly yes),
	// and returns once it serves requests again. Sources and sinks opened
	// before must recover on their own, and Publish must work afterwards.
	// Nil skips the ServerRestart subtest.
	RestartServer func(t *testing.T)

	// RedeliveryDelay is how long the group may take to hand the unacked
	// events of a member that went away to another member: for Kafka the
	// session timeout when members are static (they send no LeaveGroup),
	// for Redis Streams the claim min-idle time plus the claim interval.
	// The Redelivery subtest waits this long on top of Timeout. The
	// default is 0.
	RedeliveryDelay time.Duration

	// Timeout bounds each wait for outputs, lag or a rebalance. The default
	// is 60s.
	Timeout time.Duration

	// PollInterval is how often ReadAll and Lag are polled while waiting.
	// The default is 50ms.
	PollInterval time.Duration

	// DrainTimeout is passed to [sluice.WithDrainTimeout] for the suite's
	// pipelines; the subtests that stop a busy pipeline wait about this
	// long. The default is 1s.
	DrainTimeout time.Duration

	// Events is the number of events most subtests publish. The default is
	// 200; fewer than 40 is raised to 40.
	Events int

	// PipelineOptions are appended to the options of every pipeline the
	// suite builds, after its own, for example to enable an adapter-specific
	// observer. Options that change delivery semantics (retries, max
	// deliveries, concurrency) can make subtests fail.
	PipelineOptions []sluice.Option

	// Logger receives the pipelines' logs. The default logs warnings and
	// errors through t.Log of the running subtest.
	Logger *slog.Logger

	// IgnoreGoroutines lists substrings of goroutine stacks that the
	// goroutine-leak check of the CloseWhileBusy subtest ignores. A
	// goroutine that starts while the suite's source is open and still runs
	// after it is closed is reported as a leak, unless it descends from a
	// goroutine that was running before the source opened (such as a
	// sink's producer, which may start workers on its first write) or its
	// stack contains one of these substrings. List background goroutines
	// that outlive a source on purpose, such as those a sink starts
	// directly from Write.
	IgnoreGoroutines []string
}

func (h Harness) withDefaults() Harness {
	if h.Name == "" {
		h.Name = "adapter"
	}
	if h.Timeout <= 0 {
		h.Timeout = 60 * time.Second
	}
	if h.PollInterval <= 0 {
		h.PollInterval = 50 * time.Millisecond
	}
	if h.DrainTimeout <= 0 {
		h.DrainTimeout = time.Second
	}
	if h.Events <= 0 {
		h.Events = 200
	}
	if h.Events < 40 {
		h.Events = 40
	}
	if h.RedeliveryDelay < 0 {
		h.RedeliveryDelay = 0
	}
	return h
}

func (h Harness) missing() []string {
	var m []string
	if h.NewTopic == nil {
		m = append(m, "NewTopic")
	}
	if h.Publish == nil {
		m = append(m, "Publish")
	}
	if h.NewSource == nil {
		m = append(m, "NewSource")
	}
	if h.NewSink == nil {
		m = append(m, "NewSink")
	}
	if h.ReadAll == nil {
		m = append(m, "ReadAll")
	}
	return m
}
