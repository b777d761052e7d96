package main

import (
	"strings"
	"testing"
)

// TestQuickstart runs the quickstart, embedded broker and all, on fewer
// events, for both sources.
func TestQuickstart(t *testing.T) {
	for _, source := range []string{"kafka", "redis"} {
		t.Run(source, func(t *testing.T) {
			var stdout, stderr strings.Builder
			code := run([]string{"-source", source, "-events", "300", "-malformed-every", "50"}, &stdout, &stderr)
			if code != 0 {
				t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
			}
			lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
			want := `{"input_count":300,"enriched_count":294,"dead_letter_count":6,"missing_count":0,`
			if last := lines[len(lines)-1]; !strings.HasPrefix(last, want) {
				t.Errorf("last line %s\nwant prefix %s", last, want)
			}
			if n := strings.Count(stdout.String(), `"ai_enrichment":{"task":"sentiment"`); n != 3 {
				t.Errorf("%d enriched samples shown, want 3", n)
			}
			if n := strings.Count(stdout.String(), "reason: "); n != 2 {
				t.Errorf("%d dead letters shown, want 2", n)
			}
			if !strings.Contains(stderr.String(), "progress: ") {
				t.Errorf("no progress line on stderr: %s", stderr.String())
			}
		})
	}
}
