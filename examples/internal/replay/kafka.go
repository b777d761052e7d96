package replay

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/IBM/sarama"
)

// kafkaIdle is how long a partition may stay silent before its reading stops
// short of the end (which control records can leave unreachable); the
// replay then commits only what it read.
const kafkaIdle = 5 * time.Second

// Kafka replays the dead letters of topic c.DeadLetter on the cluster at
// brokers, connecting with cfg (a connection's settings; [KafkaConfig]
// completes them). Partitions are read one after the other, each from the
// replay group's committed offset (or the oldest retained one) up to the end
// it had when the replay began.
func Kafka(ctx context.Context, brokers []string, cfg *sarama.Config, c Config) (Summary, error) {
	sum := newSummary(c)
	group := c.group()
	cfg = KafkaConfig(cfg)
	// Two clients: the consumer's long-polling fetches would otherwise
	// hold up the writes and commits behind them on the one connection
	// (the idempotent producer allows one request in flight).
	client, err := sarama.NewClient(brokers, cfg)
	if err != nil {
		return sum, fmt.Errorf("replay: connect to %v: %w", brokers, err)
	}
	defer client.Close()
	parts, err := client.Partitions(c.DeadLetter)
	if errors.Is(err, sarama.ErrUnknownTopicOrPartition) {
		return sum, fmt.Errorf("replay: dead-letter topic %q does not exist: check -dead-letter", c.DeadLetter)
	}
	if err != nil {
		return sum, fmt.Errorf("replay: partitions of %q: %w", c.DeadLetter, err)
	}
	consumer, err := sarama.NewConsumer(brokers, cfg)
	if err != nil {
		return sum, fmt.Errorf("replay: consumer: %w", err)
	}
	defer consumer.Close()
	var producer sarama.SyncProducer
	if !c.DryRun {
		producer, err = sarama.NewSyncProducerFromClient(client)
		if err != nil {
			return sum, fmt.Errorf("replay: producer: %w", err)
		}
		defer producer.Close()
	}
	committed, err := fetchCommitted(client, group, c.DeadLetter, parts)
	if err != nil {
		return sum, err
	}
	k := &kafkaReplay{client: client, consumer: consumer, producer: producer, c: c, group: group, sum: &sum}
	for _, p := range parts {
		oldest, err := client.GetOffset(c.DeadLetter, p, sarama.OffsetOldest)
		if err != nil {
			return sum, fmt.Errorf("replay: oldest offset of %s/%d: %w", c.DeadLetter, p, err)
		}
		end, err := client.GetOffset(c.DeadLetter, p, sarama.OffsetNewest)
		if err != nil {
			return sum, fmt.Errorf("replay: newest offset of %s/%d: %w", c.DeadLetter, p, err)
		}
		from := max(committed[p], oldest) // -1 (none) gives oldest
		if from >= end {
			continue
		}
		done, err := k.partition(ctx, p, from, end)
		if err != nil {
			return sum, err
		}
		if done {
			sum.Remaining = true
			break
		}
	}
	return sum, nil
}

// KafkaConfig returns a copy of base (a connection's sarama configuration)
// completed for a replay: an idempotent producer that waits for all in-sync replicas, as
// sluice's sink does, and no automatic commits.
func KafkaConfig(base *sarama.Config) *sarama.Config {
	cfg := *base
	cfg.Producer.Return.Successes = true
	cfg.Producer.Return.Errors = true
	cfg.Producer.RequiredAcks = sarama.WaitForAll
	cfg.Producer.Idempotent = true
	cfg.Producer.Retry.Max = 10
	cfg.Producer.Compression = sarama.CompressionLZ4
	cfg.Producer.Partitioner = sarama.NewHashPartitioner
	cfg.Net.MaxOpenRequests = 1
	cfg.Consumer.Return.Errors = true
	cfg.Consumer.Offsets.AutoCommit.Enable = false
	cfg.Metadata.AllowAutoTopicCreation = false
	return &cfg
}

type kafkaReplay struct {
	client   sarama.Client
	consumer sarama.Consumer
	producer sarama.SyncProducer
	c        Config
	group    string
	sum      *Summary
}

// partition replays offsets [from, end) of partition p. It reports true
// when the replay stopped at its limit.
func (k *kafkaReplay) partition(ctx context.Context, p int32, from, end int64) (bool, error) {
	topic := k.c.DeadLetter
	pc, err := k.consumer.ConsumePartition(topic, p, from)
	if err != nil {
		return false, fmt.Errorf("replay: consume %s/%d: %w", topic, p, err)
	}
	defer pc.AsyncClose()
	var batch []*sarama.ProducerMessage
	next := from // the offset to commit once batch is written
	flush := func() error {
		if !k.c.DryRun && next > from {
			if len(batch) > 0 {
				if err := k.producer.SendMessages(batch); err != nil {
					var perrs sarama.ProducerErrors
					if errors.As(err, &perrs) && len(perrs) > 0 {
						err = fmt.Errorf("%d of %d to %q failed, first: %w", len(perrs), len(batch), perrs[0].Msg.Topic, perrs[0].Err)
					}
					return fmt.Errorf("replay: write: %w (nothing of this batch is committed; run the replay again)", err)
				}
			}
			if err := commit(k.client, k.group, topic, p, next); err != nil {
				return err
			}
			k.sum.Replayed += len(batch)
			from = next
		}
		batch = batch[:0]
		if k.c.Progress != nil {
			k.c.Progress(*k.sum)
		}
		return nil
	}
	idle := time.NewTimer(kafkaIdle)
	defer idle.Stop()
	for next < end {
		select {
		case m, ok := <-pc.Messages():
			if !ok {
				return false, fmt.Errorf("replay: %s/%d closed early", topic, p)
			}
			next = m.Offset + 1
			if pm := k.letter(m); pm != nil {
				batch = append(batch, pm)
			}
			if k.c.Limit > 0 && k.sum.Replayed+len(batch) >= k.c.Limit && !k.c.DryRun {
				return true, flush()
			}
			if len(batch) >= k.c.batch() {
				if err := flush(); err != nil {
					return false, err
				}
			}
			idle.Reset(kafkaIdle)
		case e := <-pc.Errors():
			return false, fmt.Errorf("replay: read %s/%d: %w", topic, p, e)
		case <-idle.C:
			// Nothing more came: the rest up to the end is most likely
			// control records (transaction markers), which are never
			// delivered. Commit only what was read, so that a broker
			// that was merely slow loses nothing: the next run reads on
			// from there.
			return false, flush()
		case <-ctx.Done():
			// Keep what was written: commit it, and stop.
			if err := flush(); err != nil {
				return false, err
			}
			return false, fmt.Errorf("replay: %s/%d: %w (run the replay again to resume)", topic, p, ctx.Err())
		}
	}
	return false, flush()
}

