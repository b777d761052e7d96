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

// NewSink returns a sink that appends to stream. It does no I/O.
func NewSink(stream string, opts ...Option) (*Sink, error) {
	cfg, err := newConfig(opts)
	if stream == "" {
		err = errors.Join(err, fmt.Errorf("%w: redisstream.NewSink: stream name is empty", sluice.ErrInvalidConfig))
	}
	if err != nil {
		return nil, err
	}
	client, owned := cfg.connect()
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
// JSON object, is refused with a [sluice.Permanent] error in a
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

// ackKey is a source stream and group whose entries a dead-letter
// transaction acknowledges.
type ackKey struct{ stream, group string }

// WriteDeadLetters implements [sluice.DeadLetterWriter]: one XADD per letter
// to the dead-letter stream with the original payload (or field map), the
// original fields, and the headers of [sluice.DeadLetter.Headers]
// (failure_reason, failure_attempts, failure_time, source_stream, source_id).
//
// When letters come from a [Source] that uses the very same *redis.Client as
// this sink, the XADDs and the XACKs of those entries go in one MULTI/EXEC,
// so that a crash cannot leave an entry both dead-lettered and pending. The
// pipeline acknowledges the entries afterwards as usual; that second XACK is
// harmless.
func (s *Sink) WriteDeadLetters(ctx context.Context, letters []sluice.DeadLetter) error {
	if len(letters) == 0 {
		return nil
	}
	var acks map[ackKey][]string
	if _, single := s.client.(*redis.Client); single {
		for _, d := range letters {
			t, ok := d.Msg.Token.(*token)
			if !ok || t.src.client != s.client || d.Msg.Origin.ID == "" {
				continue
			}
			if acks == nil {
				acks = make(map[ackKey][]string)
			}
			k := ackKey{t.src.stream, t.src.group}
			acks[k] = append(acks[k], d.Msg.Origin.ID)
		}
	}
	var pipe redis.Pipeliner
	if acks != nil {
		pipe = s.client.TxPipeline()
	} else {
		pipe = s.client.Pipeline()
	}
	cmds := make([]*redis.StringCmd, len(letters))
	for i, d := range letters {
		cmds[i] = pipe.XAdd(ctx, &redis.XAddArgs{Stream: s.cfg.deadLetter, Values: s.codec.deadLetterFields(d)})
	}
	for k, ids := range acks {
		pipe.XAck(ctx, k.stream, k.group, ids...)
	}
	_, err := pipe.Exec(ctx)
	if err == nil {
		return nil
	}
	if !isServerError(err) || redis.IsExecAbortError(err) {
		return fmt.Errorf("redisstream: XADD of %d dead letters to %q on %s: %w", len(letters), s.cfg.deadLetter, addrOf(s.client), err)
	}
	var werrs sluice.WriteErrors
	for i, c := range cmds {
		if c.Err() != nil {
			werrs = append(werrs, sluice.WriteError{Index: i, Err: fmt.Errorf("redisstream: XADD to %q: %w", s.cfg.deadLetter, c.Err())})
		}
	}
	if len(werrs) == 0 {
		// Only an XACK failed: the letters are written, and the
		// pipeline's own Ack will acknowledge the entries.
		s.log.Warn("redisstream: XACK in the dead-letter transaction failed; the entries will be acknowledged by the source", "err", err)
		return nil
	}
	if acks != nil {
		s.log.Error("redisstream: dead-letter XADD failed inside the transaction that also acknowledged the entries; they stay in memory and are written again",
			"failed", len(werrs), "err", werrs[0].Err)
	}
	return werrs
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
