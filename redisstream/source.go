package redisstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/internal/backoff"
	"github.com/sluicehq/sluice/internal/latch"
)

// ErrNotReady matches the error [Source.Ready] returns while startup
// reconciliation is still going on.
var ErrNotReady = errors.New("redisstream: not ready")

// ErrUnreachable matches the error a constructor returns when the server
// does not answer PING: it is down, the address is wrong, or the network
// drops the connection. The error also names the address.
var ErrUnreachable = errors.New("redisstream: server unreachable")

// ErrUnsupportedServer matches the error [NewSource] returns when the Redis
// server is older than [MinRedisVersion] (and Fetch and Ready, should the
// source meet such a server later).
var ErrUnsupportedServer = errors.New("redisstream: unsupported Redis server")

// MinRedisVersion is the oldest Redis server a [Source] works with. Before
// 7.0, XAUTOCLAIM answers a pending entry that was deleted from the stream
// with a null element (go-redis then fails the whole reply after the server
// already moved the page's entries), and XINFO GROUPS reports no lag.
const MinRedisVersion = "7.0"

// Interface checks.
var (
	_ sluice.Source      = (*Source)(nil)
	_ sluice.Acker       = (*Source)(nil)
	_ sluice.Pauser      = (*Source)(nil)
	_ sluice.LagReporter = (*Source)(nil)
	_ sluice.Readier     = (*Source)(nil)
	_ sluice.Flusher     = (*Source)(nil)
)

// phase is where a source stands in its read cycle.
type phase uint8

const (
	phaseInit  phase = iota // create the group
	phaseOwn                // re-read this consumer's pending entries (ID 0)
	phaseClaim              // XAUTOCLAIM stuck entries of any consumer
	phaseRead               // XREADGROUP >
)

// token is the Message.Token of every message a Source hands out.
type token struct {
	src *Source
	// invalid is why the entry could not be mapped to a message, or nil.
	invalid error
}

// Source reads one Redis stream as a member of a consumer group. It
// implements [sluice.Source], [sluice.Acker], [sluice.Pauser],
// [sluice.LagReporter], [sluice.Readier] and [sluice.Flusher]. See the
// package documentation for startup reconciliation, claiming and how
// Message.Deliveries is counted.
//
// Fetch must be called from one goroutine at a time; the other methods are
// safe for concurrent use.
type Source struct {
	cfg      config
	client   redis.UniversalClient
	owned    bool
	stream   string
	group    string
	consumer string
	codec    codec
	log      *slog.Logger
	tok      *token

	// Owned by the goroutine calling Fetch.
	phase     phase
	cursor    string
	startup   bool // the current pass belongs to startup reconciliation
	nextClaim time.Time
	failures  int // reads failed in a row, for the backoff
	// nextLost is when to look for entries lost in transit next (see
	// recoverLost); lostDue makes it happen before the next read.
	nextLost time.Time
	lostDue  bool

	mu         sync.Mutex
	inflight   map[string]struct{} // handed out, not yet acked
	recovering map[string]struct{} // recovered at startup, not yet acked
	unacked    map[string]struct{} // XACKs that failed, kept for retry
	started    bool                // the first Fetch has begun
	versionOK  bool                // the server passed the version check
	reconciled bool
	lastErr    error
	closed     bool
	done       chan struct{}

	paused latch.Latch // closed by Pause, opened by Resume
}

// NewSource returns a source that reads stream as consumer group group.
// Before it returns it checks that it can work, within ctx: the server
// answers PING (else an error matching [ErrUnreachable]), is Redis
// [MinRedisVersion] or newer (else an error matching
// [ErrUnsupportedServer]), and the group exists: a missing group is created
// (XGROUP CREATE ... MKSTREAM) at the [WithStartAt] position, the oldest
// entry by default. Bad options fail with an error matching
// [sluice.ErrInvalidConfig]. The first Fetch then reconciles the group (see
// the package documentation).
func NewSource(ctx context.Context, stream, group string, opts ...SourceOption) (*Source, error) {
	cfg := sourceConfig(opts)
	if stream == "" {
		cfg.reject("stream", "the stream name is empty", "pass the key of the stream to read")
	}
	if group == "" {
		cfg.reject("group", "the consumer group name is empty", "pass the name of the group to read as")
	}
	if err := cfg.errs.Err(); err != nil {
		return nil, err
	}
	if cfg.consumer == "" {
		cfg.consumer = defaultConsumer()
	}
	client, owned := cfg.connect()
	s := &Source{
		cfg:        cfg,
		client:     client,
		owned:      owned,
		stream:     stream,
		group:      group,
		consumer:   cfg.consumer,
		codec:      codec{payload: cfg.payloadField, key: cfg.keyField, asJSON: cfg.fieldsJSON},
		log:        cfg.logger.With("stream", stream, "group", group, "consumer", cfg.consumer),
		startup:    true,
		inflight:   make(map[string]struct{}),
		recovering: make(map[string]struct{}),
		unacked:    make(map[string]struct{}),
		done:       make(chan struct{}),
	}
	s.tok = &token{src: s}
	err := ping(ctx, client, "source", stream)
	if err == nil {
		err = s.checkVersion(ctx)
	}
	if err == nil {
		err = s.ensureGroup(ctx)
	}
	if err != nil {
		if owned {
			_ = client.Close()
		}
		return nil, err
	}
	return s, nil
}

