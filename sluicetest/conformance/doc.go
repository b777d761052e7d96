// Package conformance is a test suite that every sluice adapter (a
// [sluice.Source] with its [sluice.Acker], and a [sluice.Sink] with its
// [sluice.DeadLetterWriter]) should pass against a real broker. It checks
// the promises the pipeline relies on: at-least-once delivery through
// crashes, restarts and rebalances, out-of-order acks, pause and resume,
// dead-letter records, lag, and a clean shutdown.
//
// An adapter's test describes how to reach its broker with a [Harness] and
// calls [Run], which runs one subtest per behaviour, each with real
// pipelines built by [sluice.New]:
//
//	func TestConformance(t *testing.T) {
//		addr := brokerAddr(t) // the adapter's own helper: env, container or t.Skip
//		conformance.Run(t, conformance.Harness{
//			Name: "mybroker",
//			NewTopic: func(t *testing.T, partitions int) string {
//				return createTopic(t, addr, partitions) // unique name
//			},
//			Publish: func(t *testing.T, topic string, msgs []*sluice.Message) {
//				produceSync(t, addr, topic, msgs) // key, value and headers as given
//			},
//			NewSource: func(t *testing.T, topic, group, member string) sluice.Source {
//				src, err := mybroker.NewSource(addr, topic, group,
//					mybroker.WithMember(member), mybroker.WithStartAtOldest())
//				if err != nil {
//					t.Fatal(err)
//				}
//				t.Cleanup(func() { src.Close() })
//				return src
//			},
//			NewSink: func(t *testing.T, out, dlq string) sluice.Sink {
//				sink, err := mybroker.NewSink(addr, out, mybroker.WithDeadLetterTopic(dlq))
//				if err != nil {
//					t.Fatal(err)
//				}
//				t.Cleanup(func() { sink.Close() })
//				return sink
//			},
//			ReadAll: func(t *testing.T, topic string) []*sluice.Message {
//				return readTopic(t, addr, topic) // with Origin set
//			},
//			RestartServer: func(t *testing.T) { restartBroker(t) }, // or nil
//		})
//	}
//
// # Subtests
//
//   - PublishConsume: every event is enriched; outputs carry the input's key,
//     headers and the origin headers of [sluice.AppendOriginHeaders]; the
//     source delivers what was published, and Fetch after Close returns
//     [sluice.ErrSourceClosed].
//   - OutOfOrderAck: later events finish before earlier ones, some earlier
//     ones never finish; after a restart of the same member nothing is lost.
//   - CrashRestart: the source is closed under a pipeline whose enrichers
//     are blocked, and the pipeline stops without draining; a new source for
//     the same member finishes every event.
//   - Redelivery: events a stopped pipeline left unacked reach another member
//     of the group (within [Harness.RedeliveryDelay]), with a delivery count
//     of at least 2 when the source counts deliveries.
//   - GroupSplit: two pipelines in one group with different members both get
//     work, and together enrich every event.
//   - PauseResume: a rate-limited enricher makes the pipeline call Pause and
//     Resume on the source, and every event still completes (skipped when the
//     source is not a [sluice.Pauser]).
//   - DeadLetters: rejected events and events out of retries become dead
//     letters with the original bytes, key and headers plus failure_reason,
//     failure_attempts, failure_time and the origin headers.
//   - Lag: the source's lag reaches 0 once every event is done, and its total
//     is the sum of its parts (skipped when it is not a [sluice.LagReporter]).
//   - CloseWhileBusy: Run returns soon after cancellation although every
//     worker is blocked; no pipeline goroutine survives Run and no source
//     goroutine survives Close; a fresh pipeline finishes every event.
//   - ServerRestart: the broker restarts under a running pipeline with events
//     in flight; the pipeline recovers and nothing is lost (skipped when
//     [Harness.RestartServer] is nil).
//
// # Verification
//
// Every input carries a unique [HeaderEventID] header. After publishing, the
// suite reads the input topic back with [Harness.ReadAll] to learn each
// event's origin, then matches output and dead-letter records to inputs by
// their origin headers. An input with no record where it belongs fails the
// subtest; duplicates are allowed, as at-least-once delivery permits, and
// are counted in the log. Waits poll ReadAll (and Lag) until every input is
// accounted for or [Harness.Timeout] passes, and fail early if a pipeline
// stops on its own.
//
// The suite's enrichers turn a value v into "enriched:" followed by v, so
// outputs can be checked byte for byte.
package conformance
