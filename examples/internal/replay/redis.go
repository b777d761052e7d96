package replay

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/sluicehq/sluice"
)

// RedisConsumer is the consumer name a replay reads its group with.
const RedisConsumer = "replay"

// Redis replays the dead letters of stream c.DeadLetter. The replay group
// is created at the stream's start when missing. Entries this consumer was
// given and did not acknowledge (an interrupted replay) come first, then new
// ones, up to the last entry the stream had when the replay began.
func Redis(ctx context.Context, client redis.UniversalClient, c Config) (Summary, error) {
	sum := newSummary(c)
	r := &redisReplay{client: client, c: c, group: c.group(), sum: &sum}
	last, err := client.XRevRangeN(ctx, c.DeadLetter, "+", "-", 1).Result()
	if err != nil {
		return sum, fmt.Errorf("replay: XREVRANGE %s: %w", c.DeadLetter, err)
	}
	if len(last) == 0 {
		n, err := client.Exists(ctx, c.DeadLetter).Result()
		if err == nil && n == 0 {
			return sum, fmt.Errorf("replay: dead-letter stream %q does not exist: check -dead-letter", c.DeadLetter)
		}
		return sum, nil // an empty stream
	}
	r.end = last[0].ID
	if c.DryRun {
		return sum, r.dryRun(ctx)
	}
	err = client.XGroupCreate(ctx, c.DeadLetter, r.group, "0").Err()
	if err != nil && !strings.HasPrefix(err.Error(), "BUSYGROUP") {
		return sum, fmt.Errorf("replay: XGROUP CREATE %s %s: %w", c.DeadLetter, r.group, err)
	}
	// This consumer's pending entries first: written perhaps, not
	// acknowledged.
	start := "0"
	for {
		entries, err := r.read(ctx, start)
		if err != nil || len(entries) == 0 {
			if err != nil {
				return sum, err
			}
			break
		}
		start = entries[len(entries)-1].ID
		stop, err := r.batch(ctx, entries)
		if err != nil || stop {
			return sum, err
		}
	}
	for {
		entries, err := r.read(ctx, ">")
		if err != nil || len(entries) == 0 {
			return sum, err
		}
		stop, err := r.batch(ctx, entries)
		if err != nil || stop {
			return sum, err
		}
	}
}

type redisReplay struct {
	client redis.UniversalClient
	c      Config
	group  string
	end    string // the last entry when the replay began
	sum    *Summary
}

func (r *redisReplay) read(ctx context.Context, id string) ([]redis.XMessage, error) {
	res, err := r.client.XReadGroup(ctx, &redis.XReadGroupArgs{
		Group: r.group, Consumer: RedisConsumer, Streams: []string{r.c.DeadLetter, id},
		Count: int64(r.c.batch()), Block: -1,
	}).Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("replay: XREADGROUP %s %s: %w", r.c.DeadLetter, r.group, err)
	}
	if len(res) == 0 {
		return nil, nil
	}
	return res[0].Messages, nil
}

// batch writes the matching entries of a read, then acknowledges every entry
// up to the replay's end. It reports true when the replay is over: an entry
// past the end, or the limit reached.
func (r *redisReplay) batch(ctx context.Context, entries []redis.XMessage) (bool, error) {
	var (
		ack   []string
		dests []string
		pipe  = r.client.Pipeline()
		cmds  []*redis.StringCmd
		stop  bool
	)
	for _, e := range entries {
		if afterID(e.ID, r.end) {
			stop = true // left pending: the next replay takes it
			break
		}
		if r.c.Limit > 0 && r.sum.Replayed+len(cmds) >= r.c.Limit {
			r.sum.Remaining = true
			stop = true
			break
		}
		ack = append(ack, e.ID)
		to, fields := r.letter(e)
		if fields == nil {
			continue
		}
		dests = append(dests, to)
		cmds = append(cmds, pipe.XAdd(ctx, &redis.XAddArgs{Stream: to, Values: fields}))
	}
	if len(cmds) > 0 {
		_, err := pipe.Exec(ctx)
		for i, c := range cmds {
			if c.Err() != nil {
				return true, fmt.Errorf("replay: XADD to %q: %w (nothing of this batch is acknowledged; run the replay again)", dests[i], c.Err())
			}
		}
		if err != nil {
			return true, fmt.Errorf("replay: XADD: %w (nothing of this batch is acknowledged; run the replay again)", err)
		}
	}
	if len(ack) > 0 {
		if err := r.client.XAck(ctx, r.c.DeadLetter, r.group, ack...).Err(); err != nil {
			return true, fmt.Errorf("replay: XACK %s %s: %w (the events were written; a new run writes them again)", r.c.DeadLetter, r.group, err)
		}
	}
	r.sum.Replayed += len(cmds)
	for _, d := range dests {
		r.sum.ByDestination[d]++
	}
	if r.c.Progress != nil {
		r.c.Progress(*r.sum)
	}
	return stop, nil
}

