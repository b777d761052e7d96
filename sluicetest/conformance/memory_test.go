package conformance_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/sluicetest"
	"github.com/sluicehq/sluice/sluicetest/conformance"
)

// TestConformanceMemory runs the suite against the in-memory parts of
// package sluicetest, wired to a tiny in-memory broker.
//
// With CONFORMANCE_MEMORY_BUG set it runs against a broker with that bug
// planted instead, for TestSuiteCatchesBugs.
func TestConformanceMemory(t *testing.T) {
	b := newMemBroker()
	b.bug = os.Getenv(bugEnv)
	h := conformance.Harness{
		Name:          "memory",
		NewTopic:      b.newTopic,
		Publish:       b.publish,
		NewSource:     b.newSource,
		NewSink:       b.newSink,
		ReadAll:       b.readAll,
		RestartServer: b.restart,
	}
	if b.bug != "" {
		h.Timeout = 2 * time.Second
		h.DrainTimeout = 100 * time.Millisecond
	}
	conformance.Run(t, h)
}

const bugEnv = "CONFORMANCE_MEMORY_BUG"

// TestSuiteCatchesBugs plants one adapter bug at a time in the memory
// broker and checks that the subtest meant to catch it fails, saying why.
func TestSuiteCatchesBugs(t *testing.T) {
	if os.Getenv(bugEnv) != "" {
		t.Skip("running as a child")
	}
	if testing.Short() {
		t.Skip("runs the suite in child processes")
	}
	cases := []struct{ bug, subtest, want string }{
		{"ack-on-fetch", "OutOfOrderAck", "2 events of 200 missing"},
		{"ack-on-fetch", "CrashRestart", "missing from"},
		{"no-origin-headers", "PublishConsume", "lacks origin headers"},
		{"dlq-not-binary-safe", "DeadLetters", "want the input's bytes"},
		{"dlq-no-headers", "DeadLetters", "lacks the input's header"},
		{"lag-off-by-one", "Lag", "lag did not reach 0"},
		{"fetch-ignores-close", "PublishConsume", "Fetch after Close blocked"},
		{"resume-ignored", "PauseResume", "missing from"},
		// The pipeline dies on the failed fetch either before every event
		// is out (stopped while waiting) or after (Run's error at the
		// cancellation): both name the fetch error.
		{"fetch-fails-after-restart", "ServerRestart", "Run returned sluice: fetch: memory source: connection reset by peer"},
		{"no-claim-for-other-member", "Redelivery", "missing from"},
		{"dlq-lost", "DeadLetters", "missing from"},
		{"crash-commits-everything", "CrashRestart", "100 events of 200 missing"},
		{"source-leaks-goroutine", "CloseWhileBusy", "still running 2s after it was closed"},
		{"second-member-starves", "GroupSplit", "the group did not share the work"},
	}
	for _, c := range cases {
		t.Run(c.bug+"/"+c.subtest, func(t *testing.T) {
			t.Parallel() // the children mostly wait for their timeouts
			cmd := exec.Command(os.Args[0], "-test.run", "^TestConformanceMemory$/^"+c.subtest+"$", "-test.count=1")
			cmd.Env = append(os.Environ(), bugEnv+"="+c.bug)
			out, err := cmd.CombinedOutput()
			if err == nil {
				t.Fatalf("the suite passed with bug %s planted:\n%s", c.bug, out)
			}
			if !strings.Contains(string(out), c.want) {
				t.Fatalf("the suite failed with bug %s planted, but without %q:\n%s", c.bug, c.want, out)
			}
		})
	}
}

// memBroker is an in-memory broker for the suite: topics hold logs, every
// consumer group of a topic is one sluicetest.Source that receives every
// event published to the topic, and the members of a group share it.
// Opening a member makes the group go back to its committed offsets, like
// a rebalance, so its unacked events are delivered again.
type memBroker struct {
	mu     sync.Mutex
	n      int
	topics map[string]*memTopic
	// failWrites makes the next writes fail, after a simulated restart.
	failWrites atomic.Int32
	// bug names a planted bug, for TestSuiteCatchesBugs.
	bug       string
	restarted atomic.Bool
}

