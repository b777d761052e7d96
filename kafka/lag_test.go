package kafka

import (
	"context"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// fakeCommits makes c answer every OffsetFetch with the given committed
// offsets (kfake keeps no offsets for a group without members); a
// partition not in offs has none.
func fakeCommits(c *kfake.Cluster, offs map[int32]int64) {
	c.ControlKey(kmsg.OffsetFetch.Int16(), func(r kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		req := r.(*kmsg.OffsetFetchRequest)
		resp := req.ResponseKind().(*kmsg.OffsetFetchResponse)
		resp.SetVersion(req.Version)
		offset := func(p int32) int64 {
			if o, ok := offs[p]; ok {
				return o
			}
			return -1
		}
		for _, rt := range req.Topics {
			st := kmsg.NewOffsetFetchResponseTopic()
			st.Topic = rt.Topic
			for _, p := range rt.Partitions {
				sp := kmsg.NewOffsetFetchResponseTopicPartition()
				sp.Partition, sp.Offset, sp.LeaderEpoch = p, offset(p), -1
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		for _, rg := range req.Groups {
			g := kmsg.NewOffsetFetchResponseGroup()
			g.Group = rg.Group
			for _, rt := range rg.Topics {
				st := kmsg.NewOffsetFetchResponseGroupTopic()
				st.Topic = rt.Topic
				for _, p := range rt.Partitions {
					sp := kmsg.NewOffsetFetchResponseGroupTopicPartition()
					sp.Partition, sp.Offset, sp.LeaderEpoch = p, offset(p), -1
					st.Partitions = append(st.Partitions, sp)
				}
				g.Topics = append(g.Topics, st)
			}
			resp.Groups = append(resp.Groups, g)
		}
		return resp, nil, true
	})
}

// listOffsetsLog records the ListOffsets requests a kfake cluster receives.
type listOffsetsLog struct {
	mu   sync.Mutex
	reqs []listOffsetsReq
}

type listOffsetsReq struct {
	node       int32
	timestamp  int64
	partitions []int32
}

func (l *listOffsetsLog) watch(c *kfake.Cluster) {
	c.ControlKey(kmsg.ListOffsets.Int16(), func(r kmsg.Request) (kmsg.Response, error, bool) {
		req := r.(*kmsg.ListOffsetsRequest)
		got := listOffsetsReq{node: c.CurrentNode()}
		for _, t := range req.Topics {
			for _, p := range t.Partitions {
				got.timestamp = p.Timestamp
				got.partitions = append(got.partitions, p.Partition)
			}
		}
		slices.Sort(got.partitions)
		l.mu.Lock()
		l.reqs = append(l.reqs, got)
		l.mu.Unlock()
		return nil, nil, false
	})
}

func (l *listOffsetsLog) take() []listOffsetsReq {
	l.mu.Lock()
	defer l.mu.Unlock()
	r := l.reqs
	l.reqs = nil
	return r
}

// TestFakeLagPerPartition checks the lag of each partition of a topic
// spread over three brokers: committed offset against high watermark, and
// for the partitions with no commit, the oldest retained offset against
// the high watermark; and that the probe sends one ListOffsets per leader
// for the high watermarks and one per leader of the uncommitted partitions
// for their oldest offsets, each naming only the partitions it needs.
func TestFakeLagPerPartition(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(3), kfake.SeedTopics(6, "in"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	bs := c.ListenAddrs()
	produce(t, bs, "in", 6, 30) // 5 records in each partition
	admin, err := sarama.NewClusterAdmin(bs, testConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	if err := admin.DeleteRecords("in", map[int32]int64{5: 2}); err != nil {
		t.Fatalf("delete records: %v", err)
	}
	fakeCommits(c, map[int32]int64{0: 5, 1: 2, 2: 0, 4: 4})
	want := map[string]int64{
		"in/0": 0, "in/1": 3, "in/2": 5, "in/4": 1, // high watermark 5 minus the commit
		"in/3": 5, // no commit: from the oldest offset, 0
		"in/5": 3, // no commit: from the oldest offset, 2
	}

	var log listOffsetsLog
	log.watch(c)
	src := newLagProbe(t, bs, "g", []string{"in"})
	check := func() {
		t.Helper()
		lag, err := src.Lag(context.Background())
		if err != nil {
			t.Fatalf("Lag: %v", err)
		}
		if lag.Total != 17 || !maps.Equal(lag.ByPartition, want) {
			t.Fatalf("lag = %d %v, want 17 %v", lag.Total, lag.ByPartition, want)
		}
	}
	check()
	leaders := func(ps ...int32) int {
		var nodes []int32
		for _, p := range ps {
			if n := c.LeaderFor("in", p); !slices.Contains(nodes, n) {
				nodes = append(nodes, n)
			}
		}
		return len(nodes)
	}
	var newest, oldest []int32
	var nNewest, nOldest int
	for _, r := range log.take() {
		switch r.timestamp {
		case sarama.OffsetNewest:
			nNewest++
			newest = append(newest, r.partitions...)
		case sarama.OffsetOldest:
			nOldest++
			oldest = append(oldest, r.partitions...)
		}
	}
	slices.Sort(newest)
	slices.Sort(oldest)
	if nNewest != leaders(0, 1, 2, 3, 4, 5) || !slices.Equal(newest, []int32{0, 1, 2, 3, 4, 5}) {
		t.Errorf("%d ListOffsets(latest) for partitions %v; want one per leader (%d) covering all 6", nNewest, newest, leaders(0, 1, 2, 3, 4, 5))
	}
	if nOldest != leaders(3, 5) || !slices.Equal(oldest, []int32{3, 5}) {
		t.Errorf("%d ListOffsets(earliest) for partitions %v; want one per leader of 3 and 5 (%d) for just those", nOldest, oldest, leaders(3, 5))
	}

	// A leader change: the cached metadata now names the old leader, which
	// refuses; the probe refreshes the metadata and asks the new one.
	from := c.LeaderFor("in", 0)
	to := (from + 1) % 3
	if err := c.MoveTopicPartition("in", 0, to); err != nil {
		t.Fatal(err)
	}
	check()
	moved := false
	for _, r := range log.take() {
		if r.node == to && slices.Contains(r.partitions, 0) {
			moved = true
		}
	}
	if !moved {
		t.Errorf("no ListOffsets for in/0 reached its new leader %d", to)
	}
}

// TestFakeLagPartitionError checks that a partition whose leader answers
// with an error is -1, the others are still reported, and the total is
// -1 without an error; and that Lag errs, naming the partitions, when
// every partition fails.
func TestFakeLagPartitionError(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(2), kfake.SeedTopics(4, "in"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	bs := c.ListenAddrs()
	produce(t, bs, "in", 4, 16) // high watermark 4 everywhere
	fakeCommits(c, map[int32]int64{0: 1, 1: 1, 2: 1, 3: 1})

	var mu sync.Mutex
	failing := map[int32]bool{2: true}
	c.ControlKey(kmsg.ListOffsets.Int16(), func(r kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		req := r.(*kmsg.ListOffsetsRequest)
		resp := req.ResponseKind().(*kmsg.ListOffsetsResponse)
		resp.SetVersion(req.Version)
		mu.Lock()
		defer mu.Unlock()
		for _, rt := range req.Topics {
			st := kmsg.NewListOffsetsResponseTopic()
			st.Topic = rt.Topic
			for _, rp := range rt.Partitions {
				sp := kmsg.NewListOffsetsResponseTopicPartition()
				sp.Partition = rp.Partition
				sp.Timestamp = -1
				sp.Offset = 4
				if rp.Timestamp == sarama.OffsetOldest {
					sp.Offset = 0
				}
				if failing[rp.Partition] {
					sp.ErrorCode = int16(sarama.ErrKafkaStorageError)
					sp.Offset = -1
				}
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp, nil, true
	})

	src := newLagProbe(t, bs, "g", []string{"in"})
	lag, err := src.Lag(context.Background())
	want := map[string]int64{"in/0": 3, "in/1": 3, "in/2": -1, "in/3": 3}
	if err != nil || lag.Total != -1 || !maps.Equal(lag.ByPartition, want) {
		t.Fatalf("lag = %d %v, err %v; want -1 %v and no error", lag.Total, lag.ByPartition, err, want)
	}

	mu.Lock()
	failing = map[int32]bool{0: true, 1: true, 2: true, 3: true}
	mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	lag, err = src.Lag(ctx)
	if err == nil || lag.Total != -1 || !strings.Contains(err.Error(), "all 4 partitions") ||
		!strings.Contains(err.Error(), "in/0: list offsets from broker") {
		t.Fatalf("every partition failing: lag %+v, err %v; want an error naming them", lag, err)
	}
	t.Logf("every partition failing: %v", err)
}
