package faultproxy

import (
	"bufio"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// echo starts a line echo server and returns its address.
func echo(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().String()
}

func roundTrip(addr string, deadline time.Duration) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(deadline))
	if _, err := c.Write([]byte("ping\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if line != "ping\n" {
		return errors.New("echo answered " + line)
	}
	return nil
}

func newProxy(t *testing.T) *Proxy {
	t.Helper()
	p, err := New(echo(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func TestForwards(t *testing.T) {
	p := newProxy(t)
	if err := roundTrip(p.Addr(), 5*time.Second); err != nil {
		t.Fatalf("through a healthy proxy: %v", err)
	}
}

func TestBlackholeThenHeal(t *testing.T) {
	p := newProxy(t)
	if err := p.Blackhole(); err != nil {
		t.Fatal(err)
	}
	err := roundTrip(p.Addr(), 200*time.Millisecond)
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("through a black hole: got %v, want a read deadline", err)
	}
	if err := p.Heal(); err != nil {
		t.Fatal(err)
	}
	if err := roundTrip(p.Addr(), 5*time.Second); err != nil {
		t.Fatalf("after Heal: %v", err)
	}
}

func TestDownUpKeepsAddress(t *testing.T) {
	p := newProxy(t)
	addr := p.Addr()
	if err := p.Down(); err != nil {
		t.Fatal(err)
	}
	if err := roundTrip(addr, time.Second); err == nil {
		t.Fatal("a proxy that is down still answered")
	}
	if err := p.Up(); err != nil {
		t.Fatal(err)
	}
	if p.Addr() != addr {
		t.Fatalf("address changed from %s to %s", addr, p.Addr())
	}
	if err := roundTrip(addr, 5*time.Second); err != nil {
		t.Fatalf("after Up: %v", err)
	}
	if err := p.Up(); err != nil {
		t.Fatalf("Up on a proxy that is up: %v", err)
	}
}

func TestToxicsReplaceAndValidate(t *testing.T) {
	p := newProxy(t)
	if err := p.Latency(time.Millisecond, 0); err != nil {
		t.Fatal(err)
	}
	if err := p.Latency(2*time.Millisecond, time.Millisecond); err != nil {
		t.Fatalf("a second latency replaces the first: %v", err)
	}
	if err := p.Bandwidth(0); err == nil {
		t.Fatal("Bandwidth(0) accepted")
	}
	if err := p.ResetPeer(0); err != nil {
		t.Fatal(err)
	}
	if err := roundTrip(p.Addr(), 5*time.Second); err == nil {
		t.Fatal("a reset_peer(0) proxy let a round trip through")
	}
	if err := p.Heal(); err != nil {
		t.Fatal(err)
	}
	if err := roundTrip(p.Addr(), 5*time.Second); err != nil {
		t.Fatalf("after Heal: %v", err)
	}
	p.Close()
	if err := p.Latency(time.Millisecond, 0); !errors.Is(err, errClosed) {
		t.Fatalf("toxic on a closed proxy: %v", err)
	}
}

func TestBadUpstream(t *testing.T) {
	if _, err := New("no-port"); err == nil {
		t.Fatal("New accepted an upstream without a port")
	}
}