type memTopic struct {
	name    string
	parts   int
	ref     *sluicetest.Source // assigns origins the way a group source will
	log     []*sluice.Message
	groups  map[string]*sluicetest.Source
	members map[string]string  // group → last member opened
	sinks   []*sluicetest.Sink // sinks writing enriched events here
	dlqs    []*sluicetest.Sink // sinks writing dead letters here
}

func newMemBroker() *memBroker { return &memBroker{topics: map[string]*memTopic{}} }

func (b *memBroker) newTopic(t *testing.T, partitions int) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.n++
	name := fmt.Sprintf("%s-%d", strings.ReplaceAll(t.Name(), "/", "."), b.n)
	b.topics[name] = &memTopic{name: name, parts: partitions, ref: sluicetest.NewSource(name, partitions), groups: map[string]*sluicetest.Source{}, members: map[string]string{}}
	b.topics[name].ref.End()
	return name
}

func (b *memBroker) topic(t *testing.T, name string) *memTopic {
	t.Helper()
	tp := b.topics[name]
	if tp == nil {
		t.Fatalf("memory broker: no topic %q", name)
	}
	return tp
}

func (b *memBroker) publish(t *testing.T, topic string, msgs []*sluice.Message) {
	b.mu.Lock()
	defer b.mu.Unlock()
	tp := b.topic(t, topic)
	for _, m := range msgs {
		o := tp.ref.Publish(m.Key, m.Value, m.Headers...)
		tp.log = append(tp.log, &sluice.Message{Key: m.Key, Value: m.Value, Headers: m.Headers, Origin: o})
		for _, g := range tp.groups {
			g.Publish(m.Key, m.Value, m.Headers...)
		}
	}
}