// letter counts entry e and returns its destination and the fields of the
// event to write, or nil fields when the filter rejects it or it cannot be
// replayed.
func (r *redisReplay) letter(e redis.XMessage) (string, []any) {
	r.sum.Read++
	get := func(name string) (string, bool) {
		v, ok := e.Values[name]
		if !ok {
			return "", false
		}
		s, ok := v.(string)
		return s, ok
	}
	l, ok := letterOf(get)
	if !ok {
		if r.c.Filter == (Filter{}) {
			r.sum.Matched++
			r.sum.Skipped++
			r.sum.countReason("(not a dead letter: no failure_reason field)")
		}
		return "", nil
	}
	if !r.c.Filter.Match(l) {
		return "", nil
	}
	r.sum.Matched++
	r.sum.countReason(l.Reason)
	to := r.c.destination(l)
	if to == "" {
		r.sum.Skipped++
		r.sum.countReason("(no origin field: give -to)")
		return "", nil
	}
	if r.c.DryRun {
		r.sum.ByDestination[to]++
		return to, nil
	}
	return to, replayFields(e.Values, l.Origin)
}

// replayFields turns the fields of a dead-letter entry into those of the
// event to replay: the failure and origin fields (the idempotency key
// among them) are dropped, replay_count
// is one more than the event had, and the replay_source_* fields name the
// first input unless the event already names one. Fields come out sorted
// by name.
func replayFields(values map[string]any, origin sluice.Origin) []any {
	var hs []Header
	for k, v := range values {
		if isFailureHeader(k) {
			continue
		}
		switch k {
		case sluice.HeaderSourceStream, sluice.HeaderSourceID, sluice.HeaderSourceTopic,
			sluice.HeaderSourcePartition, sluice.HeaderSourceOffset, sluice.HeaderIdempotencyKey:
			continue
		}
		s, _ := v.(string)
		hs = append(hs, Header{Key: k, Value: []byte(s)})
	}
	slices.SortFunc(hs, func(a, b Header) int { return strings.Compare(a.Key, b.Key) })
	// No failure_reason is left to cut at, so replayHeaders keeps every
	// field but the failure ones.
	hs = replayHeaders(hs, origin)
	out := make([]any, 0, 2*len(hs))
	for _, h := range hs {
		out = append(out, h.Key, string(h.Value))
	}
	return out
}

// dryRun counts what a replay would take: the group's pending entries, then
// the entries after its last delivered one, up to the end; without a group,
// the whole stream.
func (r *redisReplay) dryRun(ctx context.Context) error {
	from := "-"
	groups, err := r.client.XInfoGroups(ctx, r.c.DeadLetter).Result()
	if err != nil {
		return fmt.Errorf("replay: XINFO GROUPS %s: %w", r.c.DeadLetter, err)
	}
	for _, g := range groups {
		if g.Name != r.group {
			continue
		}
		from = "(" + g.LastDeliveredID
		pending, err := r.client.XPendingExt(ctx, &redis.XPendingExtArgs{
			Stream: r.c.DeadLetter, Group: r.group, Start: "-", End: r.end, Count: 1 << 20,
		}).Result()
		if err != nil {
			return fmt.Errorf("replay: XPENDING %s %s: %w", r.c.DeadLetter, r.group, err)
		}
		for _, p := range pending {
			es, err := r.client.XRange(ctx, r.c.DeadLetter, p.ID, p.ID).Result()
			if err != nil {
				return fmt.Errorf("replay: XRANGE %s: %w", r.c.DeadLetter, err)
			}
			for _, e := range es {
				r.letter(e)
			}
		}
	}
	for {
		page, err := r.client.XRangeN(ctx, r.c.DeadLetter, from, r.end, int64(r.c.batch())).Result()
		if err != nil {
			return fmt.Errorf("replay: XRANGE %s: %w", r.c.DeadLetter, err)
		}
		for _, e := range page {
			r.letter(e)
		}
		if len(page) < r.c.batch() {
			return nil
		}
		from = "(" + page[len(page)-1].ID
	}
}

// afterID reports whether stream entry ID a comes after b.
func afterID(a, b string) bool {
	am, as := splitID(a)
	bm, bs := splitID(b)
	return am > bm || am == bm && as > bs
}

func splitID(id string) (uint64, uint64) {
	ms, seq, _ := strings.Cut(id, "-")
	m, _ := strconv.ParseUint(ms, 10, 64)
	s, _ := strconv.ParseUint(seq, 10, 64)
	return m, s
}
