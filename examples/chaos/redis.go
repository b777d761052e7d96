package main

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sluicehq/sluice/examples/internal/verify"
)

type redisBackend struct {
	group  string
	names  verify.Topics
	client *redis.Client
}

// redisLog keeps go-redis's own messages (a dial failing while the server
// restarts, which the producer reports itself) out of the soak's output.
type redisLog struct{}

func (redisLog) Printf(context.Context, string, ...any) {}

func newRedisBackend(addr, group string, names verify.Topics) (*redisBackend, error) {
	redis.SetLogger(redisLog{})
	c := redis.NewClient(&redis.Options{Addr: addr, ClientName: "sluice-chaos",
		DialTimeout: 2 * time.Second, ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		c.Close()
		return nil, fmt.Errorf("redis at %s: %w", addr, err)
	}
	return &redisBackend{group: group, names: names, client: c}, nil
}

// prepare has nothing to do: the producer's first XADD makes the stream,
// and the service makes its group at "0".
func (r *redisBackend) prepare(context.Context) error { return nil }

func (r *redisBackend) produce(ctx context.Context, values [][]byte) ([][]byte, error) {
	pipe := r.client.Pipeline()
	cmds := make([]*redis.StringCmd, len(values))
	for i, v := range values {
		cmds[i] = pipe.XAdd(ctx, &redis.XAddArgs{Stream: r.names.Input, Values: []any{"payload", v}})
	}
	_, err := pipe.Exec(ctx)
	if err == nil {
		return nil, nil
	}
	// An XADD that failed for sure is sent again; one whose answer was
	// lost may have been stored, and sending it again adds a second input,
	// which the pipeline must process like any other.
	var rest [][]byte
	for i, c := range cmds {
		if c.Err() != nil {
			rest = append(rest, values[i])
		}
	}
	return rest, err
}

func (r *redisBackend) serviceEnv(proxy string) []string {
	return []string{"SLUICE_SOURCE=redis", "SLUICE_REDIS_ADDR=" + proxy}
}

// lag is the group's lag (entries never delivered) plus its pending entries
// (delivered, not acknowledged).
func (r *redisBackend) lag(ctx context.Context) (int64, string, error) {
	groups, err := r.client.XInfoGroups(ctx, r.names.Input).Result()
	if err != nil {
		return 0, "", err
	}
	for _, g := range groups {
		if g.Name != r.group {
			continue
		}
		lag := g.Lag
		if lag < 0 { // unknown: compare the last delivered ID with the stream's last
			info, err := r.client.XInfoStream(ctx, r.names.Input).Result()
			if err != nil {
				return 0, "", err
			}
			lag = 0
			if info.LastGeneratedID != g.LastDeliveredID {
				lag = 1
			}
		}
		return lag + g.Pending, fmt.Sprintf("lag %d, pending %d, last delivered %s", g.Lag, g.Pending, g.LastDeliveredID), nil
	}
	return 0, "", errors.New("no consumer group yet")
}

func (r *redisBackend) verify(ctx context.Context) (verify.Report, error) {
	return verify.Redis(ctx, r.client, r.names)
}

// missing lists the inputs without an output or a dead letter: entry ID and
// payload.
func (r *redisBackend) missing(ctx context.Context, limit int) ([]string, error) {
	inputs := map[string]string{}
	done := map[string]bool{}
	if err := r.read(ctx, r.names.Input, func(e redis.XMessage) {
		p, _ := e.Values["payload"].(string)
		inputs[e.ID] = p
	}); err != nil {
		return nil, err
	}
	for _, s := range []string{r.names.Output, r.names.DeadLetter} {
		if err := r.read(ctx, s, func(e redis.XMessage) {
			if id, ok := e.Values["source_id"].(string); ok {
				done[id] = true
			}
		}); err != nil {
			return nil, err
		}
	}
	var out []string
	for id, p := range inputs {
		if done[id] {
			continue
		}
		// Where it stands in the group: pending (delivered to whom, how
		// long ago, how often) or never delivered.
		state := "not pending"
		pend, err := r.client.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: r.names.Input, Group: r.group,
			Start: id, End: id, Count: 1}).Result()
		switch {
		case err != nil:
			state = "XPENDING: " + err.Error()
		case len(pend) == 1:
			state = fmt.Sprintf("pending at %s for %s, %d deliveries", pend[0].Consumer, pend[0].Idle.Round(time.Millisecond), pend[0].RetryCount)
		}
		out = append(out, fmt.Sprintf("%s/%s (%s) %s", r.names.Input, id, state, p))
	}
	sort.Strings(out)
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

func (r *redisBackend) read(ctx context.Context, stream string, fn func(redis.XMessage)) error {
	start := "-"
	for {
		page, err := r.client.XRangeN(ctx, stream, start, "+", 1000).Result()
		if err != nil {
			return err
		}
		for _, e := range page {
			fn(e)
		}
		if len(page) < 1000 {
			return nil
		}
		start = "(" + page[len(page)-1].ID
	}
}

// close closes the client.
func (r *redisBackend) close() { _ = r.client.Close() }
