package verify

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/sluicehq/sluice"
)

// redisPage is how many entries one XRANGE reads.
const redisPage = 1000

// Redis reads the three streams whole and matches them. A stream that does
// not exist counts as empty. Dead letters and outputs of other input streams
// are ignored, so that several pipelines can share one dead-letter stream.
func Redis(ctx context.Context, client redis.UniversalClient, t Topics) (Report, error) {
	c := NewCounter()
	err := readStream(ctx, client, t.Input, func(e redis.XMessage) {
		if _, ok := ReplayOrigin(fieldGetter(e)); ok {
			c.Replayed()
			return
		}
		c.Input(sluice.Origin{Topic: t.Input, ID: e.ID, Offset: -1})
	})
	if err != nil {
		return Report{}, err
	}
	for _, out := range []struct {
		stream string
		add    func(sluice.Origin)
	}{{t.Output, c.Enriched}, {t.DeadLetter, c.DeadLetter}} {
		err := readStream(ctx, client, out.stream, func(e redis.XMessage) {
			o, ok := OutputOrigin(fieldGetter(e))
			switch {
			case !ok:
				c.NoOrigin()
			case o.Topic == t.Input:
				out.add(o)
			}
		})
		if err != nil {
			return Report{}, err
		}
	}
	return c.Report(), nil
}

// fieldGetter returns the string value of a field of e.
func fieldGetter(e redis.XMessage) func(string) (string, bool) {
	return func(name string) (string, bool) {
		v, ok := e.Values[name]
		if !ok {
			return "", false
		}
		s, ok := v.(string)
		return s, ok
	}
}

func readStream(ctx context.Context, client redis.UniversalClient, stream string, fn func(redis.XMessage)) error {
	start := "-"
	for {
		page, err := client.XRangeN(ctx, stream, start, "+", redisPage).Result()
		if err != nil {
			return fmt.Errorf("verify: XRANGE %s: %w", stream, err)
		}
		for _, e := range page {
			fn(e)
		}
		if len(page) < redisPage {
			return nil
		}
		next, err := nextID(page[len(page)-1].ID)
		if err != nil {
			return fmt.Errorf("verify: XRANGE %s: %w", stream, err)
		}
		start = next
	}
}

// nextID returns the smallest stream ID above id ("ms-seq"), so that paging
// works on servers without exclusive ranges.
func nextID(id string) (string, error) {
	ms, seq, ok := strings.Cut(id, "-")
	if !ok {
		return "", fmt.Errorf("malformed entry ID %q", id)
	}
	m, err1 := strconv.ParseUint(ms, 10, 64)
	s, err2 := strconv.ParseUint(seq, 10, 64)
	if err1 != nil || err2 != nil {
		return "", fmt.Errorf("malformed entry ID %q", id)
	}
	if s == ^uint64(0) {
		return strconv.FormatUint(m+1, 10) + "-0", nil
	}
	return ms + "-" + strconv.FormatUint(s+1, 10), nil
}
