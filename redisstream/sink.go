package redisstream

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"

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
	pipe := s.client.Pipeline()
	cmds := make([]*redis.StringCmd, len(msgs))
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
		cmds[i] = pipe.XAdd(ctx, &redis.XAddArgs{Stream: s.stream, MaxLen: s.cfg.maxLen, Approx: true, Values: fields})
	}
	if n := pipe.Len(); n > 0 {
		if _, err := pipe.Exec(ctx); err != nil {
			if !isServerError(err) {
				return fmt.Errorf("redisstream: XADD of %d entries to %q on %s: %w", n, s.stream, addrOf(s.client), err)
			}
			for i, c := range cmds {
				if c != nil && c.Err() != nil {
					werrs = append(werrs, sluice.WriteError{Index: i, Err: fmt.Errorf("redisstream: XADD to %q: %w", s.stream, c.Err())})
				}
			}
		}
	}
	if len(werrs) > 0 {
		slices.SortFunc(werrs, func(a, b sluice.WriteError) int { return cmp.Compare(a.Index, b.Index) })
		return werrs
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
// that the pipeline writes it again and does not acknowledge its entry.
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
	_, err := pipe.Exec(ctx)
	if err != nil && !isServerError(err) {
		// The connection failed: no reply can be trusted, and the
		// pipeline writes the whole batch again.
		return fmt.Errorf("redisstream: XADD of %d dead letters to %q on %s: %w", len(letters), s.cfg.deadLetter, addrOf(s.client), err)
	}
	var werrs sluice.WriteErrors
	for i, c := range cmds {
		if c.Err() != nil {
			werrs = append(werrs, sluice.WriteError{Index: i, Err: fmt.Errorf("redisstream: XADD to %q on %s: %w", s.cfg.deadLetter, addrOf(s.client), c.Err())})
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