// ping checks that the server answers, for a constructor.
func ping(ctx context.Context, c redis.UniversalClient, what, stream string) error {
	err := c.Ping(ctx).Err()
	if err == nil {
		return nil
	}
	// A refused login or certificate is no outage: it gets its own error.
	switch ce, refused := classifySecurity(err); {
	case isServerError(err) || ctx.Err() != nil || refused:
		return fmt.Errorf("redisstream: %s %q: PING %s: %w", what, stream, addrOf(c), ce)
	default:
		return fmt.Errorf("%w: %s %q: PING %s: %w", ErrUnreachable, what, stream, addrOf(c), err)
	}
}

// Client returns the client the source uses. Pass it to [NewSink] with
// [WithClient] so that the sink acknowledges entries as soon as their dead
// letters are written.
func (s *Source) Client() redis.UniversalClient { return s.client }

// Consumer returns the consumer name.
func (s *Source) Consumer() string { return s.consumer }

// Stream returns the stream key.
func (s *Source) Stream() string { return s.stream }

// Group returns the consumer group name.
func (s *Source) Group() string { return s.group }

// Fetch implements [sluice.Source]. The first calls create the group and
// return the entries recovered by startup reconciliation; after that it
// reads new entries, every claim interval claims stuck ones, and after every
// error and every few seconds hands out the entries of its own pending list
// whose read reply was lost (see the package documentation). Connection
// errors are logged and retried with backoff (see Ready); errors no retry can
// fix, such as rejected credentials or a key that is not a stream, are
// returned.
func (s *Source) Fetch(ctx context.Context, limit int) ([]*sluice.Message, error) {
	count := min(max(limit, 1), s.cfg.maxReadCount)
	for {
		if err := s.waitRunnable(ctx); err != nil {
			return nil, err
		}
		msgs, err := s.step(ctx, count)
		if err == nil {
			s.recordErr(nil)
			if len(msgs) > 0 {
				return msgs, nil
			}
			continue
		}
		// A command that failed may have been carried out: an XREADGROUP
		// may have delivered entries whose reply never came back (or was
		// abandoned with ctx). Look for them before reading anything new.
		s.lostDue = true
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if s.isClosed() {
			return nil, sluice.ErrSourceClosed
		}
		s.recordErr(err)
		if unrecoverable(err) {
			return nil, err
		}
		if redis.HasErrorPrefix(err, "NOGROUP") {
			s.log.Warn("redisstream: consumer group is gone; creating it again", "err", err)
			s.phase = phaseInit
		}
		if err := s.sleepBackoff(ctx); err != nil {
			return nil, err
		}
	}
}

// unrecoverable reports errors that retrying cannot fix.
func unrecoverable(err error) bool {
	return redis.IsAuthError(err) || redis.IsPermissionError(err) || redis.HasErrorPrefix(err, "WRONGTYPE") ||
		errors.Is(err, ErrUnsupportedServer)
}

func (s *Source) step(ctx context.Context, count int) ([]*sluice.Message, error) {
	switch s.phase {
	case phaseInit:
		s.mu.Lock()
		s.started = true
		s.mu.Unlock()
		if err := s.checkVersion(ctx); err != nil {
			return nil, err
		}
		if err := s.ensureGroup(ctx); err != nil {
			return nil, err
		}
		s.phase, s.cursor = phaseOwn, "0"
		return nil, nil
	case phaseOwn:
		return s.readOwn(ctx, count)
	case phaseClaim:
		return s.claim(ctx, count)
	default:
		now := time.Now()
		if !now.Before(s.nextClaim) {
			s.phase, s.cursor = phaseClaim, "0-0"
			return nil, nil
		}
		if s.lostDue || !now.Before(s.nextLost) {
			return s.recoverLost(ctx, count)
		}
		return s.readNew(ctx, count)
	}
}

