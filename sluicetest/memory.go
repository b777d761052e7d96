// Package sluicetest provides in-memory parts and a fake clock for testing
// sluice pipelines and enrichers without a broker, the way net/http/httptest
// serves HTTP tests.
//
// [Source] behaves like a partitioned, offset-based log with a consumer group
// of one: it commits only the contiguous prefix of acked offsets, supports
// pause, lag and readiness, and can simulate a crash and restart. [Sink]
// records what was written and dead-lettered and can be told to fail.
package sluicetest

import (
	"context"
	"fmt"
	"hash/fnv"
	"slices"
	"sync"
	"time"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/internal/offsets"
)

// Source is an in-memory, partitioned [sluice.Source] that also implements
// [sluice.Acker], [sluice.Pauser], [sluice.LagReporter] and [sluice.Readier].
// Its methods are safe for concurrent use.
type Source struct {
	topic string

	mu      sync.Mutex
	parts   []*part
	rr      int // next partition for a nil key
	fr      int // first partition of the next fetch
	ended   bool
	closed  bool
	paused  bool
	avail   chan struct{} // closed and replaced when messages arrive or state changes
	fetches int
	badFet  int
	pauses  int
	acks    int
	gen     int // bumped by Restart; acks from older generations are ignored
}

type part struct {
	log       []*sluice.Message
	pos       int64 // next offset to fetch
	tracker   *offsets.Partition
	committed int64
}

// NewSource returns a source over topic with the given number of partitions
// (at least 1).
func NewSource(topic string, partitions int) *Source {
	s := &Source{topic: topic, avail: make(chan struct{})}
	for range max(partitions, 1) {
		s.parts = append(s.parts, &part{tracker: offsets.NewPartition(0)})
	}
	return s
}

// Publish appends an event. A nil key spreads events over the partitions in
// turn; other keys are hashed. It returns the event's origin.
func (s *Source) Publish(key, value []byte, headers ...sluice.Header) sluice.Origin {
	s.mu.Lock()
	defer s.mu.Unlock()
	var p int
	if key == nil {
		p = s.rr % len(s.parts)
		s.rr++
	} else {
		h := fnv.New32a()
		h.Write(key)
		p = int(h.Sum32() % uint32(len(s.parts)))
	}
	pt := s.parts[p]
	o := sluice.Origin{Topic: s.topic, Partition: int32(p), Offset: int64(len(pt.log))}
	pt.log = append(pt.log, &sluice.Message{
		Key: key, Value: value, Headers: headers, Origin: o, Timestamp: time.Unix(0, 0).UTC(),
	})
	s.wake()
	return o
}

// End makes Fetch return [sluice.ErrSourceClosed] once every published event
// has been fetched, so that a pipeline's Run returns after processing them.
func (s *Source) End() {
	s.mu.Lock()
	s.ended = true
	s.wake()
	s.mu.Unlock()
}

func (s *Source) wake() {
	close(s.avail)
	s.avail = make(chan struct{})
}

// Fetch implements [sluice.Source]: it returns up to max events, taking from
// each partition in turn, and blocks while none is available.
func (s *Source) Fetch(ctx context.Context, max int) ([]*sluice.Message, error) {
	s.mu.Lock()
	s.fetches++
	if s.paused {
		s.badFet++
	}
	s.mu.Unlock()
	for {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return nil, sluice.ErrSourceClosed
		}
		var out []*sluice.Message
		for i := 0; i < len(s.parts) && len(out) < max; i++ {
			pt := s.parts[(s.fr+i)%len(s.parts)]
			for len(out) < max && pt.pos < int64(len(pt.log)) {
				m := *pt.log[pt.pos]
				m.Token = s.gen
				if err := pt.tracker.Deliver(pt.pos); err != nil {
					s.mu.Unlock()
					return out, err
				}
				pt.pos++
				out = append(out, &m)
			}
		}
		s.fr++
		if len(out) > 0 {
			s.mu.Unlock()
			return out, nil
		}
		if s.ended {
			s.mu.Unlock()
			return nil, sluice.ErrSourceClosed
		}
		ch := s.avail
		s.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// Ack implements [sluice.Acker]: it marks the events done and moves each
// partition's committed offset over the contiguous prefix of done events.
// Acks for events fetched before the last Restart are ignored, like commits
// from a consumer that lost its partitions.
func (s *Source) Ack(_ context.Context, msgs []*sluice.Message) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range msgs {
		if m.Token != s.gen {
			continue
		}
		p := m.Origin.Partition
		if p < 0 || int(p) >= len(s.parts) {
			return fmt.Errorf("sluicetest: ack for unknown partition %d", p)
		}
		pt := s.parts[p]
		if !pt.tracker.Done(m.Origin.Offset) {
			return fmt.Errorf("sluicetest: ack for %s, which is not in flight (acked twice?)", m.Origin)
		}
		pt.committed = pt.tracker.CommitPoint()
		s.acks++
	}
	return nil
}

