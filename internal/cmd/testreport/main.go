// Command testreport renders the `go test -json` stream that scripts/test.sh
// pipes into it: go test's per-package ok/FAIL lines, build errors, and the
// output of failed and skipped tests only (SLUICE_TEST_VERBOSE=1 shows every
// line); then a "tests: N passed, N failed, N skipped" line.
//
//	go test -json ./... | testreport [-env-skips FILE] [-counts FILE]
//
// -env-skips writes the tests skipped for want of a server or an integration
// environment, one a line, to FILE (nothing when there are none); under
// CI=true scripts/test.sh fails the run on them. -counts appends
// "passed failed skipped" to FILE, for the run's grand total.
package main

import (
	"flag"
	"fmt"
	"os"
)

func main() {
	envSkips := flag.String("env-skips", "", "write the tests skipped for want of a server to this `file`")
	counts := flag.String("counts", "", "append the counts to this `file`")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "usage: go test -json ... | testreport [-env-skips FILE] [-counts FILE]")
		os.Exit(2)
	}
	r := newReport(os.Stdout, os.Getenv("SLUICE_TEST_VERBOSE") == "1")
	if err := r.read(os.Stdin); err != nil {
		fmt.Fprintln(r.out, "testreport: reading go test -json:", err)
	}
	r.summary()
	_ = r.out.Flush()
	if *envSkips != "" && len(r.envSkips) > 0 {
		if err := os.WriteFile(*envSkips, []byte(joinLines(r.envSkips)), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "testreport:", err)
		}
	}
	if *counts != "" {
		if fh, err := os.OpenFile(*counts, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644); err == nil {
			fmt.Fprintf(fh, "%d %d %d\n", r.passed, r.failed, r.skipped)
			_ = fh.Close()
		}
	}
}
