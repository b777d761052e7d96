package redisstream_test

// Tests against a server that demands TLS and an ACL user: scripts/redis.sh
// start --secure, whose env file (scripts/redis.sh secure-env) sets the
// REDIS_TLS_* and REDIS_ACL_* variables read here.

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/internal/testutil"
	"github.com/sluicehq/sluice/redisstream"
	"github.com/sluicehq/sluice/sluicetest/conformance"
)

const secureHelp = "no secured Redis server for this integration test: run `scripts/redis.sh start --secure`, then `set -a; . \"$(scripts/redis.sh secure-env)\"; set +a` (scripts/test.sh does both)"

// secureServer is what scripts/redis.sh start --secure reports.
type secureServer struct {
	addr, plain             string // TLS port; plain port of the same server
	caFile, otherCAFile     string
	wrongCertFile, wrongKey string // a certificate for another host name
	user, pass, keyPrefix   string // the ACL user and its key pattern's prefix
}

// secured returns the secured server, or skips the test (fails it when
// CI=true).
func secured(t testing.TB) secureServer {
	t.Helper()
	s := secureServer{
		addr: os.Getenv("REDIS_TLS_ADDR"), plain: os.Getenv("REDIS_TLS_PLAIN_ADDR"),
		caFile: os.Getenv("REDIS_TLS_CA_FILE"), otherCAFile: os.Getenv("REDIS_TLS_OTHER_CA_FILE"),
		wrongCertFile: os.Getenv("REDIS_TLS_WRONG_HOST_CERT_FILE"), wrongKey: os.Getenv("REDIS_TLS_WRONG_HOST_KEY_FILE"),
		user: os.Getenv("REDIS_ACL_USER"), pass: os.Getenv("REDIS_ACL_PASSWORD"),
	}
	keys := os.Getenv("REDIS_ACL_KEYS")
	prefix, glob := strings.CutSuffix(keys, "*")
	s.keyPrefix = prefix
	if s.addr == "" || s.plain == "" || s.caFile == "" || s.otherCAFile == "" || s.wrongCertFile == "" || s.wrongKey == "" ||
		s.user == "" || s.pass == "" || !glob || prefix == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal(secureHelp)
		}
		t.Skip(secureHelp)
	}
	return s
}

// admin is a client of the plain port, as the default user.
func (s secureServer) admin(t testing.TB) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: s.plain})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// name returns a fresh key under the ACL user's key pattern, deleted when
// the test ends.
func (s secureServer) name(t testing.TB, c *redis.Client, what string) string {
	t.Helper()
	var b [6]byte
	_, _ = rand.Read(b[:])
	n := s.keyPrefix + "test:" + what + ":" + hex.EncodeToString(b[:])
	t.Cleanup(func() { _ = c.Del(context.Background(), n).Err() })
	return n
}

func tlsTrusting(t testing.TB, file string) *tls.Config {
	t.Helper()
	pem, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatalf("no certificate in %s", file)
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
}

// TestConformanceSecure runs the conformance suite with every source and
// sink connected over TLS as the ACL user, on streams of its key pattern.
func TestConformanceSecure(t *testing.T) {
	s := secured(t)
	c := s.admin(t)
	conn := []redisstream.Option{redisstream.WithAddr(s.addr), redisstream.WithTLS(tlsTrusting(t, s.caFile)),
		redisstream.WithCredentials(s.user, s.pass)}
	conformance.Run(t, conformanceHarness("redis-tls-acl", c, func(t *testing.T) string { return s.name(t, c, "conf") }, conn))
}

// TestSecureConnectFailures: a wrong password, a CA that did not sign the
// server's certificate, and a certificate for another host name each end
// the constructors promptly with an error that names the cause, and no
// error carries the password.
func TestSecureConnectFailures(t *testing.T) {
	s := secured(t)
	const wrong = "not-the-password-5f3a"
	wrongHost := wrongHostServer(t, s)
	cases := []struct {
		name  string
		conn  []redisstream.Option
		want  string
		check func(error) bool
	}{
		{"WrongPassword", []redisstream.Option{redisstream.WithAddr(s.addr), redisstream.WithTLS(tlsTrusting(t, s.caFile)), redisstream.WithCredentials(s.user, wrong)},
			"WRONGPASS", func(err error) bool { return errors.Is(err, redisstream.ErrAuthentication) }},
		{"UnknownUser", []redisstream.Option{redisstream.WithAddr(s.addr), redisstream.WithTLS(tlsTrusting(t, s.caFile)), redisstream.WithCredentials("nobody-here", wrong)},
			"WRONGPASS", func(err error) bool { return errors.Is(err, redisstream.ErrAuthentication) }},
		{"UnknownCA", []redisstream.Option{redisstream.WithAddr(s.addr), redisstream.WithTLS(tlsTrusting(t, s.otherCAFile)), redisstream.WithCredentials(s.user, s.pass)},
			"certificate signed by unknown authority", func(err error) bool {
				var ua x509.UnknownAuthorityError
				return errors.Is(err, redisstream.ErrTLS) && errors.As(err, &ua)
			}},
		{"WrongHost", []redisstream.Option{redisstream.WithAddr(wrongHost), redisstream.WithTLS(tlsTrusting(t, s.caFile)), redisstream.WithCredentials(s.user, s.pass)},
			"x509: cannot validate certificate for 127.0.0.1", func(err error) bool {
				var he x509.HostnameError
				return errors.Is(err, redisstream.ErrTLS) && errors.As(err, &he)
			}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			check := func(what string, err error) {
				t.Helper()
				if err == nil {
					t.Fatalf("%s: no error", what)
				}
				t.Logf("%s: %v", what, err)
				if !c.check(err) || !strings.Contains(err.Error(), c.want) {
					t.Errorf("%s: error %q does not name the cause %q", what, err, c.want)
				}
				if strings.Contains(err.Error(), wrong) || strings.Contains(err.Error(), s.pass) {
					t.Errorf("%s: the error shows the password", what)
				}
			}
			ctx := ctxT(t, 30*time.Second)
			src := append([]redisstream.SourceOption{redisstream.WithLogger(testutil.Quiet())}, sourceOpts(c.conn)...)
			_, err := redisstream.NewSource(ctx, s.keyPrefix+"never-read", "g", src...)
			check("NewSource", err)
			if ctx.Err() != nil {
				t.Fatal("NewSource waited for the context to end")
			}
			snk := append([]redisstream.SinkOption{redisstream.WithLogger(testutil.Quiet())}, sinkOpts(c.conn)...)
			_, err = redisstream.NewSink(ctx, s.keyPrefix+"never-written", snk...)
			check("NewSink", err)
			if ctx.Err() != nil {
				t.Fatal("NewSink waited for the context to end")
			}
		})
	}
}

