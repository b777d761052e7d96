package envflag

import (
	"flag"
	"io"
	"strings"
	"testing"
)

func TestApply(t *testing.T) {
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	a := fs.String("rate-limit", "1", "")
	b := fs.String("input", "in", "")
	c := fs.String("output", "out", "")
	v := fs.Bool("version", false, "")
	t.Setenv("T_RATE_LIMIT", "5")
	t.Setenv("T_INPUT", "from-env")
	t.Setenv("T_VERSION", "true")
	if err := fs.Parse([]string{"-input", "from-flag"}); err != nil {
		t.Fatal(err)
	}
	if err := Apply(fs, "T_", "version"); err != nil {
		t.Fatal(err)
	}
	if *a != "5" || *b != "from-flag" || *c != "out" || *v {
		t.Errorf("rate-limit=%s input=%s output=%s version=%v", *a, *b, *c, *v)
	}
	fs2 := flag.NewFlagSet("y", flag.ContinueOnError)
	fs2.Int("concurrency", 1, "")
	t.Setenv("T_CONCURRENCY", "many")
	if err := Apply(fs2, "T_"); err == nil || !strings.Contains(err.Error(), "T_CONCURRENCY") {
		t.Errorf("bad value: %v", err)
	}
}