// checkVersion refuses a server older than [MinRedisVersion], once it has
// answered INFO server. A server that refuses INFO, or does not report a
// version, is let through with a warning.
func (s *Source) checkVersion(ctx context.Context) error {
	s.mu.Lock()
	ok := s.versionOK
	s.mu.Unlock()
	if ok {
		return nil
	}
	info, err := s.client.Info(ctx, "server").Result()
	if err != nil && !isServerError(err) {
		return fmt.Errorf("redisstream: INFO server on %s: %w", addrOf(s.client), err)
	}
	v := infoField(info, "redis_version")
	major, _, parsed := parseVersion(v)
	switch {
	case err != nil:
		s.log.Warn("redisstream: the server refused INFO server; cannot check that it is Redis "+MinRedisVersion+" or newer", "addr", addrOf(s.client), "err", err)
	case !parsed:
		s.log.Warn("redisstream: the server reports no redis_version in INFO server; cannot check that it is Redis "+MinRedisVersion+" or newer", "addr", addrOf(s.client))
	case major < 7:
		return fmt.Errorf("%w: the server at %s is Redis %s, and stream %q needs Redis %s or newer "+
			"(before 7.0, XAUTOCLAIM fails on pending entries deleted from the stream and XINFO GROUPS reports no lag): "+
			"upgrade the server to Redis %s or newer",
			ErrUnsupportedServer, addrOf(s.client), v, s.stream, MinRedisVersion, MinRedisVersion)
	}
	s.mu.Lock()
	s.versionOK = true
	s.mu.Unlock()
	return nil
}

// infoField returns the value of a "name:value" line of an INFO reply.
func infoField(info, name string) string {
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+":"); ok {
			return v
		}
	}
	return ""
}

// parseVersion parses the major and minor parts of a version such as
// "7.0.15".
func parseVersion(v string) (major, minor int, ok bool) {
	parts := strings.SplitN(v, ".", 3)
	if len(parts) < 2 {
		return 0, 0, false
	}
	major, err1 := strconv.Atoi(parts[0])
	minor, err2 := strconv.Atoi(parts[1])
	return major, minor, err1 == nil && err2 == nil
}

func (s *Source) ensureGroup(ctx context.Context) error {
	err := s.client.XGroupCreateMkStream(ctx, s.stream, s.group, s.cfg.startAt.groupID()).Err()
	if err != nil && !redis.HasErrorPrefix(err, "BUSYGROUP") {
		return fmt.Errorf("redisstream: XGROUP CREATE %q %q on %s: %w", s.stream, s.group, addrOf(s.client), classified(err))
	}
	if err == nil {
		s.log.Info("redisstream: created consumer group", "start_at", s.cfg.startAt.String(), "start_id", s.cfg.startAt.groupID())
	}
	return nil
}

// readOwn re-reads this consumer's pending entries, a page at a time.
func (s *Source) readOwn(ctx context.Context, count int) ([]*sluice.Message, error) {
	res, err := s.client.XReadGroup(ctx, &redis.XReadGroupArgs{
		Group: s.group, Consumer: s.consumer, Streams: []string{s.stream, s.cursor},
		Count: int64(count), Block: -1,
	}).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("redisstream: XREADGROUP %q %q (own pending entries) on %s: %w", s.stream, s.group, addrOf(s.client), err)
	}
	entries := entriesOf(res)
	if len(entries) == 0 {
		s.phase, s.cursor = phaseClaim, "0-0"
		return nil, nil
	}
	s.cursor = entries[len(entries)-1].ID
	counts := s.pendingRange(ctx, entries[0].ID, s.cursor, len(entries))
	var gone []string
	msgs := make([]*sluice.Message, 0, len(entries))
	for _, e := range entries {
		if len(e.Values) == 0 {
			gone = append(gone, e.ID)
			continue
		}
		if s.isInflight(e.ID) {
			continue
		}
		d := 0 // unknown
		if n, ok := counts[e.ID]; ok {
			// This re-read raised the count; it resumes an earlier
			// delivery rather than being a new one.
			d = int(max(n-1, 1))
		}
		msgs = append(msgs, s.message(e, d))
	}
	s.ackGone(ctx, gone, "own pending list")
	s.track(msgs)
	if len(msgs) > 0 {
		s.log.Info("redisstream: recovered own pending entries", "count", len(msgs), "through", s.cursor)
	}
	return msgs, nil
}

