package main

import (
	"io"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestDeckDealsEveryKindOncePerRound(t *testing.T) {
	for _, restart := range []bool{false, true} {
		d := newDeck(rand.New(rand.NewPCG(7, 7)), restart)
		kinds := allKinds(restart)
		for round := range 3 {
			var got []kind
			for range kinds {
				got = append(got, d.next())
			}
			slices.Sort(got)
			want := slices.Clone(kinds)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("restart=%v round %d dealt %v, want each of %v once", restart, round, got, want)
			}
		}
	}
}

func TestDeckSecondary(t *testing.T) {
	d := newDeck(rand.New(rand.NewPCG(1, 2)), true)
	for _, main := range allKinds(true) {
		for range 50 {
			s := d.secondary(main)
			switch {
			case s == main:
				t.Fatalf("secondary of %s is itself", main)
			case s == restartBroker:
				t.Fatalf("secondary of %s is a broker restart", main)
			case isProxy(s) && isProxy(main):
				t.Fatalf("two proxy faults at once: %s and %s", main, s)
			}
		}
	}
}

func TestSameSeedSameSchedule(t *testing.T) {
	deal := func(seed uint64) []kind {
		rng := rand.New(rand.NewPCG(seed, seed^0x5eed))
		d := newDeck(rng, true)
		var ks []kind
		for range 25 {
			ks = append(ks, d.next(), d.secondary(ks0(ks)))
		}
		return ks
	}
	if a, b := deal(42), deal(42); !slices.Equal(a, b) {
		t.Errorf("seed 42 dealt %v, then %v", a, b)
	}
	if a, b := deal(42), deal(43); slices.Equal(a, b) {
		t.Errorf("seeds 42 and 43 dealt the same schedule %v", a)
	}
}

func ks0(ks []kind) kind {
	if len(ks) == 0 {
		return ""
	}
	return ks[len(ks)-1]
}

func TestParseRange(t *testing.T) {
	for in, want := range map[string][2]time.Duration{
		"1s-3s":      {time.Second, 3 * time.Second},
		"500ms":      {500 * time.Millisecond, 500 * time.Millisecond},
		"0s-250ms":   {0, 250 * time.Millisecond},
		"2s-2s":      {2 * time.Second, 2 * time.Second},
		"100ms-1m0s": {100 * time.Millisecond, time.Minute},
	} {
		got, err := parseRange(in)
		if err != nil || got != want {
			t.Errorf("parseRange(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "3s-1s", "x", "1s-y", "-1s"} {
		if _, err := parseRange(in); err == nil {
			t.Errorf("parseRange(%q) accepted", in)
		}
	}
}

func TestFlags(t *testing.T) {
	bad := [][]string{
		{},                                    // no -service
		{"-service", "x", "-source", "nats"},  // unknown source
		{"-service", "x", "-source", "kafka"}, // kafka without proxy addresses
		{"-service", "x", "-source", "redis", "y"}, // stray argument
		{"-service", "x", "-source", "redis", "-rate", "0"},
	}
	for _, args := range bad {
		if _, err := parseFlags(args, io.Discard); err == nil {
			t.Errorf("parseFlags(%q) accepted", args)
		}
	}
	o, err := parseFlags([]string{"-service", "x", "-source", "redis", "-redis-addr", "127.0.0.1:1"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.proxyUpstream != "127.0.0.1:1" || o.seed == 0 || o.cycles != 20 {
		t.Errorf("redis defaults: upstream %q, seed %d, cycles %d", o.proxyUpstream, o.seed, o.cycles)
	}
	o, err = parseFlags([]string{"-service", "x", "-seed", "99", "-proxy-listen", "127.0.0.1:2", "-proxy-upstream", "127.0.0.1:3"}, io.Discard)
	if err != nil || o.seed != 99 {
		t.Errorf("-seed 99: %+v, %v", o, err)
	}
}
