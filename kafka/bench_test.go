package kafka

// Kafka→Kafka pass-through benchmarks on a real broker:
//
//	KAFKA_BROKERS=127.0.0.1:9092 go test -run '^$' -bench Kafka ./kafka
//
// With the default -benchtime the two variants may run different numbers of
// events; add -benchtime=200000x to compare them on equal backlogs.
//
// BenchmarkKafkaThroughput drains a backlog of b.N 1 KiB JSON events over 8
// partitions, through a sluice pipeline with a no-op enricher and, as the
// ceiling, through a minimal hand-written sarama consume→produce loop with
// the same producer settings. BenchmarkKafkaLatency feeds events at a fixed
// rate and reports the end-to-end latency (input record timestamp to the
// broker's acknowledgement of the output record).

import (
	"context"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/internal/testutil"
)

const (
	benchPartitions = 8
	benchRate       = 5000 // events/s for the latency benchmark
)

func benchValue(i int) []byte {
	head := fmt.Sprintf(`{"id":%d,"kind":"click","payload":"`, i)
	return []byte(head + strings.Repeat("x", 1024-len(head)-2) + `"}`)
}

// benchModel stands in for a model that takes a fixed latency per call,
// and measures how long its calls really took: on two busy cores a sleep
// overshoots, so the Little's-law bound at the nominal latency is out of
// reach of any client.
type benchModel struct {
	delay        time.Duration
	calls, slept atomic.Int64
}

func newBenchModel(d time.Duration) *benchModel { return &benchModel{delay: d} }

// call sleeps for the model's latency; a nil model returns at once.
func (m *benchModel) call() {
	if m == nil || m.delay <= 0 {
		return
	}
	t0 := time.Now()
	time.Sleep(m.delay)
	m.slept.Add(int64(time.Since(t0)))
	m.calls.Add(1)
}

// mean is the average latency of the calls so far (the nominal one before
// the first call).
func (m *benchModel) mean() time.Duration {
	if n := m.calls.Load(); n > 0 {
		return time.Duration(m.slept.Load() / n)
	}
	return m.delay
}

// feed writes n events to topic, at rate events/s or as fast as possible
// when rate is 0, each stamped with its send time.
func feed(b *testing.B, bs []string, topic string, n, rate int) {
	feedValues(b, bs, topic, n, rate, benchValue)
}

// randomValue is a 1 KiB JSON event whose payload is random hex, which
// compresses about 2:1 like typical JSON rather than 100:1 like benchValue.
func randomValue(i int) []byte {
	head := fmt.Sprintf(`{"id":%d,"kind":"click","payload":"`, i)
	buf := make([]byte, (1024-len(head)-2)/2)
	for j := range buf {
		buf[j] = byte(rand.Uint32())
	}
	return []byte(head + hex.EncodeToString(buf) + `"}`)
}

// feedValues is feed with the event values made by value.
func feedValues(b *testing.B, bs []string, topic string, n, rate int, value func(int) []byte) {
	cfg := testConfig()
	cfg.Producer.Compression = sarama.CompressionLZ4
	cfg.Producer.Flush.Frequency = 2 * time.Millisecond
	cfg.Producer.Return.Successes = true
	p, err := sarama.NewAsyncProducer(bs, cfg)
	if err != nil {
		b.Fatalf("feeder: %v", err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range n {
			select {
			case <-p.Successes():
			case err := <-p.Errors():
				b.Errorf("feed: %v", err)
			}
		}
	}()
	var tick *time.Ticker
	burst := 50 // events sent per tick: a steady rate, in ticks of at least 5ms
	if rate > 0 {
		burst = max(1, min(burst, rate/200))
		tick = time.NewTicker(time.Second * time.Duration(burst) / time.Duration(rate))
		defer tick.Stop()
	}
	for i := range n {
		if tick != nil && i%burst == 0 {
			<-tick.C
		}
		p.Input() <- &sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder(fmt.Sprint(i)),
			Value: sarama.ByteEncoder(value(i)), Timestamp: time.Now()}
	}
	<-done
	_ = p.Close()
}