// claim runs one XAUTOCLAIM page and moves on to reading new entries when the
// cursor comes back to 0-0.
//
// XAUTOCLAIM runs with JUSTID, which moves idle entries to this consumer
// without raising their delivery counters and without returning their data.
// The entries this consumer still has in flight are left alone: they are
// idle only because the pipeline is slow with them (a long key-ordered queue,
// a slow writer), and claiming them is no redelivery. The others are taken
// with XCLAIM, which raises their counters and returns their data.
func (s *Source) claim(ctx context.Context, count int) ([]*sluice.Message, error) {
	ids, next, deleted, err := s.autoClaimIDs(ctx, count)
	if err != nil {
		return nil, err
	}
	if len(deleted) > 0 {
		s.log.Warn("redisstream: pending entries were deleted from the stream (trimmed?) before they were processed; Redis dropped them from the pending list",
			"count", len(deleted), "ids", firstIDs(deleted))
	}
	var claim []string
	for _, id := range ids {
		if !s.isInflight(id) {
			claim = append(claim, id)
		}
	}
	var msgs []*sluice.Message
	if len(claim) > 0 {
		// JUSTID reset their idle time, so claim them regardless of it:
		// they belong to this consumer now.
		entries, err := s.client.XClaim(ctx, &redis.XClaimArgs{
			Stream: s.stream, Group: s.group, Consumer: s.consumer, Messages: claim,
		}).Result()
		if err != nil {
			return nil, fmt.Errorf("redisstream: XCLAIM of %d entries of %q %q on %s: %w", len(claim), s.stream, s.group, addrOf(s.client), err)
		}
		var gone []string
		fresh := entries[:0:0]
		for _, e := range entries {
			if len(e.Values) == 0 {
				gone = append(gone, e.ID)
			} else {
				fresh = append(fresh, e)
			}
		}
		s.ackGone(ctx, gone, "claimed")
		if len(fresh) > 0 {
			counts := s.pendingEach(ctx, fresh)
			msgs = make([]*sluice.Message, 0, len(fresh))
			for _, e := range fresh {
				msgs = append(msgs, s.message(e, int(counts[e.ID])))
			}
			s.log.Info("redisstream: claimed idle entries", "count", len(msgs), "min_idle", s.cfg.minIdle)
		}
	}
	s.track(msgs)
	if next == "" || next == "0-0" {
		s.phase = phaseRead
		s.nextClaim = time.Now().Add(s.cfg.claimInterval)
		if s.startup {
			s.startup = false
			s.mu.Lock()
			s.reconciled = true
			n := len(s.recovering)
			s.mu.Unlock()
			s.log.Info("redisstream: startup reconciliation read everything; reading new entries", "recovered_unacked", n)
		}
	} else {
		s.cursor = next
	}
	return msgs, nil
}

// autoClaimIDs runs XAUTOCLAIM ... JUSTID from the cursor and returns the
// IDs it moved to this consumer, the next cursor, and the IDs of deleted
// entries Redis dropped from the pending list.
func (s *Source) autoClaimIDs(ctx context.Context, count int) (ids []string, next string, deleted []string, err error) {
	res, err := s.client.Do(ctx, "XAUTOCLAIM", s.stream, s.group, s.consumer,
		max(s.cfg.minIdle.Milliseconds(), 1), s.cursor, "COUNT", count, "JUSTID").Slice()
	if err != nil {
		return nil, "", nil, fmt.Errorf("redisstream: XAUTOCLAIM %q %q on %s: %w", s.stream, s.group, addrOf(s.client), err)
	}
	bad := func() ([]string, string, []string, error) {
		return nil, "", nil, fmt.Errorf("redisstream: XAUTOCLAIM %q %q on %s: unexpected reply %v", s.stream, s.group, addrOf(s.client), res)
	}
	if len(res) < 2 {
		return bad()
	}
	next, ok := res[0].(string)
	if !ok {
		return bad()
	}
	if ids, ok = stringsOf(res[1]); !ok {
		return bad()
	}
	if len(res) > 2 {
		if deleted, ok = stringsOf(res[2]); !ok {
			return bad()
		}
	}
	return ids, next, deleted, nil
}

// stringsOf converts an array reply of strings.
func stringsOf(v any) ([]string, bool) {
	arr, ok := v.([]any)
	if !ok {
		return nil, false
	}
	out := make([]string, len(arr))
	for i, x := range arr {
		if out[i], ok = x.(string); !ok {
			return nil, false
		}
	}
	return out, true
}