func sourceOpts(opts []redisstream.Option) []redisstream.SourceOption {
	out := make([]redisstream.SourceOption, len(opts))
	for i, o := range opts {
		out[i] = o
	}
	return out
}

func sinkOpts(opts []redisstream.Option) []redisstream.SinkOption {
	out := make([]redisstream.SinkOption, len(opts))
	for i, o := range opts {
		out[i] = o
	}
	return out
}

// wrongHostServer serves TLS with the secured mode's certificate for
// another host name (signed by the same CA) on a port of its own, and
// hands each connection to the server's TLS port: the client must refuse
// the certificate before any Redis command. Redis serves one certificate,
// hence this listener.
func wrongHostServer(t testing.TB, s secureServer) string {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(s.wrongCertFile, s.wrongKey)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				// The handshake fails on the client's side; nothing
				// is forwarded before it.
				if err := conn.(*tls.Conn).Handshake(); err != nil {
					return
				}
				up, err := tls.Dial("tcp", s.addr, tlsTrusting(t, s.caFile))
				if err != nil {
					return
				}
				defer up.Close()
				go func() { _, _ = copyConn(up, conn) }()
				_, _ = copyConn(conn, up)
			}()
		}
	}()
	return ln.Addr().String()
}

func copyConn(dst, src net.Conn) (int64, error) {
	buf := make([]byte, 32<<10)
	var n int64
	for {
		k, err := src.Read(buf)
		if k > 0 {
			if _, werr := dst.Write(buf[:k]); werr != nil {
				return n, werr
			}
			n += int64(k)
		}
		if err != nil {
			return n, err
		}
	}
}

// TestSecureWriteDenied: the ACL user may read the input, but the
// dead-letter stream, or the output stream, lies outside its key pattern.
// The entry whose dead letter or output is refused stops the pipeline with
// an error that names the refusal and the stream, and stays pending: it is
// not acknowledged, and nothing is dead-lettered for it.
func TestSecureWriteDenied(t *testing.T) {
	s := secured(t)
	c := s.admin(t)
	for _, denied := range []string{"dead-letter", "output"} {
		t.Run(denied, func(t *testing.T) {
			in, out := s.name(t, c, "acl-in"), s.name(t, c, "acl-out")
			dlq := s.name(t, c, "acl-dlq")
			refused := "denied-" + uniq(t, c, "refused") // outside the user's key pattern
			if denied == "output" {
				out = refused
			} else {
				dlq = refused
			}
			add(t, c, in, []any{"payload", `{"n":1}`})

			ctx := ctxT(t, 90*time.Second)
			conn := []redisstream.Option{redisstream.WithAddr(s.addr), redisstream.WithTLS(tlsTrusting(t, s.caFile)),
				redisstream.WithCredentials(s.user, s.pass), redisstream.WithLogger(testutil.Quiet())}
			src, err := redisstream.NewSource(ctx, in, "g", append(sourceOpts(conn), redisstream.WithBlock(50*time.Millisecond))...)
			if err != nil {
				t.Fatal(err)
			}
			defer src.Close()
			sink, err := redisstream.NewSink(ctx, out, append(sinkOpts(conn), redisstream.WithDeadLetterStream(dlq))...)
			if err != nil {
				t.Fatal(err)
			}
			defer sink.Close()
			enr := sluice.EnricherFunc(func(_ context.Context, m *sluice.Message) (*sluice.Message, error) {
				if denied == "dead-letter" {
					return nil, sluice.Permanent(errors.New("no such review"))
				}
				return m, nil
			})
			p, err := sluice.New(src, enr, sink, sluice.WithLogger(testutil.Quiet()))
			if err != nil {
				t.Fatal(err)
			}
			err = p.Run(ctx)
			if ctx.Err() != nil {
				t.Fatalf("the pipeline did not stop on the refused write: %v", err)
			}
			t.Logf("Run: %v", err)
			if !errors.Is(err, sluice.ErrFatal) || !errors.Is(err, redisstream.ErrAccessDenied) || !strings.Contains(err.Error(), refused) {
				t.Errorf("Run returned %v; want a fatal error matching ErrAccessDenied that names %s", err, refused)
			}
			if n := pending(t, c, in, "g"); n != 1 {
				t.Errorf("%d entries pending after the refused write; want 1 (unacknowledged)", n)
			}
			if n := c.Exists(ctxT(t, 10*time.Second), out, dlq).Val(); n != 0 {
				t.Errorf("%d of the output and dead-letter streams exist: something was written", n)
			}
		})
	}
}
