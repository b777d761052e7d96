package kafka

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/internal/testutil"
)

// withHookClaimPause sets the hook that runs between a new claim's check
// that the source is paused and its Pause.
func withHookClaimPause(fn func(*Source)) SourceOption {
	return sourceOnly(func(c *config) { c.hookClaimPause = fn })
}

// waitOwned waits until src owns n partitions.
func waitOwned(t *testing.T, src *Source, n int, within time.Duration, who string) {
	t.Helper()
	testutil.Eventually(t, within, fmt.Sprintf("%s to own %d partitions", who, n), func() bool { return len(src.owned()) == n })
}

// claimsWaiting reports whether src owns n claims and every one is blocked
// on w.
func claimsWaiting(src *Source, n int, w int32) bool {
	src.mu.Lock()
	defer src.mu.Unlock()
	if len(src.claims) != n {
		return false
	}
	for _, c := range src.claims {
		if c.waiting.Load() != w {
			return false
		}
	}
	return true
}

// TestFakeResumeBetweenNewClaimCheckAndPause forces a Resume to land
// between a new claim's "is the source paused?" check and its Pause of the
// partition, and checks that the partition is not left paused: its events
// still arrive after the Resume.
func TestFakeResumeBetweenNewClaimCheckAndPause(t *testing.T) {
	bs := newFake(t, 2, "in")
	var hooked atomic.Int32
	resumed := make(chan struct{})
	hook := func(s *Source) {
		if hooked.Add(1) != 1 {
			return
		}
		// The hook runs under the pause latch's lock: the Resume waits for
		// it, and is the one that lands in this window.
		go func() {
			s.Resume()
			close(resumed)
		}()
	}
	opts := []SourceOption{WithLogger(testutil.Quiet()), WithSessionTimeout(6*time.Second, 200*time.Millisecond)}
	src1, err := NewSource(context.Background(), bs, "g", []string{"in"}, append(opts, withHookClaimPause(hook))...)
	if err != nil {
		t.Fatal(err)
	}
	defer src1.Close()
	waitOwned(t, src1, 2, 30*time.Second, "the first member")

	// Paused, src1 meets a rebalance: each new claim starts paused.
	src1.Pause()
	src2, err := NewSource(context.Background(), bs, "g", []string{"in"}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer src2.Close()
	select {
	case <-resumed:
	case <-time.After(30 * time.Second):
		t.Fatal("no new claim started while the source was paused")
	}
	waitOwned(t, src1, 1, 30*time.Second, "the first member")
	waitOwned(t, src2, 1, 30*time.Second, "the second member")

	produce(t, bs, "in", 2, 10)
	got := fetchN(t, src1, 5, 10*time.Second) // fails if its partition stayed paused
	p := got[0].Origin.Partition
	for _, m := range got {
		if m.Origin.Partition != p {
			t.Fatalf("first member got partitions %d and %d, want one", p, m.Origin.Partition)
		}
	}
}

// TestKafkaRevokeWhileBlocked has a member blocked on a full buffer, or on
// a pause, when a second member joins, and checks that the partition moves
// well within the rebalance timeout: the blocked claim notices that it is
// revoked, with an eager strategy (the session ends) and with a cooperative
// one (the session carries on and only the claim is closed).
func TestKafkaRevokeWhileBlocked(t *testing.T) {
	bs := brokers(t)
	// Short, so that a revoke left waiting fails the test rather than
	// slowing it: the second member must get its partition well before.
	const rebalanceTimeout = 20 * time.Second
	const within = 12 * time.Second
	strategies := []struct {
		name string
		s    func() sarama.BalanceStrategy
	}{
		{"range", sarama.NewBalanceStrategyRange},
		{"sticky", sarama.NewBalanceStrategySticky},
		{"cooperative-sticky", sarama.NewBalanceStrategyCooperativeSticky},
	}
	for _, st := range strategies {
		for _, blocked := range []string{"buffer", "pause"} {
			t.Run(st.name+"/"+blocked, func(t *testing.T) {
				t.Parallel()
				topic := createTopic(t, bs, "revoke-"+st.name+"-"+blocked, 2)
				group := topic + "-g"
				produce(t, bs, topic, 2, 10)
				opts := []SourceOption{
					WithLogger(testutil.Quiet()), WithBalanceStrategies(st.s()), WithBufferSize(1),
					WithRebalanceTimeout(rebalanceTimeout), WithRevokeTimeout(2 * time.Second),
					WithSessionTimeout(10*time.Second, 500*time.Millisecond),
				}
				src1, err := NewSource(context.Background(), bs, group, []string{topic}, opts...)
				if err != nil {
					t.Fatal(err)
				}
				defer src1.Close()
				// One event waits in the buffer; each claim holds the next
				// one of its partition, blocked on the full buffer.
				testutil.Eventually(t, 60*time.Second, "both claims blocked on the full buffer", func() bool {
					return claimsWaiting(src1, 2, waitBuffer)
				})
				if blocked == "pause" {
					src1.Pause()
					// Each of two fetches frees the buffer for one claim,
					// which then reads its next event and waits for Resume.
					for _, m := range fetchN(t, src1, 2, 10*time.Second) {
						if err := src1.Ack(context.Background(), []*sluice.Message{m}); err != nil {
							t.Fatal(err)
						}
					}
					testutil.Eventually(t, 10*time.Second, "both claims blocked on the pause", func() bool {
						return claimsWaiting(src1, 2, waitResume)
					})
				}

				start := time.Now()
				src2, err := NewSource(context.Background(), bs, group, []string{topic}, opts...)
				if err != nil {
					t.Fatal(err)
				}
				defer src2.Close()
				waitOwned(t, src2, 1, within, "the second member (a revoke left waiting shows here)")
				took := time.Since(start)
				waitOwned(t, src1, 1, within, "the first member")
				t.Logf("%s, blocked on %s: partition moved in %s", st.name, blocked, took.Round(time.Millisecond))
				src2Msgs := fetchN(t, src2, 1, 10*time.Second)
				if p := src2Msgs[0].Origin.Partition; !strings.HasSuffix(src2.owned()[0], fmt.Sprintf("/%d", p)) {
					t.Fatalf("second member fetched partition %d, owns %v", p, src2.owned())
				}
			})
		}
	}
}