// lostCheckInterval is the longest time between two looks for entries lost
// in transit while the source reads; the claim interval, when shorter, is
// used instead.
const lostCheckInterval = 5 * time.Second

// recoverLost hands out the entries of this consumer's pending list that the
// source never saw: entries an XREADGROUP (or a claim) delivered to this
// consumer when its reply was lost, for example because the connection broke
// while the read was blocked. Redis counted them as delivered; nothing else
// would ever read them while the source runs (the periodic claim passes over
// this consumer's entries until they are idle for the min-idle time).
//
// It lists the consumer's pending list with XPENDING and keeps the entries
// that are not in flight. An entry acknowledged in the meantime is in flight
// until its XACK has succeeded, so once it no longer is, it is no longer
// pending either, and the XCLAIM ... JUSTID below does not return it. That
// XCLAIM, to this consumer, confirms each entry is still pending, resets its
// idle time (so another consumer's claim counts from now) and, with JUSTID,
// leaves its delivery counter alone. Its min-idle time is the smallest idle
// time XPENDING reported: an entry another consumer claimed since then is
// younger than that and stays where it is. The data comes from XRANGE, which
// counts no delivery, so Message.Deliveries is Redis's counter unchanged.
func (s *Source) recoverLost(ctx context.Context, count int) ([]*sluice.Message, error) {
	var lost []string
	counts := make(map[string]int64)
	var minIdle time.Duration
	more := false
	page := int64(s.cfg.maxReadCount)
	for start := "-"; ; {
		res, err := s.client.XPendingExt(ctx, &redis.XPendingExtArgs{
			Stream: s.stream, Group: s.group, Start: start, End: "+", Count: page, Consumer: s.consumer,
		}).Result()
		if err != nil {
			return nil, fmt.Errorf("redisstream: XPENDING %q %q (own pending entries) on %s: %w", s.stream, s.group, addrOf(s.client), err)
		}
		for _, p := range res {
			if s.isInflight(p.ID) {
				continue
			}
			if len(lost) == count {
				more = true
				break
			}
			if len(lost) == 0 || p.Idle < minIdle {
				minIdle = p.Idle
			}
			lost = append(lost, p.ID)
			counts[p.ID] = p.RetryCount
		}
		if more || int64(len(res)) < page {
			break
		}
		start = "(" + res[len(res)-1].ID
	}
	s.lostDue = more
	s.nextLost = time.Now().Add(min(s.cfg.claimInterval, lostCheckInterval))
	if len(lost) == 0 {
		return nil, nil
	}
	ids, err := s.client.XClaimJustID(ctx, &redis.XClaimArgs{
		Stream: s.stream, Group: s.group, Consumer: s.consumer, MinIdle: minIdle, Messages: lost,
	}).Result()
	if err != nil {
		return nil, fmt.Errorf("redisstream: XCLAIM JUSTID of %d own pending entries of %q %q on %s: %w", len(lost), s.stream, s.group, addrOf(s.client), err)
	}
	if len(ids) == 0 {
		return nil, nil
	}
	pipe := s.client.Pipeline()
	cmds := make([]*redis.XMessageSliceCmd, len(ids))
	for i, id := range ids {
		cmds[i] = pipe.XRangeN(ctx, s.stream, id, id, 1)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("redisstream: XRANGE of %d own pending entries of %q on %s: %w", len(ids), s.stream, addrOf(s.client), err)
	}
	var gone []string
	msgs := make([]*sluice.Message, 0, len(ids))
	for i, id := range ids {
		res := cmds[i].Val()
		if len(res) == 0 || res[0].ID != id {
			gone = append(gone, id)
			continue
		}
		msgs = append(msgs, s.message(res[0], int(counts[id])))
	}
	s.ackGone(ctx, gone, "own pending list, lost in transit")
	s.track(msgs)
	if len(msgs) > 0 {
		s.log.Warn("redisstream: recovered entries delivered to this consumer whose read reply was lost; reading them now",
			"count", len(msgs), "ids", firstIDs(idsOfMsgs(msgs)))
	}
	return msgs, nil
}

func idsOfMsgs(msgs []*sluice.Message) []string {
	ids := make([]string, len(msgs))
	for i, m := range msgs {
		ids[i] = m.Origin.ID
	}
	return ids
}

// sendOnce makes go-redis send a command at most once: its Process does not
// retry a command whose NoRetry is true.
type sendOnce struct{ *redis.XStreamSliceCmd }

func (sendOnce) NoRetry() bool { return true }

