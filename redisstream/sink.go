package redisstream

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"

	"github.com/redis/go-redis/v9"

	"github.com/sluicehq/sluice"
)

// Interface checks.
var (
	_ sluice.Sink             = (*Sink)(nil)
	_ sluice.DeadLetterWriter = (*Sink)(nil)
	_ sluice.Readier          = (*Sink)(nil)
)

// Sink writes enriched messages to a Redis stream and dead letters to a
// dead-letter stream. It implements [sluice.Sink], [sluice.DeadLetterWriter]
// and [sluice.Readier]. Its methods are safe for concurrent use.
type Sink struct {
	cfg    config
	client redis.UniversalClient
	owned  bool
	stream string
	codec  codec
	log    *slog.Logger

	apartOnce sync.Once // warns once that WithAtomicAck cannot apply
}

// NewSink returns a sink that appends to stream. Before it returns it
// checks, within ctx, that the server answers PING, and fails with an error
// matching [ErrUnreachable] if not. Bad options fail with an error
// matching [sluice.ErrInvalidConfig].
func NewSink(ctx context.Context, stream string, opts ...SinkOption) (*Sink, error) {
	cfg := sinkConfig(opts)
	if stream == "" {
		cfg.reject("stream", "the stream name is empty", "pass the key of the stream to write")
	}
	if err := cfg.errs.Err(); err != nil {
		return nil, err
	}
	client, owned := cfg.connect()
	if err := ping(ctx, client, "sink", stream); err != nil {
		if owned {
			_ = client.Close()
		}
		return nil, err
	}
	return &Sink{
		cfg:    cfg,
		client: client,
		owned:  owned,
		stream: stream,
		codec:  codec{payload: cfg.payloadField, key: cfg.keyField, asJSON: cfg.fieldsJSON},
		log:    cfg.logger.With("stream", stream),
	}, nil
}

// Client returns the client the sink uses.
func (s *Sink) Client() redis.UniversalClient { return s.client }

// Stream returns the output stream key.
func (s *Sink) Stream() string { return s.stream }

// DeadLetterStream returns the dead-letter stream key.
func (s *Sink) DeadLetterStream() string { return s.cfg.deadLetter }

// Write implements [sluice.Sink]: one pipelined XADD per message, trimmed to
// about the [WithMaxLen] length if set. Each entry carries the message's
// payload, key and headers as fields, and the origin fields source_stream
// and source_id (or source_topic, source_partition and source_offset) of
// [sluice.AppendOriginHeaders]. Write returns nil only once Redis has
// answered every XADD.
//
// With [WithAtomicAck], when every message of the batch was read by one
// [Source] that uses the very same *redis.Client as this sink (and
// [WithWaitReplicas] is not set), the XADDs and the XACK of their entries run in one Lua script: Redis runs
// it whole, so no crash can leave an output written and its entry pending
// (which would write it again after a restart). The pipeline's own XACK
// afterwards is harmless. If a command of the script fails (WRONGTYPE),
// the script stops before the XACK and Write returns an error for the
// batch, which the pipeline writes again.
//
// A message read from an entry that could not be mapped (see
// [HeaderEntryError]), or, with [WithFieldsAsJSON], whose value is not a
// JSON object, or with a header named like one of the event's fields (see
// [ErrFieldCollision]) is refused with a [sluice.Permanent] error in a
// [sluice.WriteErrors], so that the pipeline dead-letters it. If the
// connection fails, Write returns an error for the whole batch, which the
// pipeline writes again (some entries may then appear twice).
func (s *Sink) Write(ctx context.Context, msgs []*sluice.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	var werrs sluice.WriteErrors
	all := make([][]any, len(msgs))
	for i, m := range msgs {
		if t, ok := m.Token.(*token); ok && t.invalid != nil {
			werrs = append(werrs, sluice.WriteError{Index: i, Err: sluice.Permanent(t.invalid)})
			continue
		}
		fields, err := s.codec.fields(m)
		if err != nil {
			werrs = append(werrs, sluice.WriteError{Index: i, Err: fmt.Errorf("redisstream: message %s: %w", m.Origin, err)})
			continue
		}
		all[i] = fields
	}
	if src := s.ackingSource(msgs, all); src != nil {
		if err := s.writeAndAck(ctx, src, msgs, all); err != nil {
			return err
		}
	} else {
		pipe := s.client.Pipeline()
		cmds := make([]*redis.StringCmd, len(msgs))
		for i, fields := range all {
			if fields != nil {
				cmds[i] = pipe.XAdd(ctx, &redis.XAddArgs{Stream: s.stream, MaxLen: s.cfg.maxLen, Approx: true, Values: fields})
			}
		}
		if n := pipe.Len(); n > 0 {
			wait := s.queueWait(ctx, pipe)
			if _, err := pipe.Exec(ctx); err != nil {
				if !isServerError(err) {
					return fmt.Errorf("redisstream: XADD of %d entries to %q on %s: %w", n, s.stream, addrOf(s.client), err)
				}
				for i, c := range cmds {
					if c != nil && c.Err() != nil {
						werrs = append(werrs, sluice.WriteError{Index: i, Err: writeError(s.stream, c.Err())})
					}
				}
			}
			if err := s.checkWait(wait, n); err != nil {
				return err
			}
		}
	}
	if len(werrs) > 0 {
		slices.SortFunc(werrs, func(a, b sluice.WriteError) int { return cmp.Compare(a.Index, b.Index) })
		return werrs
	}
	return nil
}

