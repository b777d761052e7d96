package main

import (
	"context"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/sluicehq/sluice/llmtest"
)

// kind is a fault the soak can inject.
type kind string

const (
	killService   kind = "kill-service"   // SIGKILL; restarted with the same instance id when the cycle heals
	restartBroker kind = "restart-broker" // the -restart-broker command
	latency       kind = "latency"        // proxy: added latency with jitter
	resetPeer     kind = "reset-peer"     // proxy: TCP RST on every connection after a while
	blackhole     kind = "blackhole"      // proxy: data vanishes, connections stay open
	timeout       kind = "timeout"        // proxy: data stops, connections close after a while
	bandwidth     kind = "bandwidth"      // proxy: a few KB/s
	proxyDown     kind = "proxy-down"     // proxy: stops listening and cuts connections; up again when healed
	storm429      kind = "429-storm"      // model: a run of 429s with Retry-After 1 or 2 s
	burst5xx      kind = "5xx-burst"      // model: a run of 500/502/503
)

// allKinds is every kind; restart-broker only with a restart command.
func allKinds(restart bool) []kind {
	ks := []kind{killService, latency, resetPeer, blackhole, timeout, bandwidth, proxyDown, storm429, burst5xx}
	if restart {
		ks = append(ks, restartBroker)
	}
	return ks
}

// deck deals the cycles' main faults: every kind once, in a random order,
// then again reshuffled, so that a run of at least len(kinds) cycles meets
// every kind.
type deck struct {
	rng   *rand.Rand
	kinds []kind
	cards []kind
}

func newDeck(rng *rand.Rand, restart bool) *deck {
	return &deck{rng: rng, kinds: allKinds(restart)}
}

func (d *deck) next() kind {
	if len(d.cards) == 0 {
		d.cards = append(d.cards[:0], d.kinds...)
		d.rng.Shuffle(len(d.cards), func(i, j int) { d.cards[i], d.cards[j] = d.cards[j], d.cards[i] })
	}
	k := d.cards[0]
	d.cards = d.cards[1:]
	return k
}

// secondary draws a second fault to overlap main: any kind but main itself,
// a broker restart (too slow to overlap) and a second proxy fault (they
// would replace each other).
func (d *deck) secondary(main kind) kind {
	var ks []kind
	for _, k := range d.kinds {
		if k == main || k == restartBroker || (isProxy(k) && isProxy(main)) {
			continue
		}
		ks = append(ks, k)
	}
	if len(ks) == 0 {
		return ""
	}
	return ks[d.rng.IntN(len(ks))]
}

func isProxy(k kind) bool {
	switch k {
	case latency, resetPeer, blackhole, timeout, bandwidth, proxyDown:
		return true
	}
	return false
}

func joinKinds(ks []kind) string {
	s := make([]string, len(ks))
	for i, k := range ks {
		s[i] = string(k)
	}
	return strings.Join(s, " + ")
}

// inject starts fault k and returns the function that ends it.
func (s *soak) inject(ctx context.Context, k kind) (heal func() error, err error) {
	noop := func() error { return nil }
	healProxy := func() error { return s.proxy.Heal() }
	switch k {
	case killService:
		if err := s.svc.kill(); err != nil {
			return nil, err
		}
		return func() error { return s.svc.start(ctx) }, nil
	case restartBroker:
		return noop, s.restartBroker(ctx)
	case latency:
		d := time.Duration(50+s.rng.IntN(750)) * time.Millisecond
		s.log.printf("  latency %s ± %s", d, d/4)
		return healProxy, s.proxy.Latency(d, d/4)
	case resetPeer:
		d := time.Duration(s.rng.IntN(500)) * time.Millisecond
		s.log.printf("  reset_peer after %s", d)
		return healProxy, s.proxy.ResetPeer(d)
	case blackhole:
		return healProxy, s.proxy.Blackhole()
	case timeout:
		d := time.Duration(200+s.rng.IntN(1800)) * time.Millisecond
		s.log.printf("  timeout %s", d)
		return healProxy, s.proxy.Timeout(d)
	case bandwidth:
		kbps := int64(1 + s.rng.IntN(32))
		s.log.printf("  bandwidth %d KB/s", kbps)
		return healProxy, s.proxy.Bandwidth(kbps)
	case proxyDown:
		return func() error { return s.proxy.Up() }, s.proxy.Down()
	case storm429:
		n := 8 + s.rng.IntN(25)
		faults := make([]llmtest.Fault, n)
		for i := range faults {
			wait := 1 + s.rng.IntN(2)
			faults[i] = llmtest.Fault{Status: http.StatusTooManyRequests, Code: "rate_limit_exceeded",
				Header: http.Header{"Retry-After": {strconv.Itoa(wait)}}}
		}
		s.log.printf("  %d 429s queued at the model", n)
		s.model.Inject(faults...)
		return noop, nil
	case burst5xx:
		n := 3 + s.rng.IntN(15)
		statuses := []int{http.StatusInternalServerError, http.StatusBadGateway, http.StatusServiceUnavailable}
		faults := make([]llmtest.Fault, n)
		for i := range faults {
			faults[i] = llmtest.Fault{Status: statuses[s.rng.IntN(len(statuses))], Code: "server_error"}
		}
		s.log.printf("  %d server errors queued at the model", n)
		s.model.Inject(faults...)
		return noop, nil
	}
	return noop, nil
}