// readNew reads new entries with XREADGROUP >. go-redis retries a command
// whose connection broke (io.EOF, a reset), up to MaxRetries times; for this
// read that is wrong, because the server may have delivered entries with the
// lost reply, and the retry would move past them. So the read is sent once,
// on the client as it is (the client's options are left alone), and a
// failure goes back to Fetch, which looks for lost entries (recoverLost)
// before reading again.
func (s *Source) readNew(ctx context.Context, count int) ([]*sluice.Message, error) {
	// A pipeline only queues the command: go-redis builds it, with its
	// BLOCK-aware read timeout, and nothing is sent until Process.
	pipe := s.client.Pipeline()
	cmd := pipe.XReadGroup(ctx, &redis.XReadGroupArgs{
		Group: s.group, Consumer: s.consumer, Streams: []string{s.stream, ">"},
		Count: int64(count), Block: s.cfg.block,
	})
	pipe.Discard()
	_ = s.client.Process(ctx, sendOnce{cmd})
	res, err := cmd.Result()
	if err != nil {
		if errors.Is(err, redis.Nil) {
			return nil, nil
		}
		return nil, fmt.Errorf("redisstream: XREADGROUP %q %q on %s: %w", s.stream, s.group, addrOf(s.client), err)
	}
	entries := entriesOf(res)
	msgs := make([]*sluice.Message, 0, len(entries))
	for _, e := range entries {
		msgs = append(msgs, s.message(e, 1))
	}
	s.track(msgs)
	return msgs, nil
}

func entriesOf(res []redis.XStream) []redis.XMessage {
	if len(res) == 0 {
		return nil
	}
	return res[0].Messages
}

func (s *Source) message(e redis.XMessage, deliveries int) *sluice.Message {
	m, err := s.codec.decode(s.stream, e)
	m.Deliveries = deliveries
	m.Token = s.tok
	if err != nil {
		m.Token = &token{src: s, invalid: err}
		s.log.Warn("redisstream: entry cannot be mapped to an event; it will be dead-lettered", "id", e.ID, "err", err)
	}
	return m
}

// pendingRange returns the delivery counts of this consumer's pending entries
// from start to end. On failure it logs and returns nil: the deliveries are
// then unknown (0) rather than guessed.
func (s *Source) pendingRange(ctx context.Context, start, end string, n int) map[string]int64 {
	res, err := s.client.XPendingExt(ctx, &redis.XPendingExtArgs{
		Stream: s.stream, Group: s.group, Start: start, End: end, Count: int64(n), Consumer: s.consumer,
	}).Result()
	if err != nil {
		s.log.Warn("redisstream: XPENDING failed; delivery counts of recovered entries are unknown", "err", err)
		return nil
	}
	out := make(map[string]int64, len(res))
	for _, p := range res {
		out[p.ID] = p.RetryCount
	}
	return out
}

// pendingEach returns the delivery counts of the given entries, now owned by
// this consumer, in one round trip.
func (s *Source) pendingEach(ctx context.Context, entries []redis.XMessage) map[string]int64 {
	pipe := s.client.Pipeline()
	cmds := make([]*redis.XPendingExtCmd, len(entries))
	for i, e := range entries {
		cmds[i] = pipe.XPendingExt(ctx, &redis.XPendingExtArgs{
			Stream: s.stream, Group: s.group, Start: e.ID, End: e.ID, Count: 1, Consumer: s.consumer,
		})
	}
	if _, err := pipe.Exec(ctx); err != nil {
		s.log.Warn("redisstream: XPENDING failed; delivery counts of claimed entries are unknown", "err", err)
	}
	out := make(map[string]int64, len(entries))
	for _, c := range cmds {
		for _, p := range c.Val() {
			out[p.ID] = p.RetryCount
		}
	}
	return out
}

// ackGone acknowledges pending entries whose data was deleted from the
// stream: there is nothing left to process.
func (s *Source) ackGone(ctx context.Context, ids []string, where string) {
	if len(ids) == 0 {
		return
	}
	err := s.client.XAck(ctx, s.stream, s.group, ids...).Err()
	if err != nil {
		s.log.Error("redisstream: pending entries were deleted from the stream; XACK of them failed, will try again at the next pass",
			"where", where, "count", len(ids), "ids", firstIDs(ids), "err", err)
		return
	}
	s.log.Warn("redisstream: pending entries were deleted from the stream (trimmed?) before they were processed; acknowledged them",
		"where", where, "count", len(ids), "ids", firstIDs(ids))
}

