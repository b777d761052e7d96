package redisstream_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/testutil"
	"github.com/sluicehq/sluice/redisstream"
)

// fakeServer is a tiny RESP2 server that reports a given redis_version in
// INFO, answers PING, refuses HELLO (so clients fall back to RESP2) and
// records every other command, which it refuses.
type fakeServer struct {
	ln      net.Listener
	version string
	wg      sync.WaitGroup

	mu    sync.Mutex
	other []string
}

func startFakeServer(t *testing.T, version string) *fakeServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeServer{ln: ln, version: version}
	f.wg.Add(1)
	go f.accept()
	t.Cleanup(func() {
		_ = ln.Close()
		f.wg.Wait()
	})
	return f
}

func (f *fakeServer) addr() string { return f.ln.Addr().String() }

func (f *fakeServer) accept() {
	defer f.wg.Done()
	var conns sync.WaitGroup
	defer conns.Wait()
	var mu sync.Mutex
	var open []net.Conn
	defer func() {
		mu.Lock()
		for _, c := range open {
			_ = c.Close()
		}
		mu.Unlock()
	}()
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return
		}
		mu.Lock()
		open = append(open, c)
		mu.Unlock()
		conns.Add(1)
		go func() {
			defer conns.Done()
			f.serve(c)
		}()
	}
}

func (f *fakeServer) serve(c net.Conn) {
	defer c.Close()
	r := bufio.NewReader(c)
	for {
		args, err := readCommand(r)
		if err != nil {
			return
		}
		var reply string
		switch strings.ToUpper(args[0]) {
		case "PING":
			reply = "+PONG\r\n"
		case "HELLO":
			reply = "-ERR unknown command 'HELLO'\r\n"
		case "CLIENT", "SELECT":
			reply = "+OK\r\n"
		case "INFO":
			info := "# Server\r\nredis_version:" + f.version + "\r\nredis_mode:standalone\r\n"
			reply = fmt.Sprintf("$%d\r\n%s\r\n", len(info), info)
		default:
			f.mu.Lock()
			f.other = append(f.other, strings.Join(args, " "))
			f.mu.Unlock()
			reply = "-ERR the fake server does not serve " + args[0] + "\r\n"
		}
		if _, err := io.WriteString(c, reply); err != nil {
			return
		}
	}
}

func (f *fakeServer) others() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.other...)
}

// readCommand reads one RESP array of bulk strings.
func readCommand(r *bufio.Reader) ([]string, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return nil, err
	}
	if !strings.HasPrefix(line, "*") {
		return nil, fmt.Errorf("not an array: %q", line)
	}
	n, err := strconv.Atoi(strings.TrimSpace(line[1:]))
	if err != nil || n < 1 {
		return nil, fmt.Errorf("bad array header %q", line)
	}
	args := make([]string, n)
	for i := range args {
		h, err := r.ReadString('\n')
		if err != nil {
			return nil, err
		}
		size, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(h, "$")))
		if err != nil {
			return nil, fmt.Errorf("bad bulk header %q", h)
		}
		buf := make([]byte, size+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return nil, err
		}
		args[i] = string(buf[:size])
	}
	return args, nil
}

// TestRefusesRedisBelow7 checks that NewSource refuses a Redis 6.2 server
// at once, with an error that says what is wrong and what to do, and before
// it changes anything on the server.
func TestRefusesRedisBelow7(t *testing.T) {
	f := startFakeServer(t, "6.2.14")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := redisstream.NewSource(ctx, "in", "g", redisstream.WithAddr(f.addr()), redisstream.WithLogger(testutil.Quiet()))
	if err == nil || ctx.Err() != nil {
		t.Fatalf("NewSource on Redis 6.2.14: %v, want an immediate error", err)
	}
	msg := err.Error()
	for _, want := range []string{"6.2.14", "7.0", "upgrade", f.addr()} {
		if !strings.Contains(msg, want) {
			t.Errorf("%q does not mention %q", msg, want)
		}
	}
	if !errors.Is(err, redisstream.ErrUnsupportedServer) {
		t.Errorf("%v does not match ErrUnsupportedServer", err)
	}
	if o := f.others(); len(o) > 0 {
		t.Errorf("commands sent to the 6.2 server besides PING and INFO: %q", o)
	}
}

// TestAcceptsRedis7 checks that the version check parses newer versions,
// including two-digit parts, and lets them through to the next command.
func TestAcceptsRedis7(t *testing.T) {
	for _, v := range []string{"7.0.0", "7.2.4", "10.0.1"} {
		f := startFakeServer(t, v)
		_, err := redisstream.NewSource(ctxT(t, 10*time.Second), "in", "g", redisstream.WithAddr(f.addr()), redisstream.WithLogger(testutil.Quiet()))
		if err == nil || errors.Is(err, redisstream.ErrUnsupportedServer) || !strings.Contains(err.Error(), "XGROUP") {
			t.Errorf("NewSource on %s: %v, want it to pass the version check and fail on XGROUP (the fake serves no streams)", v, err)
		}
	}
}