// latencies collects end-to-end latencies.
type latencies struct {
	mu   sync.Mutex
	d    []time.Duration
	from time.Time // events stamped earlier are warm-up, not counted
}

func (l *latencies) add(ts time.Time, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if ts.Before(l.from) {
		return
	}
	l.d = append(l.d, now.Sub(ts))
}

func (l *latencies) report(b *testing.B) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.d) == 0 {
		return
	}
	slices.Sort(l.d)
	q := func(p float64) float64 { return float64(l.d[int(p*float64(len(l.d)-1))]) / 1e6 }
	b.ReportMetric(q(0.50), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
}

// passThrough is what each benchmark variant runs: consume in from the
// beginning and write every event to out, returning once n are confirmed.
type passThrough func(b *testing.B, bs []string, in, out string, n int, lat *latencies, joined func()) (finished time.Time)

// tuned is the README's tuning for pass-through: a big pinned window and
// many writers.
var tuned = []sluice.Option{sluice.WithConcurrency(16), sluice.WithMaxInFlight(16384), sluice.WithFetchBatch(1024),
	sluice.WithWriteBatch(1024), sluice.WithWriters(32)}

func runPipeline(b *testing.B, bs []string, in, out string, n int, lat *latencies, joined func()) time.Time {
	return pipelineWith(nil, nil, tuned...)(b, bs, in, out, n, lat, joined)
}

func runDefaults(b *testing.B, bs []string, in, out string, n int, lat *latencies, joined func()) time.Time {
	return pipelineWith(nil, nil)(b, bs, in, out, n, lat, joined)
}

// pipelineWith is a pass-through pipeline with the given options whose
// enricher calls model for each event (nil: no model); when peak is not nil it receives the most
// events in flight (fetched and not yet acked) during the run.
func pipelineWith(model *benchModel, peak *atomic.Int64, opts ...sluice.Option) passThrough {
	return func(b *testing.B, bs []string, in, out string, n int, lat *latencies, joined func()) time.Time {
		ctx := context.Background()
		src, err := NewSource(ctx, bs, in+"-g", []string{in}, WithLogger(testutil.Quiet()))
		if err != nil {
			b.Fatal(err)
		}
		defer src.Close()
		prod, err := NewSink(ctx, bs, out, WithLogger(testutil.Quiet()))
		if err != nil {
			b.Fatal(err)
		}
		defer prod.Close()
		var written atomic.Int64
		all := make(chan struct{})
		sink := sluice.SinkFunc(func(ctx context.Context, msgs []*sluice.Message) error {
			if err := prod.Write(ctx, msgs); err != nil {
				return err
			}
			now := time.Now()
			if lat != nil {
				for _, m := range msgs {
					lat.add(m.Timestamp, now)
				}
			}
			if written.Add(int64(len(msgs))) >= int64(n) {
				select {
				case <-all:
				default:
					close(all)
				}
			}
			return nil
		})
		enr := sluice.EnricherFunc(func(_ context.Context, m *sluice.Message) (*sluice.Message, error) {
			model.call()
			return m, nil
		})
		p, err := sluice.New(src, enr, sink, append([]sluice.Option{sluice.WithDeadLetter(prod), sluice.WithLogger(testutil.Quiet())}, opts...)...)
		if err != nil {
			b.Fatal(err)
		}
		runCtx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- p.Run(runCtx) }()
		select {
		case <-src.joined:
			joined()
		case err := <-done:
			b.Fatalf("pipeline stopped: %v", err)
		}
		select {
		case <-all:
		case err := <-done:
			b.Fatalf("pipeline stopped: %v", err)
		}
		b.StopTimer()
		end := time.Now()
		if peak != nil {
			peak.Store(p.Stats().PeakInFlight)
		}
		cancel()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		return end
	}
}

// runSaramaLoop is the ceiling: a consumer group whose handler hands each
// message to an async producer with the same settings as Producer, and
// marks it once the broker acknowledged the output.
func runSaramaLoop(b *testing.B, bs []string, in, out string, n int, lat *latencies, joined func()) time.Time {
	return saramaLoopWith(nil, 0)(b, bs, in, out, n, lat, joined)
}

