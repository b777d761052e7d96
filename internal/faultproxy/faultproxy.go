// Package faultproxy puts a TCP proxy with injectable faults between a
// client and a server, in process, for tests and the chaos soak. It wraps
// Toxiproxy's proxy and toxics: latency, connection resets, black holes,
// bandwidth limits, and the proxy going down and coming back on the same
// address.
//
// A Proxy forwards every connection made to [Proxy.Addr] to its upstream.
// Faults apply to connections already open and to new ones until
// [Proxy.Heal] removes them.
package faultproxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/rs/zerolog"
	zlog "github.com/rs/zerolog/log"
)

// quietToxics silences the toxics that log through zerolog's global logger
// (the bandwidth toxic does, to stderr). Nothing else in this module uses
// zerolog. It runs before the first proxy exists, so before any toxic.
var quietToxics sync.Once

// Option configures [New].
type Option func(*config)

type config struct {
	listen string
	name   string
}

// WithListen makes the proxy listen on addr (host:port) instead of a random
// loopback port. Use it when the address must be known in advance, for
// example when a broker advertises it.
func WithListen(addr string) Option { return func(c *config) { c.listen = addr } }

// WithName names the proxy in its logs (the default is its upstream).
func WithName(name string) Option { return func(c *config) { c.name = name } }

// Proxy is a running fault-injecting TCP proxy. Its methods are safe for
// concurrent use.
type Proxy struct {
	mu     sync.Mutex
	proxy  *toxiproxy.Proxy
	toxics []string
	closed bool
}

// New starts a proxy that forwards to upstream (host:port). It listens on
// 127.0.0.1 at a random port unless [WithListen] says otherwise.
func New(upstream string, opts ...Option) (*Proxy, error) {
	cfg := config{listen: "127.0.0.1:0", name: upstream}
	for _, o := range opts {
		o(&cfg)
	}
	if _, _, err := net.SplitHostPort(upstream); err != nil {
		return nil, fmt.Errorf("faultproxy: upstream %q is not host:port: %w", upstream, err)
	}
	quietToxics.Do(func() { zlog.Logger = zerolog.New(io.Discard) })
	srv := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zerolog.New(io.Discard))
	px := toxiproxy.NewProxy(srv, cfg.name, cfg.listen, upstream)
	if err := px.Start(); err != nil {
		return nil, fmt.Errorf("faultproxy: listen on %s: %w", cfg.listen, err)
	}
	return &Proxy{proxy: px}, nil
}

// Addr is the address clients connect to. It stays the same across
// [Proxy.Down] and [Proxy.Up].
func (p *Proxy) Addr() string {
	p.proxy.Lock()
	defer p.proxy.Unlock()
	return p.proxy.Listen
}

// Upstream is the address the proxy forwards to.
func (p *Proxy) Upstream() string { return p.proxy.Upstream }

// Close stops the proxy and cuts every connection through it.
func (p *Proxy) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	p.proxy.Stop()
	return nil
}

// Latency delays data in both directions by d, plus or minus jitter.
func (p *Proxy) Latency(d, jitter time.Duration) error {
	return p.both("latency", map[string]any{"latency": d.Milliseconds(), "jitter": jitter.Milliseconds()})
}

// ResetPeer resets every connection (TCP RST) after it has been open for
// after, and new connections as soon as they have lived that long.
func (p *Proxy) ResetPeer(after time.Duration) error {
	return p.add("reset_peer", "upstream", map[string]any{"timeout": after.Milliseconds()})
}

// Timeout stops all data in both directions and closes each connection
// after d. With d = 0 the connections are never closed: a black hole, where
// requests vanish and no answer ever comes, until [Proxy.Heal].
func (p *Proxy) Timeout(d time.Duration) error {
	return p.both("timeout", map[string]any{"timeout": d.Milliseconds()})
}

// Blackhole is Timeout(0).
func (p *Proxy) Blackhole() error { return p.Timeout(0) }

// Bandwidth limits each direction of every connection to kbps kilobytes per
// second.
func (p *Proxy) Bandwidth(kbps int64) error {
	if kbps <= 0 {
		return fmt.Errorf("faultproxy: bandwidth must be positive, got %d KB/s", kbps)
	}
	return p.both("bandwidth", map[string]any{"rate": kbps})
}

// Down stops listening and cuts every open connection: the server looks
// gone. New connections are refused until [Proxy.Up].
func (p *Proxy) Down() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return errClosed
	}
	p.proxy.Stop()
	return nil
}

// Up listens again on the same address after [Proxy.Down]. It is a no-op
// on a proxy that is up.
func (p *Proxy) Up() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return errClosed
	}
	if err := p.proxy.Start(); err != nil && !errors.Is(err, toxiproxy.ErrProxyAlreadyStarted) {
		return fmt.Errorf("faultproxy: listen again on %s: %w", p.proxy.Listen, err)
	}
	return nil
}

// Heal removes every fault added with the other methods. It does not bring
// a proxy that is down back up; call [Proxy.Up] for that.
func (p *Proxy) Heal() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	var errs []error
	for _, name := range p.toxics {
		if err := p.proxy.Toxics.RemoveToxic(context.Background(), name); err != nil {
			errs = append(errs, fmt.Errorf("faultproxy: remove %s: %w", name, err))
		}
	}
	p.toxics = p.toxics[:0]
	return errors.Join(errs...)
}

var errClosed = errors.New("faultproxy: proxy is closed")

func (p *Proxy) both(kind string, attrs map[string]any) error {
	if err := p.add(kind, "upstream", attrs); err != nil {
		return err
	}
	return p.add(kind, "downstream", attrs)
}

// add installs one toxic; a toxic of the same kind and direction is
// replaced.
func (p *Proxy) add(kind, stream string, attrs map[string]any) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return errClosed
	}
	name := kind + "_" + stream
	for i, n := range p.toxics {
		if n == name {
			if err := p.proxy.Toxics.RemoveToxic(context.Background(), name); err != nil {
				return fmt.Errorf("faultproxy: replace %s: %w", name, err)
			}
			p.toxics = append(p.toxics[:i], p.toxics[i+1:]...)
			break
		}
	}
	body, err := json.Marshal(map[string]any{
		"name": name, "type": kind, "stream": stream, "toxicity": 1.0, "attributes": attrs,
	})
	if err != nil {
		return fmt.Errorf("faultproxy: %s: %w", name, err)
	}
	if _, err := p.proxy.Toxics.AddToxicJson(bytes.NewReader(body)); err != nil {
		return fmt.Errorf("faultproxy: add %s: %w", name, err)
	}
	p.toxics = append(p.toxics, name)
	return nil
}
