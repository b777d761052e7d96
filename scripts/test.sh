#!/usr/bin/env bash
# The project's test command (CI runs exactly this through .ci/run).
#
#   scripts/test.sh [go test flags] [packages]
#
# 1. go mod download
# 2. a real Kafka 4.4 broker and redis-server (scripts/kafka.sh, scripts/redis.sh)
#    unless KAFKA_BROKERS / REDIS_ADDR are already set; exports both
# 3. go vet ./...
# 4. staticcheck ./... (installed with go install when missing; skipped with a
#    warning if that fails)
# 5. go test -race -count=1 [your flags] ./...   (your packages replace ./...)
#    then the conformance suite's ServerRestart subtests, which restart the
#    local servers, alone in a pass of their own
# 6. a short chaos soak once the tests passed: scripts/chaos.sh kafka N and
#    scripts/chaos.sh redis N with N=${SLUICE_CHAOS_CYCLES:-3}, each against a
#    server of its own on other ports (SLUICE_CHAOS_CYCLES=0 skips it; so do
#    custom packages or flags)
# 7. a short fuzz pass: every func FuzzXxx in a *_test.go file runs for
#    ${SLUICE_FUZZTIME:-10s} (SLUICE_FUZZTIME=0 skips it)
# Servers that this script started are stopped on exit (SLUICE_KEEP_SERVERS=1
# keeps them). Under CI=true a test skipped for want of a server or an
# integration environment fails the run.
#
# Test output shows failures, skips and go test's per-package ok/FAIL lines;
# SLUICE_TEST_VERBOSE=1 shows everything. The raw `go test -json` stream is kept
# in ~/.cache/sluice/test-logs/go-test.json.
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$SLUICE_ROOT"

readonly STATICCHECK_VERSION=v0.8.2
FUZZTIME=${SLUICE_FUZZTIME:-10s}
CHAOS_CYCLES=${SLUICE_CHAOS_CYCLES:-3}
LOGDIR="$HOME/.cache/sluice/test-logs"
WORK=$(mktemp -d)

cleanup() {
  local rc=$?
  sluice_stop_servers
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

sluice_go_env
if [[ ! -f go.mod ]]; then
  sluice_warn "no go.mod in $SLUICE_ROOT: nothing to test"
  exit 0
fi

declare -a RESULTS=()
FAILED=0
record() { # STEP STATUS
  RESULTS+=("$(printf '%-12s %s' "$1" "$2")")
  [[ $2 == ok* || $2 == skipped* ]] || FAILED=1
}

sluice_log "go mod download"
go mod download

if [[ -z $(go list ./... 2>/dev/null) ]]; then
  sluice_warn "no Go packages yet: nothing to test"
  exit 0
fi

sluice_start_servers
sluice_log "KAFKA_BROKERS=$KAFKA_BROKERS REDIS_ADDR=$REDIS_ADDR"

# ------------------------------------------------------------------ vet
sluice_log "go vet ./..."
if go vet ./...; then record vet ok; else record vet FAIL; fi

# ------------------------------------------------------------------ staticcheck
staticcheck_bin() {
  command -v staticcheck 2>/dev/null && return 0
  sluice_log "installing staticcheck $STATICCHECK_VERSION"
  if go install "honnef.co/go/tools/cmd/staticcheck@$STATICCHECK_VERSION" >"$WORK/staticcheck-install.log" 2>&1; then
    command -v staticcheck
  else
    tail -n 5 "$WORK/staticcheck-install.log" >&2
    return 1
  fi
}
if SC=$(staticcheck_bin); then
  sluice_log "staticcheck ./..."
  if "$SC" ./...; then record staticcheck ok; else record staticcheck FAIL; fi
else
  sluice_warn "staticcheck could not be installed; skipping it"
  record staticcheck "skipped (install failed)"
fi

# ------------------------------------------------------------------ tests
# A small renderer for `go test -json`: prints package lines (ok/FAIL), build
# errors, and the output of failed and skipped tests only; counts results; and
# lists the tests skipped for want of a server or integration environment.
cat >"$WORK/render.go" <<'GO'
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"strings"
)

type event struct {
	Action  string
	Package string
	Test    string
	Output  string
}

var envSkip = regexp.MustCompile(`(?i)integration|no kafka broker|no redis server|kafka_brokers|redis_addr|docker|testcontainers`)