// writeAckScript appends one entry per input to the output stream and
// acknowledges the inputs, atomically: Redis runs a script whole, so no
// crash or failover can separate an output from its input's XACK. A
// command that fails stops the script before the XACK (the XADDs before
// it stay: the batch is then written again, at least once).
//
// KEYS: output stream, input stream. ARGV: group, MAXLEN (0: none), then
// for each entry its input ID, its field count and its fields.
var writeAckScript = redis.NewScript(`
local maxlen = tonumber(ARGV[2])
local i = 3
local ids = {}
local added = {}
while i <= #ARGV do
  local id, n = ARGV[i], tonumber(ARGV[i+1])
  i = i + 2
  local args = {KEYS[1]}
  if maxlen > 0 then
    args[#args+1] = 'MAXLEN'; args[#args+1] = '~'; args[#args+1] = maxlen
  end
  args[#args+1] = '*'
  for j = i, i + n - 1 do args[#args+1] = ARGV[j] end
  i = i + n
  added[#added+1] = redis.call('XADD', unpack(args))
  ids[#ids+1] = id
end
for k = 1, #ids, 1000 do
  redis.call('XACK', KEYS[2], ARGV[1], unpack(ids, k, math.min(k + 999, #ids)))
end
return added
`)

// ackingSource returns the Source whose entries msgs are when the sink can
// acknowledge them itself, in the script that writes their outputs: every
// message comes from that one Source, which uses this sink's client, and
// [WithAtomicAck] is set (NewSink made sure that the client is a single
// server's and that no replica wait is asked for). Otherwise nil.
func (s *Sink) ackingSource(msgs []*sluice.Message, all [][]any) *Source {
	if !s.cfg.atomicAck {
		return nil
	}
	var src *Source
	for i, m := range msgs {
		if all[i] == nil {
			continue
		}
		t, ok := m.Token.(*token)
		if !ok || t.src == nil || m.Origin.ID == "" || (src != nil && t.src != src) {
			return nil
		}
		if t.src.client != s.client {
			s.apartOnce.Do(func() {
				s.log.Warn("redisstream: WithAtomicAck: the messages come from a Source on another client, so outputs and acknowledgements are written apart; pass one *redis.Client to both with WithClient")
			})
			return nil
		}
		src = t.src
	}
	return src
}

// writeAndAck writes the outputs of msgs and acknowledges their entries in
// one script run. The pipeline acknowledges them again afterwards, which
// is harmless.
func (s *Sink) writeAndAck(ctx context.Context, src *Source, msgs []*sluice.Message, all [][]any) error {
	args := []any{src.group, s.cfg.maxLen}
	n := 0
	for i, fields := range all {
		if fields == nil {
			continue
		}
		args = append(args, msgs[i].Origin.ID, len(fields))
		args = append(args, fields...)
		n++
	}
	if n == 0 {
		return nil
	}
	if err := writeAckScript.Run(ctx, s.client, []string{s.stream, src.stream}, args...).Err(); err != nil {
		err = fmt.Errorf("redisstream: XADD of %d entries to %q with the XACK of their inputs on %s: %w", n, s.stream, addrOf(s.client), classified(err))
		if errors.Is(err, ErrAccessDenied) {
			return sluice.Permanent(sluice.Fatal(err)) // no retry gets past the ACLs
		}
		return fmt.Errorf("%w; the batch is written again", err)
	}
	return nil
}

// queueWait queues WAIT behind the XADDs when [WithWaitReplicas] is set.
func (s *Sink) queueWait(ctx context.Context, pipe redis.Pipeliner) *redis.Cmd {
	if s.cfg.waitN == 0 {
		return nil
	}
	return pipe.Do(ctx, "WAIT", s.cfg.waitN, s.cfg.waitTimeout.Milliseconds())
}

// checkWait turns a WAIT that fewer replicas than asked answered into an
// error for the whole batch of n entries.
func (s *Sink) checkWait(wait *redis.Cmd, n int) error {
	if wait == nil {
		return nil
	}
	got, err := wait.Int64()
	if err != nil {
		return fmt.Errorf("redisstream: WAIT %d after %d XADDs on %s: %w; the entries are written again", s.cfg.waitN, n, addrOf(s.client), err)
	}
	if got < int64(s.cfg.waitN) {
		return fmt.Errorf("redisstream: only %d of the %d replicas asked for (WithWaitReplicas) confirmed %d XADDs within %s on %s; the entries are written again and not acknowledged meanwhile",
			got, s.cfg.waitN, n, s.cfg.waitTimeout, addrOf(s.client))
	}
	return nil
}

