package deploy

import (
	"os"
	"os/exec"
	"testing"
)

// promtool returns the path of promtool (Debian package prometheus, which
// scripts/test.sh installs), or skips the test; under CI=true it fails.
func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err == nil {
		return p
	}
	const help = "promtool not found: apt-get install prometheus (scripts/test.sh installs it)"
	if os.Getenv("CI") == "true" {
		t.Fatal(help)
	}
	t.Skip(help)
	return ""
}

// TestAlertRules: promtool accepts the rules, and their unit tests pass
// (alerts fire on the series they are meant for, and only on those).
func TestAlertRules(t *testing.T) {
	bin := promtool(t)
	for _, args := range [][]string{
		{"check", "rules", "prometheus/alerts.yml"},
		{"test", "rules", "prometheus/alerts_test.yml"},
	} {
		out, err := exec.Command(bin, args...).CombinedOutput()
		if err != nil {
			t.Errorf("promtool %v: %v\n%s", args, err, out)
		} else {
			t.Logf("promtool %v:\n%s", args, out)
		}
	}
}