// saramaLoopWith is the loop with model called with at most conc calls at
// once (nil and 0: no model). Marking may then go out of order,
// which a real program could not afford; as a ceiling it is fine.
func saramaLoopWith(model *benchModel, conc int) passThrough {
	return func(b *testing.B, bs []string, in, out string, n int, lat *latencies, joined func()) time.Time {
		cfg := testConfig()
		cfg.Consumer.Offsets.Initial = sarama.OffsetOldest
		cfg.Producer.Idempotent = true
		cfg.Net.MaxOpenRequests = 1
		cfg.Producer.Compression = sarama.CompressionLZ4
		cfg.Producer.Flush.Frequency = 5 * time.Millisecond
		cfg.Producer.Return.Errors = true
		client, err := sarama.NewClient(bs, cfg)
		if err != nil {
			b.Fatal(err)
		}
		defer client.Close()
		prod, err := sarama.NewAsyncProducerFromClient(client)
		if err != nil {
			b.Fatal(err)
		}
		defer prod.Close()
		cg, err := sarama.NewConsumerGroup(bs, in+"-loop", cfg)
		if err != nil {
			b.Fatal(err)
		}
		defer cg.Close()

		all := make(chan struct{})
		var sess atomic.Pointer[sarama.ConsumerGroupSession]
		go func() {
			count := 0
			for {
				select {
				case m, ok := <-prod.Successes():
					if !ok {
						return
					}
					src := m.Metadata.(*sarama.ConsumerMessage)
					if s := sess.Load(); s != nil {
						(*s).MarkMessage(src, "")
					}
					if lat != nil {
						lat.add(src.Timestamp, time.Now())
					}
					if count++; count == n {
						close(all)
					}
				case err, ok := <-prod.Errors():
					if ok {
						b.Errorf("loop produce: %v", err)
					}
					return
				}
			}
		}()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		var once sync.Once
		joinedC := make(chan struct{})
		h := loopHandler{prod: prod, out: out, sess: &sess, joined: func() { once.Do(func() { close(joinedC) }) }, model: model}
		if conc > 0 {
			h.sem = make(chan struct{}, conc)
		}
		go func() {
			for ctx.Err() == nil {
				if err := cg.Consume(ctx, []string{in}, h); err != nil && ctx.Err() == nil {
					b.Errorf("loop consume: %v", err)
					return
				}
			}
		}()
		<-joinedC
		joined()
		<-all
		b.StopTimer()
		return time.Now()
	}
}

type loopHandler struct {
	prod   sarama.AsyncProducer
	out    string
	sess   *atomic.Pointer[sarama.ConsumerGroupSession]
	joined func()
	model  *benchModel
	sem    chan struct{}
}

func (h loopHandler) Setup(s sarama.ConsumerGroupSession) error {
	h.sess.Store(&s)
	h.joined()
	return nil
}
func (h loopHandler) Cleanup(sarama.ConsumerGroupSession) error { return nil }
func (h loopHandler) ConsumeClaim(s sarama.ConsumerGroupSession, c sarama.ConsumerGroupClaim) error {
	for {
		select {
		case m, ok := <-c.Messages():
			if !ok {
				return nil
			}
			hs := make([]sarama.RecordHeader, 0, len(m.Headers)+3)
			for _, h := range m.Headers {
				hs = append(hs, *h)
			}
			hs = append(hs, recordHeaders(nil, sluice.Origin{Topic: m.Topic, Partition: m.Partition, Offset: m.Offset})...)
			pm := &sarama.ProducerMessage{Topic: h.out, Key: sarama.ByteEncoder(m.Key),
				Value: sarama.ByteEncoder(m.Value), Headers: hs, Metadata: m}
			if h.sem == nil {
				h.prod.Input() <- pm
				continue
			}
			h.sem <- struct{}{}
			go func() {
				h.model.call()
				h.prod.Input() <- pm
				<-h.sem
			}()
		case <-s.Context().Done():
			return nil
		}
	}
}

var variants = []struct {
	name string
	run  passThrough
}{
	{"sarama-loop", runSaramaLoop},
	{"pipeline", runPipeline},
	{"defaults", runDefaults},
}