func main() {
	verbose := os.Getenv("SLUICE_TEST_VERBOSE") == "1"
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()

	buf := map[string][]string{} // package + NUL + test -> output lines
	pkgFailedTest := map[string]bool{}
	var passed, failed, skipped int
	var envSkips []string

	show := func(lines []string) {
		for _, l := range lines {
			if !strings.HasPrefix(l, "=== ") {
				out.WriteString(l)
			}
		}
	}

	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 256<<20)
	for in.Scan() {
		var e event
		if err := json.Unmarshal(in.Bytes(), &e); err != nil || e.Action == "" {
			out.Write(in.Bytes())
			out.WriteString("\n")
			out.Flush()
			continue
		}
		if e.Action == "build-output" {
			out.WriteString(e.Output)
			continue
		}
		if verbose && e.Action == "output" {
			out.WriteString(e.Output)
			if e.Test == "" {
				out.Flush()
			}
			continue
		}
		key := e.Package + "\x00" + e.Test
		if e.Test == "" { // package level
			switch e.Action {
			case "output":
				if e.Output != "PASS\n" && !strings.HasPrefix(e.Output, "=== ") {
					out.WriteString(e.Output)
				}
			case "fail":
				// Output of tests that never reported (a panic, a timeout).
				prefix := e.Package + "\x00"
				for k, lines := range buf {
					if strings.HasPrefix(k, prefix) {
						show(lines)
						delete(buf, k)
					}
				}
				if !pkgFailedTest[e.Package] {
					failed++ // a build failure or a crash outside any test
				}
			}
			out.Flush()
			continue
		}
		switch e.Action {
		case "output":
			buf[key] = append(buf[key], e.Output)
		case "pass":
			passed++
			delete(buf, key)
		case "fail":
			failed++
			pkgFailedTest[e.Package] = true
			show(buf[key])
			delete(buf, key)
		case "skip":
			skipped++
			lines := buf[key]
			show(lines)
			delete(buf, key)
			var msg []string
			for _, l := range lines {
				if t := strings.TrimSpace(l); t != "" && !strings.HasPrefix(t, "=== ") && !strings.HasPrefix(t, "--- ") {
					msg = append(msg, t)
				}
			}
			text := e.Test + " " + strings.Join(msg, " ")
			if envSkip.MatchString(text) {
				envSkips = append(envSkips, fmt.Sprintf("%s %s: %s", e.Package, e.Test, strings.Join(msg, " | ")))
			}
		}
	}
	if err := in.Err(); err != nil {
		fmt.Fprintln(out, "render: reading go test -json:", err)
	}
	if len(os.Args) > 1 && len(envSkips) > 0 {
		_ = os.WriteFile(os.Args[1], []byte(strings.Join(envSkips, "\n")+"\n"), 0o644)
	}
	fmt.Fprintf(out, "tests: %d passed, %d failed, %d skipped\n", passed, failed, skipped)
	if f := os.Getenv("RENDER_COUNTS"); f != "" { // for the run's grand total
		if fh, err := os.OpenFile(f, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644); err == nil {
			fmt.Fprintf(fh, "%d %d %d\n", passed, failed, skipped)
			_ = fh.Close()
		}
	}
}
GO
(cd "$WORK" && GOFLAGS=-buildvcs=false go build -o render render.go)
export RENDER_COUNTS="$WORK/counts"

sluice_split_args "$@"
mkdir -p "$LOGDIR"
JSONLOG="$LOGDIR/go-test.json"
sluice_log "go test -race -count=1 ${SLUICE_FLAGS[*]} ${SLUICE_PKGS[*]}"
set +e
go test -json -race -count=1 "${SLUICE_FLAGS[@]}" "${SLUICE_PKGS[@]}" 2>&1 |
  tee "$JSONLOG" | "$WORK/render" "$WORK/env-skips.txt"
TEST_RC=${PIPESTATUS[0]}
set -e
if ((TEST_RC == 0)); then record "go test" ok; else record "go test" "FAIL (exit $TEST_RC; raw log $JSONLOG)"; fi