// Committed returns the committed offset of partition p: every event below
// it is done.
func (s *Source) Committed(p int) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.parts[p].committed
}

// Restart simulates a consumer crash and restart: every partition goes back
// to its committed offset, so unacked events are delivered again, and acks
// for events fetched before are ignored.
func (s *Source) Restart() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gen++
	for _, pt := range s.parts {
		pt.pos = pt.committed
		pt.tracker = offsets.NewPartition(pt.committed)
	}
	s.closed = false
	s.wake()
}

// Pause implements [sluice.Pauser].
func (s *Source) Pause() {
	s.mu.Lock()
	if !s.paused {
		s.pauses++
	}
	s.paused = true
	s.mu.Unlock()
}

// Resume implements [sluice.Pauser].
func (s *Source) Resume() {
	s.mu.Lock()
	s.paused = false
	s.wake()
	s.mu.Unlock()
}

// Paused reports whether the source is paused.
func (s *Source) Paused() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.paused
}

// Pauses counts calls to Pause that paused a running source.
func (s *Source) Pauses() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pauses
}

// FetchesWhilePaused counts Fetch calls made while paused. A pipeline should
// make none.
func (s *Source) FetchesWhilePaused() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.badFet
}

// Lag implements [sluice.LagReporter]: published minus committed, per
// partition.
func (s *Source) Lag(context.Context) (sluice.Lag, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := sluice.Lag{ByPartition: make(map[string]int64, len(s.parts))}
	for i, pt := range s.parts {
		n := int64(len(pt.log)) - pt.committed
		l.ByPartition[fmt.Sprintf("%s/%d", s.topic, i)] = n
		l.Total += n
	}
	return l, nil
}

// Ready implements [sluice.Readier]; the source is ready until closed.
func (s *Source) Ready(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return sluice.ErrSourceClosed
	}
	return nil
}

// Close implements [sluice.Source]. Blocked and later Fetch calls return
// [sluice.ErrSourceClosed].
func (s *Source) Close() error {
	s.mu.Lock()
	s.closed = true
	s.wake()
	s.mu.Unlock()
	return nil
}

// Sink is an in-memory [sluice.Sink] and [sluice.DeadLetterWriter]. Set
// WriteHook or DeadLetterHook before the pipeline starts to inject failures
// or block writes. Its methods are safe for concurrent use.
type Sink struct {
	// WriteHook, if set, runs before each Write; an error fails the write
	// and nothing of it is recorded.
	WriteHook func(ctx context.Context, msgs []*sluice.Message) error
	// DeadLetterHook, if set, runs before each WriteDeadLetters likewise.
	DeadLetterHook func(ctx context.Context, letters []sluice.DeadLetter) error

	mu      sync.Mutex
	msgs    []*sluice.Message
	letters []sluice.DeadLetter
	writes  int
	changed chan struct{}
}

// NewSink returns an empty sink.
func NewSink() *Sink { return &Sink{changed: make(chan struct{})} }

// Write implements [sluice.Sink]. It records a copy of each message.
func (s *Sink) Write(ctx context.Context, msgs []*sluice.Message) error {
	if s.WriteHook != nil {
		if err := s.WriteHook(ctx, msgs); err != nil {
			return err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range msgs {
		c := *m
		s.msgs = append(s.msgs, &c)
	}
	s.writes++
	s.notify()
	return nil
}

// WriteDeadLetters implements [sluice.DeadLetterWriter].
func (s *Sink) WriteDeadLetters(ctx context.Context, letters []sluice.DeadLetter) error {
	if s.DeadLetterHook != nil {
		if err := s.DeadLetterHook(ctx, letters); err != nil {
			return err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.letters = append(s.letters, letters...)
	s.notify()
	return nil
}

func (s *Sink) notify() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// Messages returns the enriched messages written so far, in write order.
func (s *Sink) Messages() []*sluice.Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.msgs)
}

// DeadLetters returns the dead letters written so far, in write order.
func (s *Sink) DeadLetters() []sluice.DeadLetter {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.letters)
}

// Writes counts successful Write calls.
func (s *Sink) Writes() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.writes
}

// WaitFor blocks until the sink holds at least n messages and dead letters
// together, or ctx is done.
func (s *Sink) WaitFor(ctx context.Context, n int) error {
	for {
		s.mu.Lock()
		have := len(s.msgs) + len(s.letters)
		ch := s.changed
		s.mu.Unlock()
		if have >= n {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("sluicetest: have %d of %d outputs: %w", have, n, ctx.Err())
		}
	}
}
