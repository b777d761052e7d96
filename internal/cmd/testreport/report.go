package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"strings"
)

// event is one line of `go test -json` (cmd/test2json).
type event struct {
	Action  string
	Package string
	Test    string
	Output  string
}

// envSkip matches the name and message of a test skipped for want of a
// server or an integration environment.
var envSkip = regexp.MustCompile(`(?i)integration|no kafka broker|no redis server|kafka_brokers|redis_addr|docker|testcontainers`)

// report reads a `go test -json` stream, writes what a person needs to see
// and counts the results.
type report struct {
	out     *bufio.Writer
	verbose bool

	buf           map[string][]string // package + NUL + test -> output lines
	pkgFailedTest map[string]bool

	passed, failed, skipped int
	envSkips                []string // "package test: message"
}

func newReport(w io.Writer, verbose bool) *report {
	return &report{
		out:           bufio.NewWriter(w),
		verbose:       verbose,
		buf:           map[string][]string{},
		pkgFailedTest: map[string]bool{},
	}
}

func (r *report) show(lines []string) {
	for _, l := range lines {
		if !strings.HasPrefix(l, "=== ") {
			r.out.WriteString(l)
		}
	}
}

// read consumes the stream until EOF. A line that is not a test2json event
// (go test's own errors) is copied as it is.
func (r *report) read(in io.Reader) error {
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<20), 256<<20)
	for sc.Scan() {
		var e event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil || e.Action == "" {
			r.out.Write(sc.Bytes())
			r.out.WriteString("\n")
			r.out.Flush()
			continue
		}
		r.event(e)
	}
	return sc.Err()
}

func (r *report) event(e event) {
	if e.Action == "build-output" {
		r.out.WriteString(e.Output)
		return
	}
	if r.verbose && e.Action == "output" {
		r.out.WriteString(e.Output)
		if e.Test == "" {
			r.out.Flush()
		}
		return
	}
	key := e.Package + "\x00" + e.Test
	if e.Test == "" { // package level
		switch e.Action {
		case "output":
			if e.Output != "PASS\n" && !strings.HasPrefix(e.Output, "=== ") {
				r.out.WriteString(e.Output)
			}
		case "fail":
			// Output of tests that never reported (a panic, a timeout).
			prefix := e.Package + "\x00"
			for k, lines := range r.buf {
				if strings.HasPrefix(k, prefix) {
					r.show(lines)
					delete(r.buf, k)
				}
			}
			if !r.pkgFailedTest[e.Package] {
				r.failed++ // a build failure or a crash outside any test
			}
		}
		r.out.Flush()
		return
	}
	switch e.Action {
	case "output":
		r.buf[key] = append(r.buf[key], e.Output)
	case "pass":
		r.passed++
		delete(r.buf, key)
	case "fail":
		r.failed++
		r.pkgFailedTest[e.Package] = true
		r.show(r.buf[key])
		delete(r.buf, key)
	case "skip":
		r.skipped++
		lines := r.buf[key]
		r.show(lines)
		delete(r.buf, key)
		var msg []string
		for _, l := range lines {
			if t := strings.TrimSpace(l); t != "" && !strings.HasPrefix(t, "=== ") && !strings.HasPrefix(t, "--- ") {
				msg = append(msg, t)
			}
		}
		text := e.Test + " " + strings.Join(msg, " ")
		if envSkip.MatchString(text) {
			r.envSkips = append(r.envSkips, fmt.Sprintf("%s %s: %s", e.Package, e.Test, strings.Join(msg, " | ")))
		}
	}
}

// summary writes the closing counts line.
func (r *report) summary() {
	fmt.Fprintf(r.out, "tests: %d passed, %d failed, %d skipped\n", r.passed, r.failed, r.skipped)
}

func joinLines(lines []string) string {
	return strings.Join(lines, "\n") + "\n"
}