// isServerError reports whether err is an error reply from Redis rather than
// a connection problem.
func isServerError(err error) bool {
	var re redis.Error
	return errors.As(err, &re)
}

// ackKey is a source stream and group whose entries the sink acknowledges
// after writing their dead letters.
type ackKey struct{ stream, group string }

// WriteDeadLetters implements [sluice.DeadLetterWriter]: one XADD per letter
// to the dead-letter stream with the original payload (or field map), the
// original fields, and the headers of [sluice.DeadLetter.Headers]
// (failure_reason, failure_attempts, failure_time, source_stream, source_id).
// The XADDs are pipelined, and every reply is checked: a letter Redis
// refused (for example with WRONGTYPE, because the dead-letter key holds
// another type) is reported in a [sluice.WriteErrors], not as permanent, so
// that the pipeline writes it again and does not acknowledge its entry; one
// the ACLs refuse (NOPERM) matches [ErrAccessDenied] and is permanent and
// fatal, so that the pipeline stops with the entry unacknowledged.
//
// When letters come from a [Source] that uses the very same *redis.Client as
// this sink, the sink then acknowledges (XACK) the entries whose dead letter
// Redis confirmed, and only those, in the next round trip. The pipeline
// acknowledges them afterwards as usual; that second XACK is harmless. A
// crash between the two round trips leaves an entry both dead-lettered and
// pending: it is delivered again and may be dead-lettered twice, never lost.
func (s *Sink) WriteDeadLetters(ctx context.Context, letters []sluice.DeadLetter) error {
	if len(letters) == 0 {
		return nil
	}
	pipe := s.client.Pipeline()
	cmds := make([]*redis.StringCmd, len(letters))
	for i, d := range letters {
		cmds[i] = pipe.XAdd(ctx, &redis.XAddArgs{Stream: s.cfg.deadLetter, Values: s.codec.deadLetterFields(d)})
	}
	wait := s.queueWait(ctx, pipe)
	_, err := pipe.Exec(ctx)
	if err != nil && !isServerError(err) {
		// The connection failed: no reply can be trusted, and the
		// pipeline writes the whole batch again.
		return fmt.Errorf("redisstream: XADD of %d dead letters to %q on %s: %w", len(letters), s.cfg.deadLetter, addrOf(s.client), err)
	}
	if err := s.checkWait(wait, len(letters)); err != nil {
		return err // nothing acknowledged: the letters are written again
	}
	var werrs sluice.WriteErrors
	for i, c := range cmds {
		if c.Err() != nil {
			werrs = append(werrs, sluice.WriteError{Index: i, Err: fmt.Errorf("on %s: %w", addrOf(s.client), writeError(s.cfg.deadLetter, c.Err()))})
		}
	}
	s.ackWritten(ctx, letters, cmds)
	if len(werrs) > 0 {
		s.log.Error("redisstream: Redis refused dead letters; their entries stay pending and the letters are written again",
			"failed", len(werrs), "of", len(letters), "err", werrs[0].Err)
		return werrs
	}
	return nil
}

// ackWritten acknowledges the entries whose dead-letter XADD Redis
// confirmed, when they were read by a [Source] on this sink's
// *redis.Client. A failure is only logged: the pipeline acknowledges the
// entries itself.
func (s *Sink) ackWritten(ctx context.Context, letters []sluice.DeadLetter, cmds []*redis.StringCmd) {
	if _, single := s.client.(*redis.Client); !single {
		return
	}
	var acks map[ackKey][]string
	for i, d := range letters {
		t, ok := d.Msg.Token.(*token)
		if !ok || t.src.client != s.client || d.Msg.Origin.ID == "" || cmds[i].Err() != nil {
			continue
		}
		if acks == nil {
			acks = make(map[ackKey][]string)
		}
		k := ackKey{t.src.stream, t.src.group}
		acks[k] = append(acks[k], d.Msg.Origin.ID)
	}
	if len(acks) == 0 {
		return
	}
	pipe := s.client.Pipeline()
	for k, ids := range acks {
		pipe.XAck(ctx, k.stream, k.group, ids...)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		s.log.Warn("redisstream: XACK after writing dead letters failed; the entries will be acknowledged by the source", "err", err)
	}
}

// Ready implements [sluice.Readier]: it returns nil when the server answers
// PING.
func (s *Sink) Ready(ctx context.Context) error {
	if err := s.client.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redisstream: sink %q: PING %s: %w", s.stream, addrOf(s.client), err)
	}
	return nil
}

// Close closes the client if the sink built it.
func (s *Sink) Close() error {
	if s.owned {
		return s.client.Close()
	}
	return nil
}