// processCPU is the user and system CPU time this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkKafkaThroughput drains a backlog of b.N events. The clock runs
// from the moment the consumer group has joined.
func BenchmarkKafkaThroughput(b *testing.B) {
	bs := brokers(b)
	for _, v := range variants {
		b.Run(v.name, func(b *testing.B) {
			in := createTopic(b, bs, "bench-in", benchPartitions)
			out := createTopic(b, bs, "bench-out", benchPartitions)
			feed(b, bs, in, b.N, 0)
			b.SetBytes(1024)
			b.ResetTimer()
			b.StopTimer() // the group join is not counted
			var start time.Time
			run := v.run
			var peak atomic.Int64
			if v.name == "defaults" {
				run = pipelineWith(nil, &peak)
			}
			var cpu0 time.Duration
			end := run(b, bs, in, out, b.N, nil, func() { start, cpu0 = time.Now(), processCPU(); b.StartTimer() })
			// The CPU this process spent per event (consumer, pipeline and
			// producer; not the broker's): steadier than events/s when other
			// work shares the cores.
			b.ReportMetric(float64((processCPU()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/event")
			b.ReportMetric(float64(b.N)/end.Sub(start).Seconds(), "events/s")
			if v.name == "defaults" {
				// Events fetched and not yet acked: what a rebalance or a
				// crash redelivers at most, besides what was acked but not
				// yet committed (one commit interval).
				b.ReportMetric(float64(peak.Load()), "peak-in-flight")
			}
		})
	}
}

// BenchmarkKafkaModel drains a backlog of b.N events through a model of
// fixed latency: 20ms with 256 calls at once (the loop holds 256 in
// flight; the pipeline sets only WithConcurrency(256)), and 5ms with the
// pipeline's defaults, whose rate sets the load of BenchmarkKafkaLatency.
// littles-% is events/s against the Little's-law bound concurrency/latency.
func BenchmarkKafkaModel(b *testing.B) {
	bs := brokers(b)
	cases := []struct {
		name  string
		delay time.Duration
		conc  int
		run   func(*benchModel) passThrough
	}{
		{"20ms-c256/sarama-loop", 20 * time.Millisecond, 256, func(m *benchModel) passThrough { return saramaLoopWith(m, 256) }},
		{"20ms-c256/defaults", 20 * time.Millisecond, 256, func(m *benchModel) passThrough {
			return pipelineWith(m, nil, sluice.WithConcurrency(256))
		}},
		{"5ms/defaults", 5 * time.Millisecond, 8, func(m *benchModel) passThrough { return pipelineWith(m, nil) }},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			in := createTopic(b, bs, "bench-model-in", benchPartitions)
			out := createTopic(b, bs, "bench-model-out", benchPartitions)
			feed(b, bs, in, b.N, 0)
			b.ResetTimer()
			b.StopTimer()
			var start time.Time
			model := newBenchModel(c.delay)
			end := c.run(model)(b, bs, in, out, b.N, nil, func() { start = time.Now(); b.StartTimer() })
			rate := float64(b.N) / end.Sub(start).Seconds()
			b.ReportMetric(rate, "events/s")
			b.ReportMetric(100*rate/(float64(c.conc)/c.delay.Seconds()), "littles-%")
			// Against the latency each call really took: what is left is
			// the pipeline's own loss, not the timers' slack.
			b.ReportMetric(100*rate/(float64(c.conc)/model.mean().Seconds()), "littles-measured-%")
		})
	}
}

// BenchmarkKafkaLatencyModel feeds b.N events at SLUICE_LATENCY_RATE
// events/s (default 800: half of the 1,600/s that 8 calls of 5ms allow)
// through a pipeline with defaults and a 5ms model, and reports end-to-end
// latency percentiles: input record timestamp to the broker's
// acknowledgement of the output record, for the events sent after the
// first second (which warms up the producers' connections and metadata).
func BenchmarkKafkaLatencyModel(b *testing.B) {
	bs := brokers(b)
	rate := 800
	if v, err := strconv.Atoi(os.Getenv("SLUICE_LATENCY_RATE")); err == nil && v > 0 {
		rate = v
	}
	in := createTopic(b, bs, "bench-latm-in", benchPartitions)
	out := createTopic(b, bs, "bench-latm-out", benchPartitions)
	var lat latencies
	fed := make(chan struct{})
	b.ResetTimer()
	pipelineWith(newBenchModel(5*time.Millisecond), nil)(b, bs, in, out, b.N, &lat, func() {
		lat.mu.Lock()
		lat.from = time.Now().Add(time.Second) // the first second warms up connections
		lat.mu.Unlock()
		go func() { defer close(fed); feed(b, bs, in, b.N, rate) }()
	})
	<-fed
	lat.report(b)
	b.ReportMetric(float64(rate), "load-ev/s")
}

// BenchmarkKafkaLatency feeds b.N events at a fixed rate while the
// pass-through runs and reports end-to-end latency percentiles.
func BenchmarkKafkaLatency(b *testing.B) {
	bs := brokers(b)
	for _, v := range variants {
		b.Run(v.name, func(b *testing.B) {
			in := createTopic(b, bs, "bench-lat-in", benchPartitions)
			out := createTopic(b, bs, "bench-lat-out", benchPartitions)
			var lat latencies
			fed := make(chan struct{})
			b.ResetTimer()
			// Feed once the group has joined, so the join is not counted.
			v.run(b, bs, in, out, b.N, &lat, func() {
				go func() { defer close(fed); feed(b, bs, in, b.N, benchRate) }()
			})
			<-fed
			lat.report(b)
		})
	}
}

// BenchmarkKafkaMemory measures the resident memory of a pipeline with
// defaults in front of a backlog of 200,000 1 KiB events and a model that
// takes 60s per call: once the window has filled, it reports VmRSS (rss-MB),
// the Go heap in use (heap-MB) and the events in flight. Run it with
// -benchtime 1x. The events' payloads are random hex, which compresses like
// typical JSON: the Kafka consumer's read-ahead is bounded in compressed
// bytes, so with benchValue's 100:1 payloads it holds ~25 MB per partition
// once decompressed, whatever the pipeline's window.
func BenchmarkKafkaMemory(b *testing.B) {
	bs := brokers(b)
	const backlog = 200_000
	in := createTopic(b, bs, "bench-mem-in", benchPartitions)
	out := createTopic(b, bs, "bench-mem-out", benchPartitions)
	feedValues(b, bs, in, backlog, 0, randomValue)
	runtime.GC()
	debug.FreeOSMemory()
	ctx := context.Background()
	src, err := NewSource(ctx, bs, in+"-g", []string{in}, WithLogger(testutil.Quiet()))
	if err != nil {
		b.Fatal(err)
	}
	defer src.Close()
	sink, err := NewSink(ctx, bs, out, WithLogger(testutil.Quiet()))
	if err != nil {
		b.Fatal(err)
	}
	defer sink.Close()
	release := make(chan struct{})
	model := sluice.EnricherFunc(func(ctx context.Context, m *sluice.Message) (*sluice.Message, error) {
		select { // a 60s model call, cut short when the benchmark is done
		case <-time.After(60 * time.Second):
		case <-release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return m, nil
	})
	p, err := sluice.New(src, model, sink, sluice.WithLogger(testutil.Quiet()))
	if err != nil {
		b.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- p.Run(runCtx) }()
	b.ResetTimer()
	for p.Stats().InFlight < 64 {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(3 * time.Second) // the source's read-ahead fills too
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	b.ReportMetric(float64(vmRSS(b))/(1<<20), "rss-MB")
	b.ReportMetric(float64(ms.HeapInuse)/(1<<20), "heap-MB")
	b.ReportMetric(float64(p.Stats().InFlight), "in-flight")
	b.StopTimer()
	close(release)
	cancel()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
}

// vmRSS reads the resident set size of this process from /proc.
func vmRSS(b *testing.B) int64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		b.Skipf("no /proc/self/status: %v", err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	b.Skip("no VmRSS in /proc/self/status")
	return 0
}
