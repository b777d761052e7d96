package main

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	now := time.Date(2026, 1, 2, 12, 0, 0, 0, time.UTC)
	// The service's environment names its own group: the replay must not
	// take it.
	t.Setenv("SLUICE_GROUP", "sluice-enrich")
	t.Setenv("SLUICE_DEAD_LETTER", "reviews.dlq")
	o, err := parse([]string{"-source", "redis", "-reason", "HTTP 5..", "-since", "2h", "-until", "2026-01-02T11:30:00Z"}, io.Discard, now)
	if err != nil {
		t.Fatal(err)
	}
	if o.cfg.Group != "" || o.cfg.DeadLetter != "reviews.dlq" || o.cfg.Filter.Reason.String() != "HTTP 5.." ||
		!o.cfg.Filter.Since.Equal(now.Add(-2*time.Hour)) || !o.cfg.Filter.Until.Equal(now.Add(-30*time.Minute)) {
		t.Fatalf("parsed %+v", o.cfg)
	}
	// A relative -since names the same group on every run.
	later, err := parse([]string{"-source", "redis", "-reason", "HTTP 5..", "-since", "2h", "-until", "2026-01-02T11:30:00Z"}, io.Discard, now.Add(time.Hour))
	if err != nil || later.cfg.DefaultGroup() != o.cfg.DefaultGroup() {
		t.Fatalf("group changed with the clock: %v", err)
	}

	_, err = parse([]string{"-source", "nats", "-reason", "(", "-since", "yesterday", "-limit", "-1", "-batch", "0", "-dead-letter", ""}, io.Discard, now)
	if err == nil {
		t.Fatal("bad flags accepted")
	}
	for _, want := range []string{"-source", "-reason", "-since", "-limit", "-batch", "-dead-letter"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not name %s: %v", want, err)
		}
	}
	if _, err := parse([]string{"-dead-letter", "dlq", "-to", "dlq"}, io.Discard, now); err == nil || !strings.Contains(err.Error(), "-to") {
		t.Errorf("-to the dead-letter topic: %v", err)
	}
	if _, err := parse([]string{"-since", "1h", "-until", "2h"}, io.Discard, now); err == nil || !strings.Contains(err.Error(), "-since must come before -until") {
		t.Errorf("inverted range: %v", err)
	}
}

func TestRunUsage(t *testing.T) {
	var stderr bytes.Buffer
	if code := run(context.Background(), []string{"-bogus"}, io.Discard, &stderr); code != 2 {
		t.Errorf("unknown flag: exit %d, want 2", code)
	}
	if code := run(context.Background(), []string{"-h"}, io.Discard, &stderr); code != 0 || !strings.Contains(stderr.String(), "SLUICE_REPLAY_GROUP") {
		t.Errorf("-h: exit %d\n%s", code, stderr.String())
	}
}
