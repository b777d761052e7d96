package redisstream_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sluicehq/sluice/internal/testutil"
	"github.com/sluicehq/sluice/redisstream"
)

// TestNewSourceCreatesGroup reproduces the race between starting a source
// and its first Fetch: with WithStartAt(Newest), an entry published after
// NewSource returned must be delivered, so NewSource has to create the group
// (at "$") before it returns.
func TestNewSourceCreatesGroup(t *testing.T) {
	c := newClient(t)
	ctx := ctxT(t, 30*time.Second)
	in := uniq(t, c, "in")
	add(t, c, in, []any{"payload", "before"}) // before the group: not for it
	src := newSource(t, in, "g", redisstream.WithClient(c), redisstream.WithStartAt(redisstream.Newest))
	groups, err := c.XInfoGroups(ctx, in).Result()
	if err != nil || len(groups) != 1 || groups[0].Name != "g" {
		t.Fatalf("groups after NewSource: %+v, %v; want group g", groups, err)
	}
	if err := src.Ready(ctx); err != nil {
		t.Fatalf("Ready: %v", err)
	}
	id := add(t, c, in, []any{"payload", "after"})[0]
	short, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	msgs, err := src.Fetch(short, 10)
	if err != nil {
		t.Fatalf("Fetch of the entry published after NewSource: %v (it was skipped)", err)
	}
	if len(msgs) != 1 || msgs[0].Origin.ID != id || string(msgs[0].Value) != "after" {
		t.Errorf("Fetch: %v, want just %s", idsOf(msgs), id)
	}
}

// ownServer starts a redis-server of the test's own on a Unix socket, for
// tests that stop it. It returns a client and a function that kills the
// server and waits for it to exit.
func ownServer(t *testing.T) (*redis.Client, func()) {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		msg := "no redis-server binary in PATH"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	dir := t.TempDir()
	sock := filepath.Join(dir, "redis.sock")
	cmd := exec.Command(bin, "--port", "0", "--unixsocket", sock, "--save", "", "--appendonly", "no", "--dir", dir)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}
	t.Cleanup(stop)
	c := redis.NewClient(&redis.Options{Network: "unix", Addr: sock, MaxRetries: -1, DialTimeout: time.Second})
	t.Cleanup(func() { _ = c.Close() })
	testutil.WaitFor(t, 30*time.Second, "the own redis-server", func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		err := c.Ping(ctx).Err()
		return err == nil, errString(err)
	})
	return c, stop
}

// TestRedisDown checks that Lag and Ready report an error once the server
// is gone, so that the pipeline's health turns degraded.
func TestRedisDown(t *testing.T) {
	c, stop := ownServer(t)
	ctx := ctxT(t, 30*time.Second)
	src := newSource(t, "in", "g", redisstream.WithClient(c))
	add(t, c, "in", []any{"payload", "1"})
	if err := src.Ack(ctx, fetchN(t, src, 1)); err != nil {
		t.Fatal(err)
	}
	if err := src.Ready(ctx); err != nil {
		t.Fatalf("Ready with the server up: %v", err)
	}
	if l, err := src.Lag(ctx); err != nil || l.Total != 0 {
		t.Fatalf("Lag with the server up: %+v, %v", l, err)
	}
	stop()
	if l, err := src.Lag(ctx); err == nil || l.Total != -1 {
		t.Errorf("Lag with the server down: %+v, %v; want an error and -1", l, err)
	}
	err := src.Ready(ctx)
	if err == nil {
		t.Fatal("Ready with the server down: nil")
	}
	if errors.Is(err, redisstream.ErrNotReady) || !strings.Contains(err.Error(), "PING") {
		t.Errorf("Ready with the server down: %v, want the PING failure", err)
	}
}
