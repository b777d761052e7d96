package kafka

// The cost of one lag probe on a real broker:
//
//	KAFKA_BROKERS=127.0.0.1:9092 go test -run '^$' -bench LagProbe -benchtime 50x ./kafka
//
// For a topic of 4 and of 1,000 partitions, each with a committed offset,
// it reports the time of one Source.Lag and the Kafka requests it sent, by
// kind, counted on the wire by a dialer that reads the request headers.

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/sluicehq/sluice/internal/testutil"
)

// Kafka API keys of the requests a lag probe sends.
const (
	apiListOffsets = 2
	apiMetadata    = 3
	apiOffsetFetch = 9
)

// requestCounter counts the requests written on the connections it dials,
// by API key.
type requestCounter struct {
	mu    sync.Mutex
	byKey map[int16]int64
}

func (rc *requestCounter) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: c, rc: rc}, nil
}

func (rc *requestCounter) snapshot() map[int16]int64 {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	out := make(map[int16]int64, len(rc.byKey))
	for k, v := range rc.byKey {
		out[k] = v
	}
	return out
}

// countingConn parses the request frames written to it: a 4-byte size,
// then the header, whose first 2 bytes are the API key.
type countingConn struct {
	net.Conn
	rc   *requestCounter
	head []byte // the start of the frame being read
	skip int    // bytes of the current frame still to pass over
}

func (c *countingConn) Write(p []byte) (int, error) {
	for rest := p; len(rest) > 0; {
		if c.skip > 0 {
			n := min(c.skip, len(rest))
			c.skip -= n
			rest = rest[n:]
			continue
		}
		n := min(6-len(c.head), len(rest))
		c.head = append(c.head, rest[:n]...)
		rest = rest[n:]
		if len(c.head) == 6 {
			size := int(binary.BigEndian.Uint32(c.head[:4]))
			key := int16(binary.BigEndian.Uint16(c.head[4:6]))
			c.rc.mu.Lock()
			if c.rc.byKey == nil {
				c.rc.byKey = map[int16]int64{}
			}
			c.rc.byKey[key]++
			c.rc.mu.Unlock()
			c.skip = size - 2
			c.head = c.head[:0]
		}
	}
	return c.Conn.Write(p)
}

// newLagProbe builds a Source with only the parts Lag uses (no consumer,
// so that every request counted is the probe's).
func newLagProbe(tb testing.TB, bs []string, group string, topics []string, opts ...SourceOption) *Source {
	tb.Helper()
	c := sourceConfig(append([]SourceOption{WithLogger(testutil.Quiet())}, opts...))
	if err := c.errs.Err(); err != nil {
		tb.Fatal(err)
	}
	sc, err := c.saramaConfig(func(*sarama.Config) {})
	if err != nil {
		tb.Fatal(err)
	}
	prober, err := newClient(context.Background(), bs, sc, c.connectTimeout)
	if err != nil {
		tb.Fatal(err)
	}
	admin, err := sarama.NewClusterAdminFromClient(prober)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = admin.Close() })
	return &Source{cfg: c, log: c.logger, group: group, topics: topics, prober: prober, admin: admin}
}

// fill writes n small records to every partition of topic.
func fill(tb testing.TB, bs []string, topic string, partitions int32, n int) {
	tb.Helper()
	cfg := sarama.NewConfig()
	cfg.Version = sarama.V3_6_0_0
	cfg.Producer.Return.Successes = true
	// A new partition's leader may refuse writes for a few seconds after
	// the metadata names it.
	cfg.Producer.Retry.Max = 60
	cfg.Producer.Retry.Backoff = 500 * time.Millisecond
	cfg.Producer.Partitioner = sarama.NewManualPartitioner
	p, err := sarama.NewSyncProducer(bs, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	defer p.Close()
	var msgs []*sarama.ProducerMessage
	for part := range partitions {
		for range n {
			msgs = append(msgs, &sarama.ProducerMessage{Topic: topic, Partition: part, Value: sarama.StringEncoder("x")})
		}
	}
	if err := p.SendMessages(msgs); err != nil {
		var pe sarama.ProducerErrors
		if errors.As(err, &pe) && len(pe) > 0 {
			err = fmt.Errorf("%w; the first: partition %d: %w", err, pe[0].Msg.Partition, pe[0].Err)
		}
		tb.Fatalf("fill %s: %v", topic, err)
	}
}

// commitAll commits offset `at` for every partition of topic for group.
func commitAll(tb testing.TB, bs []string, group, topic string, partitions int32, at int64) {
	tb.Helper()
	client, err := sarama.NewClient(bs, testConfig())
	if err != nil {
		tb.Fatal(err)
	}
	defer client.Close()
	om, err := sarama.NewOffsetManagerFromClient(group, client)
	if err != nil {
		tb.Fatal(err)
	}
	for p := range partitions {
		pom, err := om.ManagePartition(topic, p)
		if err != nil {
			tb.Fatal(err)
		}
		pom.MarkOffset(at, "")
	}
	om.Commit()
	// Closing the offset manager commits and releases every partition
	// manager; closing those one by one first waits on the manager's loop.
	if err := om.Close(); err != nil {
		tb.Fatal(err)
	}
}

// BenchmarkLagProbe times Source.Lag and counts its requests for a topic
// of 4 and one of 1,000 partitions: 2 records in each partition, offset 1
// committed, so the lag is 1 a partition.
func BenchmarkLagProbe(b *testing.B) {
	bs := brokers(b)
	for _, parts := range []int32{4, 1000} {
		b.Run(strconv.Itoa(int(parts))+"-partitions", func(b *testing.B) {
			topic := createTopic(b, bs, "bench-lag", parts)
			fill(b, bs, topic, parts, 2)
			group := topic + "-g"
			commitAll(b, bs, group, topic, parts, 1)
			var rc requestCounter
			src := newLagProbe(b, bs, group, []string{topic}, WithDialer(rc.dial), WithConnectTimeout(10*time.Second))
			check := func() {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				lag, err := src.Lag(ctx)
				if err != nil || lag.Total != int64(parts) || len(lag.ByPartition) != int(parts) {
					b.Fatalf("lag = total %d over %d partitions, err %v; want %d over %d", lag.Total, len(lag.ByPartition), err, parts, parts)
				}
			}
			check() // warm up: connections, coordinator, metadata
			before := rc.snapshot()
			b.ResetTimer()
			for b.Loop() {
				check()
			}
			b.StopTimer()
			after := rc.snapshot()
			var total int64
			for k, v := range after {
				total += v - before[k]
			}
			per := func(n int64) float64 { return float64(n) / float64(b.N) }
			b.ReportMetric(per(total), "requests/op")
			b.ReportMetric(per(after[apiListOffsets]-before[apiListOffsets]), "listoffsets/op")
			b.ReportMetric(per(after[apiOffsetFetch]-before[apiOffsetFetch]), "offsetfetch/op")
			b.ReportMetric(per(after[apiMetadata]-before[apiMetadata]), "metadata/op")
		})
	}
}
