package sluice_test

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/sluicehq/sluice"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func quiet() sluice.Option {
	return sluice.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))
}

// start runs p in the background and returns a channel with Run's result.
func start(t *testing.T, ctx context.Context, p *sluice.Pipeline) <-chan error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	return done
}

func wait[T any](t *testing.T, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(20 * time.Second):
		t.Fatal("timed out waiting")
		panic("unreachable")
	}
}

func within(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// gated is an enricher whose calls block until the test releases them by
// event value; it reports each start on started.
type gated struct {
	started chan string
	mu      sync.Mutex
	gates   map[string]chan error
}

func newGated() *gated {
	return &gated{started: make(chan string, 1024), gates: map[string]chan error{}}
}

func (g *gated) gate(v string) chan error {
	g.mu.Lock()
	defer g.mu.Unlock()
	ch, ok := g.gates[v]
	if !ok {
		ch = make(chan error, 1)
		g.gates[v] = ch
	}
	return ch
}

func (g *gated) release(v string, err error) { g.gate(v) <- err }

func (g *gated) Enrich(ctx context.Context, in *sluice.Message) (*sluice.Message, error) {
	v := string(in.Value)
	g.started <- v
	select {
	case err := <-g.gate(v):
		if err != nil {
			return nil, err
		}
		return in.WithValue([]byte(strings.ToUpper(v))), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// ackSpy counts acked messages and signals every Ack call.
type ackSpy struct {
	inner sluice.Acker
	n     atomic.Int64
	calls chan int
}

func newAckSpy(inner sluice.Acker) *ackSpy {
	return &ackSpy{inner: inner, calls: make(chan int, 1024)}
}

func (a *ackSpy) Ack(ctx context.Context, msgs []*sluice.Message) error {
	if err := a.inner.Ack(ctx, msgs); err != nil {
		return err
	}
	a.calls <- int(a.n.Add(int64(len(msgs))))
	return nil
}

func (a *ackSpy) waitAcked(t *testing.T, n int) {
	t.Helper()
	for int(a.n.Load()) < n {
		wait(t, a.calls)
	}
}