func firstIDs(ids []string) []string {
	const n = 10
	if len(ids) <= n {
		return ids
	}
	return ids[:n]
}

func (s *Source) track(msgs []*sluice.Message) {
	if len(msgs) == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range msgs {
		s.inflight[m.Origin.ID] = struct{}{}
		if s.startup {
			s.recovering[m.Origin.ID] = struct{}{}
		}
	}
}

func (s *Source) isInflight(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.inflight[id]
	return ok
}

func (s *Source) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// waitRunnable returns nil when Fetch may issue a read: not paused, not
// closed, ctx alive.
func (s *Source) waitRunnable(ctx context.Context) error {
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		if s.isClosed() {
			return sluice.ErrSourceClosed
		}
		ch := s.paused.Wait()
		if ch == nil {
			return nil
		}
		select {
		case <-ch:
		case <-s.done:
		case <-ctx.Done():
		}
	}
}

func (s *Source) recordErr(err error) {
	s.mu.Lock()
	prev := s.lastErr
	s.lastErr = err
	s.mu.Unlock()
	switch {
	case err == nil && prev != nil:
		s.failures = 0
		s.log.Info("redisstream: reading again after an error", "addr", addrOf(s.client))
	case err == nil:
		s.failures = 0
	case prev == nil:
		s.log.Error("redisstream: read failed; retrying with backoff", "addr", addrOf(s.client), "err", err)
	default:
		s.log.Warn("redisstream: read failed again; retrying with backoff", "addr", addrOf(s.client), "err", err)
	}
}

func (s *Source) sleepBackoff(ctx context.Context) error {
	const first, ceiling = 50 * time.Millisecond, 5 * time.Second
	s.failures++
	t := time.NewTimer(backoff.Exp(first, ceiling, s.failures))
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-s.done:
		return sluice.ErrSourceClosed
	}
}

// Ack implements [sluice.Acker] with one XACK per call (in chunks for very
// large batches). If the XACK fails, the IDs are kept and sent again with the
// next Ack, Flush or Close, as well as being reported to the caller; an ID
// acknowledged twice is harmless.
func (s *Source) Ack(ctx context.Context, msgs []*sluice.Message) error {
	ids := make([]string, 0, len(msgs))
	for _, m := range msgs {
		if m.Origin.Topic != s.stream || m.Origin.ID == "" {
			return fmt.Errorf("redisstream: Ack: message %s was not read from stream %q", m.Origin, s.stream)
		}
		ids = append(ids, m.Origin.ID)
	}
	s.mu.Lock()
	for id := range s.unacked {
		ids = append(ids, id)
	}
	s.mu.Unlock()
	return s.ack(ctx, ids)
}

// Flush implements [sluice.Flusher]: it sends the XACKs that failed before.
func (s *Source) Flush(ctx context.Context) error {
	s.mu.Lock()
	ids := make([]string, 0, len(s.unacked))
	for id := range s.unacked {
		ids = append(ids, id)
	}
	s.mu.Unlock()
	return s.ack(ctx, ids)
}

// ackChunk bounds the IDs of one XACK command.
const ackChunk = 1000

func (s *Source) ack(ctx context.Context, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	var err error
	if len(ids) <= ackChunk {
		err = s.client.XAck(ctx, s.stream, s.group, ids...).Err()
	} else {
		pipe := s.client.Pipeline()
		for i := 0; i < len(ids); i += ackChunk {
			pipe.XAck(ctx, s.stream, s.group, ids[i:min(i+ackChunk, len(ids))]...)
		}
		_, err = pipe.Exec(ctx)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		for _, id := range ids {
			s.unacked[id] = struct{}{}
		}
		return fmt.Errorf("redisstream: XACK of %d entries of %q on %s failed (kept for retry): %w", len(ids), s.stream, addrOf(s.client), err)
	}
	for _, id := range ids {
		delete(s.unacked, id)
		delete(s.inflight, id)
		delete(s.recovering, id)
	}
	return nil
}

// Pause implements [sluice.Pauser]: Fetch issues no more reads until Resume.
func (s *Source) Pause() { s.paused.Close(nil) }

// Resume implements [sluice.Pauser].
func (s *Source) Resume() { s.paused.Open(nil) }