// letter counts the dead letter m and returns the event to write, or nil
// when the filter rejects it or it cannot be replayed.
func (k *kafkaReplay) letter(m *sarama.ConsumerMessage) *sarama.ProducerMessage {
	k.sum.Read++
	get := func(name string) (string, bool) {
		for i := len(m.Headers) - 1; i >= 0; i-- {
			if h := m.Headers[i]; h != nil && string(h.Key) == name {
				return string(h.Value), true
			}
		}
		return "", false
	}
	l, ok := letterOf(get)
	if !ok {
		if k.c.Filter == (Filter{}) {
			k.sum.Matched++
			k.sum.Skipped++
			k.sum.countReason("(not a dead letter: no failure_reason header)")
		}
		return nil
	}
	if !k.c.Filter.Match(l) {
		return nil
	}
	k.sum.Matched++
	k.sum.countReason(l.Reason)
	to := k.c.destination(l)
	if to == "" {
		k.sum.Skipped++
		k.sum.countReason("(no origin header: give -to)")
		return nil
	}
	k.sum.ByDestination[to]++
	hs := make([]Header, 0, len(m.Headers))
	for _, h := range m.Headers {
		if h != nil {
			hs = append(hs, Header{Key: string(h.Key), Value: h.Value})
		}
	}
	hs = replayHeaders(hs, l.Origin)
	pm := &sarama.ProducerMessage{Topic: to, Value: sarama.ByteEncoder(m.Value)}
	if m.Key != nil {
		pm.Key = sarama.ByteEncoder(m.Key)
	}
	pm.Headers = make([]sarama.RecordHeader, len(hs))
	for i, h := range hs {
		pm.Headers[i] = sarama.RecordHeader{Key: []byte(h.Key), Value: h.Value}
	}
	return pm
}

// fetchCommitted returns the replay group's committed offset of each
// partition, -1 where there is none.
func fetchCommitted(client sarama.Client, group, topic string, parts []int32) (map[int32]int64, error) {
	coord, err := client.Coordinator(group)
	if err != nil {
		return nil, fmt.Errorf("replay: coordinator of group %q: %w", group, err)
	}
	req := sarama.NewOffsetFetchRequest(client.Config().Version, group, map[string][]int32{topic: parts})
	resp, err := coord.FetchOffset(req)
	if err != nil {
		return nil, fmt.Errorf("replay: committed offsets of group %q: %w", group, err)
	}
	if resp.Err != sarama.ErrNoError {
		return nil, fmt.Errorf("replay: committed offsets of group %q: %w", group, resp.Err)
	}
	out := make(map[int32]int64, len(parts))
	for _, p := range parts {
		out[p] = -1
		if b := resp.GetBlock(topic, p); b != nil {
			if b.Err != sarama.ErrNoError {
				return nil, fmt.Errorf("replay: committed offset of group %q on %s/%d: %w", group, topic, p, b.Err)
			}
			out[p] = b.Offset
		}
	}
	return out, nil
}

// commit records offset as the replay group's position on topic/p. A group
// with live members (another replay with the same group running) refuses
// it. A coordinator that moved is looked up again, once.
func commit(client sarama.Client, group, topic string, p int32, offset int64) error {
	var err error
	for attempt := 0; attempt < 2; attempt++ {
		if attempt > 0 {
			if rerr := client.RefreshCoordinator(group); rerr != nil {
				return fmt.Errorf("replay: coordinator of group %q: %w (after %w)", group, rerr, err)
			}
		}
		var coord *sarama.Broker
		coord, err = client.Coordinator(group)
		if err != nil {
			return fmt.Errorf("replay: coordinator of group %q: %w", group, err)
		}
		req := sarama.NewOffsetCommitRequest(client.Config(), group)
		req.AddBlock(topic, p, offset, 0, "sluice-replay")
		var resp *sarama.OffsetCommitResponse
		resp, err = coord.CommitOffset(req)
		if err != nil {
			_ = coord.Close() // reconnect on the next try
			continue
		}
		kerr := resp.Errors[topic][p]
		switch kerr {
		case sarama.ErrNoError:
			return nil
		case sarama.ErrNotCoordinatorForConsumer, sarama.ErrConsumerCoordinatorNotAvailable:
			err = kerr
			continue
		}
		return fmt.Errorf("replay: commit %s/%d@%d for group %q: %w (is another replay with this group running?)", topic, p, offset, group, kerr)
	}
	return fmt.Errorf("replay: commit %s/%d@%d for group %q: %w (the events were written; a new run writes them again)", topic, p, offset, group, err)
}
