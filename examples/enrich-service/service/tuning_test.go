package service

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/internal/testutil"
)

func TestTuningFlags(t *testing.T) {
	t.Setenv("AZURE_KEY", "az-secret-42")
	c, err := parseConfig([]string{"-batch-size", "8", "-adaptive-concurrency", "-max-in-flight", "512",
		"-temperature", "0", "-model-header", "api-key: env:AZURE_KEY", "-model-header", "x-team: search",
		"-start-at", "newest", "-key-ordering", "-price-prompt", "0.15", "-price-completion", "0.6",
		"-budget-usd", "5", "-budget-per", "1h", "-usage-header", "x-usage"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	tu := c.Tuning
	if tu.BatchSize != 8 || !tu.Adaptive || tu.MaxInFlight != 512 || tu.Temperature != 0 || tu.StartAt != "newest" ||
		!tu.KeyOrdering || tu.BudgetUSD != 5 || tu.UsageHeader != "x-usage" || len(tu.Headers) != 2 {
		t.Errorf("tuning %+v", tu)
	}
	if n := len(tu.pipelineOptions()); n != 3 {
		t.Errorf("%d pipeline options, want batch, window and key ordering", n)
	}
	// batch, adaptive (two options), temperature, two headers, prices, budget, usage header
	if n := len(tu.openaiOptions(c)); n != 9 {
		t.Errorf("%d model options, want 9", n)
	}
	dump := fmt.Sprint(c.redacted())
	if strings.Contains(dump, "az-secret-42") || strings.Contains(dump, "search") {
		t.Errorf("redacted config shows a header value: %s", dump)
	}
	for _, want := range []string{"Api-Key: (redacted)", "batch_size:8", "start_at:newest", "budget:0 tokens, $5 per 1h0m0s"} {
		if !strings.Contains(dump, want) {
			t.Errorf("redacted config lacks %q: %s", want, dump)
		}
	}
	// The defaults add nothing.
	c, err = parseConfig(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if n, m := len(c.Tuning.pipelineOptions()), len(c.Tuning.openaiOptions(c)); n != 0 || m != 0 {
		t.Errorf("defaults give %d pipeline and %d model options", n, m)
	}
}

func TestTuningErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-batch-size", "0"}, "-batch-size 0"},
		{[]string{"-max-in-flight", "-1"}, "-max-in-flight -1"},
		{[]string{"-temperature", "3"}, "-temperature 3"},
		{[]string{"-start-at", "latest"}, `-start-at "latest"`},
		{[]string{"-task", "custom"}, "needs -task-prompt-file and -task-schema-file"},
		{[]string{"-task-prompt-file", "p.txt"}, "only with -task custom"},
		{[]string{"-price-prompt", "-1"}, "-price-prompt -1"},
		{[]string{"-budget-usd", "3"}, "needs the model's prices"},
		{[]string{"-budget-tokens", "100", "-budget-per", "10s"}, "-budget-per 10s"},
		{[]string{"-model-header", "api-key: env:SLUICE_TEST_UNSET_VAR"}, "SLUICE_TEST_UNSET_VAR is not set"},
	} {
		_, err := parseConfig(tc.args, io.Discard)
		if !errors.Is(err, errUsage) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: err %v, want errUsage naming %s", tc.args, err, tc.want)
		}
	}
	for _, bad := range []string{"no-colon", ": value", "two words: v", "x-a: b\r\nInjected: 1"} {
		if _, err := parseConfig([]string{"-model-header", bad}, io.Discard); err == nil || !strings.Contains(err.Error(), "Name: value") {
			t.Errorf("-model-header %q: %v", bad, err)
		}
	}
}

func TestTuningCustomTask(t *testing.T) {
	dir := t.TempDir()
	prompt, schema := filepath.Join(dir, "prompt.txt"), filepath.Join(dir, "schema.json")
	if err := os.WriteFile(prompt, []byte("Classify the urgency of: {{.text}}"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(schema, []byte(`{"type":"object","properties":{"urgent":{"type":"boolean"}},"required":["urgent"],"additionalProperties":false}`), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := parseConfig([]string{"-task", "custom", "-task-name", "urgency", "-task-prompt-file", prompt, "-task-schema-file", schema}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := newEnricher(c, nil, testutil.Quiet()); err != nil {
		t.Fatalf("custom task: %v", err)
	}
	if err := os.WriteFile(schema, []byte(`{"type":`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := newEnricher(c, nil, testutil.Quiet()); !errors.Is(err, errUsage) || !strings.Contains(err.Error(), "not JSON") {
		t.Errorf("broken schema file: %v", err)
	}
	c.Tuning.TaskPromptFile = filepath.Join(dir, "missing.txt")
	if _, err := newEnricher(c, nil, testutil.Quiet()); !errors.Is(err, errUsage) || !strings.Contains(err.Error(), "-task-prompt-file") {
		t.Errorf("missing prompt file: %v", err)
	}
}