func (b *memBroker) newSource(t *testing.T, topic, group, member string) sluice.Source {
	b.mu.Lock()
	defer b.mu.Unlock()
	tp := b.topic(t, topic)
	g := tp.groups[group]
	if g == nil {
		g = sluicetest.NewSource(topic, tp.parts)
		for _, m := range tp.log {
			g.Publish(m.Key, m.Value, m.Headers...)
		}
		tp.groups[group] = g
	} else if b.bug != "no-claim-for-other-member" || tp.members[group] == member {
		g.Restart()
	}
	tp.members[group] = member
	ctx, cancel := context.WithCancel(context.Background())
	s := &memSource{b: b, g: g, life: ctx, kill: cancel, starve: b.bug == "second-member-starves" && member == "member-2"}
	if b.bug == "source-leaks-goroutine" {
		go func() { <-t.Context().Done() }() // outlives Close
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func (b *memBroker) newSink(t *testing.T, out, dlq string) sluice.Sink {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := sluicetest.NewSink()
	s.WriteHook = func(context.Context, []*sluice.Message) error {
		if b.failWrites.Add(-1) >= 0 {
			return errors.New("memory broker: not available while restarting")
		}
		return nil
	}
	b.topic(t, out).sinks = append(b.topic(t, out).sinks, s)
	b.topic(t, dlq).dlqs = append(b.topic(t, dlq).dlqs, s)
	return s
}

func (b *memBroker) readAll(t *testing.T, topic string) []*sluice.Message {
	b.mu.Lock()
	defer b.mu.Unlock()
	tp := b.topic(t, topic)
	var out []*sluice.Message
	for _, m := range tp.log {
		c := *m
		out = append(out, &c)
	}
	next := func(m *sluice.Message) {
		m.Origin = sluice.Origin{Topic: topic, Offset: int64(len(out))}
		out = append(out, m)
	}
	for _, s := range tp.sinks {
		for _, m := range s.Messages() {
			hs := append([]sluice.Header(nil), m.Headers...)
			if b.bug != "no-origin-headers" {
				hs = sluice.AppendOriginHeaders(hs, m.Origin)
			}
			next(&sluice.Message{Key: m.Key, Value: m.Value, Headers: hs})
		}
	}
	for _, s := range tp.dlqs {
		for _, d := range s.DeadLetters() {
			v, hs := d.Msg.Value, d.Headers()
			switch b.bug {
			case "dlq-not-binary-safe":
				v = []byte(strings.ToValidUTF8(string(v), "?"))
			case "dlq-no-headers":
				hs = hs[len(d.Msg.Headers):]
			case "dlq-lost":
				continue
			}
			next(&sluice.Message{Key: d.Msg.Key, Value: v, Headers: hs})
		}
	}
	return out
}

// restart simulates a broker restart: every group goes back to its
// committed offsets and acks of earlier deliveries are lost, and the next
// two writes fail.
func (b *memBroker) restart(t *testing.T) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, tp := range b.topics {
		for _, g := range tp.groups {
			g.Restart()
		}
	}
	b.failWrites.Store(2)
	b.restarted.Store(true)
}

// memSource is one member's view of a group: closing it affects only this
// member, and a Fetch blocked in the shared group source returns when the
// member is closed.
type memSource struct {
	b    *memBroker
	g    *sluicetest.Source
	life context.Context
	kill context.CancelFunc

	mu     sync.Mutex
	paused bool
	failed bool
	starve bool // Fetch never returns anything
}

var errMemberClosed = fmt.Errorf("memory source: member closed: %w", sluice.ErrSourceClosed)

func (s *memSource) Fetch(ctx context.Context, max int) ([]*sluice.Message, error) {
	switch s.b.bug {
	case "fetch-ignores-close":
		return s.g.Fetch(ctx, max)
	case "second-member-starves":
		if s.starve {
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-s.life.Done():
				return nil, errMemberClosed
			}
		}
	case "resume-ignored":
		s.mu.Lock()
		paused := s.paused
		s.mu.Unlock()
		if paused {
			select { // the adapter never starts fetching again
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-s.life.Done():
				return nil, errMemberClosed
			}
		}
	case "fetch-fails-after-restart":
		s.mu.Lock()
		fail := s.b.restarted.Load() && !s.failed
		s.failed = s.failed || fail
		s.mu.Unlock()
		if fail {
			return nil, errors.New("memory source: connection reset by peer")
		}
	}
	if s.life.Err() != nil {
		return nil, errMemberClosed
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(s.life, cancel)
	defer stop()
	msgs, err := s.g.Fetch(ctx, max)
	if s.life.Err() != nil {
		return nil, errMemberClosed // what it fetched stays unacked
	}
	if s.b.bug == "ack-on-fetch" && len(msgs) > 0 {
		if err := s.g.Ack(ctx, msgs); err != nil {
			return nil, err
		}
	}
	return msgs, err
}

func (s *memSource) Ack(ctx context.Context, msgs []*sluice.Message) error {
	if s.b.bug == "ack-on-fetch" {
		return nil
	}
	if s.life.Err() != nil {
		return errMemberClosed
	}
	return s.g.Ack(ctx, msgs)
}

func (s *memSource) Close() error {
	if s.b.bug == "crash-commits-everything" {
		s.commitAll()
	}
	s.kill()
	return nil
}

// commitAll acks everything published so far, finished or not, like an
// adapter that commits the last fetched offset when it closes.
func (s *memSource) commitAll() {
	// The group source does not expose what is in flight, so this
	// re-fetches and acks everything, which commits at least as much.
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // Fetch returns what is there without waiting
	s.g.Restart()
	for {
		msgs, _ := s.g.Fetch(ctx, 1<<20)
		if len(msgs) == 0 {
			return
		}
		_ = s.g.Ack(context.Background(), msgs)
	}
}

func (s *memSource) Pause() {
	s.mu.Lock()
	s.paused = true
	s.mu.Unlock()
	s.g.Pause()
}

func (s *memSource) Resume() {
	s.mu.Lock()
	if s.b.bug != "resume-ignored" {
		s.paused = false
	}
	s.mu.Unlock()
	s.g.Resume()
}

func (s *memSource) Lag(ctx context.Context) (sluice.Lag, error) {
	l, err := s.g.Lag(ctx)
	if s.b.bug == "lag-off-by-one" {
		l.Total++
	}
	return l, err
}

func (s *memSource) Ready(ctx context.Context) error {
	if s.life.Err() != nil {
		return errMemberClosed
	}
	return s.g.Ready(ctx)
}
