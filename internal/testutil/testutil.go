// Package testutil holds the helpers that the tests of several packages
// share. Only test files import it.
package testutil

import (
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// Quiet returns a logger that discards everything.
func Quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

// Logger returns a logger for t: with -v, warnings and errors go to t.Log
// (and nothing after the test ended); otherwise it discards everything.
func Logger(t testing.TB) *slog.Logger {
	if !testing.Verbose() {
		return Quiet()
	}
	w := &tlog{t: t}
	t.Cleanup(w.end)
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type tlog struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *tlog) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func (w *tlog) end() {
	w.mu.Lock()
	w.done = true
	w.mu.Unlock()
}

var _ io.Writer = (*tlog)(nil)

// WaitFor polls cond every 20ms until it holds, and fails t if within
// passes first, naming what it waited for and the last state cond
// described.
func WaitFor(t testing.TB, within time.Duration, what string, cond func() (ok bool, state string)) {
	t.Helper()
	deadline := time.Now().Add(within)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			if state != "" {
				t.Fatalf("timed out after %s waiting for %s (%s)", within, what, state)
			}
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		<-tick.C
	}
}

// Eventually is [WaitFor] for a condition with no state to report.
func Eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	WaitFor(t, within, what, func() (bool, string) { return cond(), "" })
}