# Server restarts: the conformance suite's ServerRestart subtests restart the
# local Kafka and Redis, so they run here, one package at a time, when
# nothing else uses the servers (and only against the servers of our scripts).
if ((${#SLUICE_FLAGS[@]} == 0 && ${#SLUICE_PKGS[@]} == 1)) && [[ ${SLUICE_PKGS[0]} == ./... ]] &&
  [[ $KAFKA_BROKERS == 127.0.0.1:9092 && $REDIS_ADDR == 127.0.0.1:6379 ]]; then
  sluice_log "server restarts: SLUICE_SERVER_RESTART=1 go test -p 1 -run TestConformance/ServerRestart ./kafka ./redisstream"
  set +e
  SLUICE_SERVER_RESTART=1 go test -json -race -count=1 -p 1 -run '^TestConformance$/^ServerRestart$' ./kafka ./redisstream 2>&1 |
    tee "$LOGDIR/go-test-restarts.json" | "$WORK/render" "$WORK/env-skips-restarts.txt"
  RESTART_RC=${PIPESTATUS[0]}
  set -e
  if ((RESTART_RC == 0)); then record restarts ok; else record restarts "FAIL (exit $RESTART_RC)"; fi
  if [[ -s $WORK/env-skips-restarts.txt ]]; then cat "$WORK/env-skips-restarts.txt" >>"$WORK/env-skips.txt"; fi
else
  record restarts "skipped (custom packages or servers)"
fi

if [[ -s $WORK/env-skips.txt ]]; then
  if [[ ${CI:-} == true ]]; then
    sluice_warn "CI=true but these tests were skipped for want of a server or integration environment:"
    sed 's/^/    /' "$WORK/env-skips.txt" >&2
    record "skips" "FAIL ($(wc -l <"$WORK/env-skips.txt") integration tests skipped under CI)"
  else
    sluice_warn "integration tests skipped (these fail the run under CI=true):"
    sed 's/^/    /' "$WORK/env-skips.txt" >&2
  fi
fi

# ------------------------------------------------------------------ chaos
# The soak runs its own Kafka broker and redis-server (scripts/chaos.sh), so
# it neither needs nor touches the servers above. It runs only after the tests
# passed: a soak over a broken build says nothing new.
if [[ ! $CHAOS_CYCLES =~ ^[0-9]+$ ]]; then
  record chaos "FAIL (SLUICE_CHAOS_CYCLES=$CHAOS_CYCLES is not a number)"
elif ((CHAOS_CYCLES == 0)); then
  record chaos "skipped (SLUICE_CHAOS_CYCLES=0)"
elif ((TEST_RC != 0)); then
  record chaos "skipped (go test failed)"
elif ((${#SLUICE_FLAGS[@]} > 0 || ${#SLUICE_PKGS[@]} != 1)) || [[ ${SLUICE_PKGS[0]} != ./... ]]; then
  record chaos "skipped (custom packages or flags)"
else
  # A short drain limit keeps a stuck run from eating the CI budget.
  export SLUICE_CHAOS_ARGS=${SLUICE_CHAOS_ARGS:--drain-timeout 2m}
  for src in kafka redis; do
    sluice_log "chaos: scripts/chaos.sh $src $CHAOS_CYCLES"
    t0=$SECONDS
    set +e
    scripts/chaos.sh "$src" "$CHAOS_CYCLES" >"$WORK/chaos-$src.out"
    rc=$?
    set -e
    line=$(tail -n 1 "$WORK/chaos-$src.out")
    printf '%s\n' "$line"
    if ((rc == 0)); then
      record "chaos $src" "ok ($((SECONDS - t0)) s, $line)"
    else
      record "chaos $src" "FAIL (exit $rc, $((SECONDS - t0)) s${line:+, $line}; seed and work dir in the log above)"
    fi
  done
fi

# ------------------------------------------------------------------ fuzz
if [[ $FUZZTIME == 0 || $FUZZTIME == 0s ]]; then
  record fuzz "skipped (SLUICE_FUZZTIME=$FUZZTIME)"
else
  mapfile -t FUZZ < <(
    grep -rEo --include='*_test.go' --exclude-dir=.git --exclude-dir=vendor --exclude-dir=testdata \
      '^func Fuzz[A-Za-z0-9_]*\(' . | sed -E 's#^(.*)/[^/]*:func (Fuzz[A-Za-z0-9_]*)\($#\1 \2#' | sort -u
  )
  if ((${#FUZZ[@]} == 0)); then
    sluice_log "fuzz: no Fuzz targets found"
    record fuzz "skipped (no targets)"
  else
    fuzz_failed=0
    for entry in "${FUZZ[@]}"; do
      dir=${entry% *}
      name=${entry##* }
      sluice_log "fuzz $name in $dir for $FUZZTIME"
      if ! go test -run='^$' -fuzz="^${name}\$" -fuzztime="$FUZZTIME" "$dir"; then
        fuzz_failed=$((fuzz_failed + 1))
        sluice_warn "fuzz $name in $dir failed (a new crasher, if any, is in $dir/testdata/fuzz/$name)"
      fi
    done
    if ((fuzz_failed == 0)); then
      record fuzz "ok (${#FUZZ[@]} targets, $FUZZTIME each)"
    else
      record fuzz "FAIL ($fuzz_failed of ${#FUZZ[@]} targets)"
    fi
  fi
fi

# ------------------------------------------------------------------ summary
echo
sluice_log "summary"
printf '    %s\n' "${RESULTS[@]}"
if [[ -s $WORK/counts ]]; then
  awk '{p += $1; f += $2; s += $3} END {printf "tests: %d passed, %d failed, %d skipped\n", p, f, s}' "$WORK/counts"
fi
if ((FAILED)); then
  echo "test.sh: FAIL"
  exit 1
fi
echo "test.sh: ok"
