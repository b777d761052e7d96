package kafka

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/sluicehq/sluice"
)

func testConfig() *sarama.Config {
	cfg := sarama.NewConfig()
	cfg.Version = sarama.V3_6_0_0
	cfg.Producer.Return.Successes = true
	cfg.Producer.RequiredAcks = sarama.WaitForAll
	// Idempotent, so that a retried produce request under load never
	// writes a test input twice.
	cfg.Producer.Idempotent = true
	cfg.Net.MaxOpenRequests = 1
	// A partition's leader may refuse writes for several seconds after a
	// broker restart or a new topic even though the metadata names it: ride
	// that out (about 30 s) rather than fail the test's input. Retries of an
	// idempotent producer keep their sequence numbers, so they never
	// duplicate.
	cfg.Producer.Retry.Max = 60
	cfg.Producer.Retry.BackoffFunc = func(retries, _ int) time.Duration {
		return min(100*time.Millisecond<<min(retries, 3), 500*time.Millisecond)
	}
	return cfg
}

// produce writes n records "0".."n-1" (value {"n":i}) spread over the
// partitions in turn, and waits for them.
func produce(t testing.TB, bs []string, topic string, partitions int32, n int) {
	t.Helper()
	cfg := testConfig()
	cfg.Producer.Partitioner = sarama.NewManualPartitioner
	p, err := sarama.NewSyncProducer(bs, cfg)
	if err != nil {
		t.Fatalf("producer: %v", err)
	}
	defer p.Close()
	const chunk = 500
	for lo := 0; lo < n; lo += chunk {
		var msgs []*sarama.ProducerMessage
		for i := lo; i < min(lo+chunk, n); i++ {
			msgs = append(msgs, &sarama.ProducerMessage{
				Topic:     topic,
				Partition: int32(i) % partitions,
				Key:       sarama.StringEncoder("k" + strconv.Itoa(i)),
				Value:     sarama.StringEncoder(fmt.Sprintf(`{"n":%d}`, i)),
				Headers:   []sarama.RecordHeader{{Key: []byte("trace"), Value: []byte("t" + strconv.Itoa(i))}},
			})
		}
		if err := p.SendMessages(msgs); err != nil {
			t.Fatalf("produce: %v", err)
		}
	}
}

// readAll reads every record of topic from the start up to its current high
// watermarks.
func readAll(t testing.TB, bs []string, topic string) []*sarama.ConsumerMessage {
	t.Helper()
	client, err := sarama.NewClient(bs, testConfig())
	if err != nil {
		t.Fatalf("client: %v", err)
	}
	defer client.Close()
	ps, err := client.Partitions(topic)
	if err != nil {
		t.Fatalf("partitions: %v", err)
	}
	c, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		t.Fatalf("consumer: %v", err)
	}
	defer c.Close()
	var out []*sarama.ConsumerMessage
	for _, p := range ps {
		hw, err := client.GetOffset(topic, p, sarama.OffsetNewest)
		if err != nil {
			t.Fatalf("offset: %v", err)
		}
		if hw == 0 {
			continue
		}
		pc, err := c.ConsumePartition(topic, p, sarama.OffsetOldest)
		if err != nil {
			t.Fatalf("consume: %v", err)
		}
		timeout := time.NewTimer(30 * time.Second)
		for done := false; !done; {
			select {
			case m := <-pc.Messages():
				out = append(out, m)
				done = m.Offset >= hw-1
			case <-timeout.C:
				t.Fatalf("timed out reading %s/%d up to %d", topic, p, hw)
			}
		}
		timeout.Stop()
		pc.Close()
	}
	return out
}

// batchInfo fetches the raw record batches of a partition and returns the
// codec and producer id of each.
func batchInfo(t testing.TB, bs []string, topic string, partition int32) (codecs []sarama.CompressionCodec, pids []int64) {
	t.Helper()
	client, err := sarama.NewClient(bs, testConfig())
	if err != nil {
		t.Fatalf("client: %v", err)
	}
	defer client.Close()
	leader, err := client.Leader(topic, partition)
	if err != nil {
		t.Fatalf("leader: %v", err)
	}
	req := &sarama.FetchRequest{Version: 11, MaxWaitTime: 100, MinBytes: 1, MaxBytes: 1 << 20}
	req.AddBlock(topic, partition, 0, 1<<20, -1)
	resp, err := leader.Fetch(req)
	if err != nil {
		t.Fatalf("fetch: %v", err)
	}
	b := resp.GetBlock(topic, partition)
	if b == nil || b.Err != sarama.ErrNoError {
		t.Fatalf("fetch block: %+v", b)
	}
	for _, r := range b.RecordsSet {
		if r.RecordBatch != nil {
			codecs = append(codecs, r.RecordBatch.Codec)
			pids = append(pids, r.RecordBatch.ProducerID)
		}
	}
	return codecs, pids
}

// committed returns the group's committed offset of topic/partition, or -1.
func committed(t testing.TB, bs []string, group, topic string, partition int32) int64 {
	t.Helper()
	admin, err := sarama.NewClusterAdmin(bs, testConfig())
	if err != nil {
		t.Fatalf("admin: %v", err)
	}
	defer admin.Close()
	resp, err := admin.ListConsumerGroupOffsets(group, map[string][]int32{topic: {partition}})
	if err != nil {
		t.Fatalf("list offsets: %v", err)
	}
	if b := resp.GetBlock(topic, partition); b != nil {
		return b.Offset
	}
	return -1
}

// fetchN fetches from src until it has n messages or the deadline passes.
func fetchN(t testing.TB, src sluice.Source, n int, within time.Duration) []*sluice.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	var out []*sluice.Message
	for len(out) < n {
		msgs, err := src.Fetch(ctx, n-len(out))
		if err != nil {
			t.Fatalf("fetch after %d of %d: %v", len(out), n, err)
		}
		out = append(out, msgs...)
	}
	return out
}

func header(m *sarama.ConsumerMessage, key string) (string, bool) {
	for _, h := range m.Headers {
		if string(h.Key) == key {
			return string(h.Value), true
		}
	}
	return "", false
}