// Lag implements [sluice.LagReporter] with XINFO GROUPS: the total is the
// group's lag (entries not yet delivered to it) plus its pending count
// (delivered, not yet acknowledged). It is -1, unknown, when Redis reports no
// lag (for example after entries were deleted from the middle of the stream)
// or when the group does not exist yet. ByPartition has the same figure under
// the stream key.
func (s *Source) Lag(ctx context.Context) (sluice.Lag, error) {
	groups, err := s.client.XInfoGroups(ctx, s.stream).Result()
	if err != nil {
		if redis.HasErrorPrefix(err, "ERR no such key") || redis.HasErrorPrefix(err, "no such key") {
			return sluice.Lag{Total: 0, ByPartition: map[string]int64{s.stream: 0}}, nil
		}
		return sluice.Lag{Total: -1}, fmt.Errorf("redisstream: XINFO GROUPS %q on %s: %w", s.stream, addrOf(s.client), err)
	}
	total := int64(-1)
	for _, g := range groups {
		if g.Name == s.group && g.Lag >= 0 {
			total = g.Lag + g.Pending
		}
	}
	return sluice.Lag{Total: total, ByPartition: map[string]int64{s.stream: total}}, nil
}

// Ready implements [sluice.Readier]. It returns nil once the server answers,
// the consumer group exists and startup reconciliation is over: every
// pending entry this consumer owned and every idle entry it claimed at
// startup has been read and acknowledged. Before the first Fetch it checks
// the server's version, creates the group if it does not exist yet (so that
// an entry added after Ready returned nil is never skipped by a group created
// later at "$"), and asks the server whether there is anything to reconcile:
// it is ready if not. Otherwise it returns an error matching [ErrNotReady];
// while reads fail, the last read error; on a server older than
// [MinRedisVersion], an error matching [ErrUnsupportedServer].
func (s *Source) Ready(ctx context.Context) error {
	s.mu.Lock()
	closed, lastErr, started, reconciled, n := s.closed, s.lastErr, s.started, s.reconciled, len(s.recovering)
	s.mu.Unlock()
	if closed {
		return sluice.ErrSourceClosed
	}
	if err := s.client.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redisstream: source %q: PING %s: %w", s.stream, addrOf(s.client), err)
	}
	if lastErr != nil {
		return fmt.Errorf("redisstream: source %q: last read failed: %w", s.stream, lastErr)
	}
	if !reconciled {
		if !started {
			if err := s.checkVersion(ctx); err != nil {
				return err
			}
			if err := s.ensureGroup(ctx); err != nil {
				return err
			}
			return s.nothingToReconcile(ctx)
		}
		return fmt.Errorf("%w: startup reconciliation of stream %q has not finished", ErrNotReady, s.stream)
	}
	if n > 0 {
		return fmt.Errorf("%w: %d entries recovered at startup from stream %q are not acknowledged yet", ErrNotReady, n, s.stream)
	}
	return nil
}

// nothingToReconcile is Ready before the first Fetch: the source is ready
// when startup reconciliation will find nothing, that is, when this consumer
// has no pending entries and no entry of the group has been idle longer than
// the min-idle time.
func (s *Source) nothingToReconcile(ctx context.Context) error {
	pipe := s.client.Pipeline()
	own := pipe.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: s.stream, Group: s.group, Start: "-", End: "+", Count: 1, Consumer: s.consumer})
	idle := pipe.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: s.stream, Group: s.group, Idle: s.cfg.minIdle, Start: "-", End: "+", Count: 1})
	_, err := pipe.Exec(ctx)
	switch {
	case err != nil:
		return fmt.Errorf("redisstream: source %q: XPENDING on %s: %w", s.stream, addrOf(s.client), err)
	case len(own.Val()) > 0:
		return fmt.Errorf("%w: consumer %q has pending entries in stream %q to recover first", ErrNotReady, s.consumer, s.stream)
	case len(idle.Val()) > 0:
		return fmt.Errorf("%w: stream %q has entries idle longer than %s to claim first", ErrNotReady, s.stream, s.cfg.minIdle)
	}
	return nil
}

// Close stops the source: Fetch returns [sluice.ErrSourceClosed] (within the
// block time, if a read is in progress). It sends XACKs that failed before,
// for up to five seconds, and closes the client if the source built it.
func (s *Source) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.done)
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s.Flush(ctx)
	if s.owned {
		err = errors.Join(err, s.client.Close())
	}
	return err
}

// addrOf describes the server of a client, for errors and logs. It never
// includes credentials.
func addrOf(c redis.UniversalClient) string {
	switch x := c.(type) {
	case *redis.Client:
		return x.Options().Addr
	case *redis.ClusterClient:
		return fmt.Sprint(x.Options().Addrs)
	default:
		return fmt.Sprintf("%T", c)
	}
}
