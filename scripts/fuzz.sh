#!/usr/bin/env bash
# Runs every fuzz target of the repository, one after the other.
#
#   scripts/fuzz.sh [DURATION] [TARGET-REGEXP]
#
# DURATION is go test's -fuzztime for each target (default 10m; e.g. 30s, 2h,
# or 5000x for a number of executions). TARGET-REGEXP keeps only the targets
# whose name, or package/name, matches it (grep -E; default: all).
#
# Targets are discovered, not listed: in every module (the root and each
# go.mod below it), each package holding a `func Fuzz…` in a _test.go file is
# asked for its targets with `go test -list '^Fuzz'`, so a new target runs
# here, and in scripts/test.sh's short pass, without being named anywhere.
#
# A target that fails leaves its crasher where go test writes it,
# <package>/testdata/fuzz/<FuzzName>/<hash>. Commit that file with the fix: go
# test runs every input under testdata/fuzz as a regression case on each plain
# `go test`, so the crash cannot come back unnoticed. The script goes on with
# the other targets and exits 1 at the end if any failed.
#
# It prints one line per target with its executions, new corpus entries and
# the result, and a summary. Exit status: 0 all passed, 1 a target failed,
# 2 bad usage or no target found.
#
# Environment:
#   SLUICE_FUZZ_PARALLEL  go test -parallel: fuzzing workers per target
#                         (default: go's, GOMAXPROCS); 1 on a shared machine
#   SLUICE_FUZZ_LOGDIR    where each target's full output goes
#                         (~/.cache/sluice/fuzz-logs)
#   SLUICE_FUZZ_LIST=1    print the targets (module, package in it, directory,
#                         name) and exit
#   SLUICE_FUZZ_TOOLCHAIN the Go toolchain that fuzzes (default go1.27.3 when
#                         this machine's Go is older; "local" keeps it)
#
# Go before 1.27 can fail a target with a bare "context deadline exceeded"
# and no crasher at the end of -fuzztime, when a worker is slow to stop on a
# busy machine: a race in go's fuzzing coordinator (golang/go#75804, fixed in
# 1.27), not a finding. So fuzzing runs on go1.27.3, which the go command
# fetches from the module proxy like a module (about 76 MB, once per
# machine); the module itself still builds with the Go it names.
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$SLUICE_ROOT"
sluice_go_env

TOOLCHAIN=${SLUICE_FUZZ_TOOLCHAIN:-go1.27.3}
if [[ $TOOLCHAIN != local ]]; then
  have=$(go env GOVERSION)
  if [[ $(printf '%s\n%s\n' "$have" go1.27 | sort -V | head -n 1) == "$have" && $have != go1.27 ]]; then
    if GOTOOLCHAIN=$TOOLCHAIN go version >/dev/null 2>&1; then
      export GOTOOLCHAIN=$TOOLCHAIN
    else
      sluice_warn "fuzz: could not get the $TOOLCHAIN toolchain; fuzzing with $have, whose coordinator may fail a target with a bare 'context deadline exceeded' and no crasher (golang/go#75804)"
    fi
  fi
fi

DURATION=${1:-10m}
FILTER=${2:-}
PARALLEL=${SLUICE_FUZZ_PARALLEL:-}
LOGDIR=${SLUICE_FUZZ_LOGDIR:-$HOME/.cache/sluice/fuzz-logs}

if [[ ! $DURATION =~ ^[0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h|x)$ && ! $DURATION =~ ^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$ ]]; then
  echo "usage: scripts/fuzz.sh [DURATION] [TARGET-REGEXP]   (DURATION like 10m, 30s or 5000x; got '$DURATION')" >&2
  exit 2
fi
if [[ -n $PARALLEL && ! $PARALLEL =~ ^[1-9][0-9]*$ ]]; then
  echo "fuzz.sh: SLUICE_FUZZ_PARALLEL must be a positive number, got '$PARALLEL'" >&2
  exit 2
fi

# Every module: the root first, then each go.mod below it.
mapfile -t MODULES < <(
  echo .
  find . -mindepth 2 -name go.mod -not -path './.git/*' -not -path '*/testdata/*' -printf '%h\n' | sort
)

# module_of DIR prints the module DIR belongs to (the deepest that holds it).
module_of() {
  local dir=$1 mod=. m
  for m in "${MODULES[@]:1}"; do
    if [[ $dir == "$m" || $dir == "$m"/* ]]; then mod=$m; fi
  done
  printf '%s\n' "$mod"
}

# Packages that may hold targets: a cheap textual pass, then go test -list
# (which honours build tags and sees exactly what -fuzz would run).
mapfile -t DIRS < <(
  grep -rlE --include='*_test.go' --exclude-dir=.git --exclude-dir=vendor --exclude-dir=testdata \
    '^func Fuzz[A-Za-z0-9_]*\(' . | xargs -r -n1 dirname | sort -u
)
declare -a TARGETS=() # "module package name"
for dir in "${DIRS[@]}"; do
  mod=$(module_of "$dir")
  rel=./${dir#"$mod"/}
  [[ $dir == "$mod" ]] && rel=.
  if ! names=$(go test -C "$mod" -vet=off -run='^$' -list='^Fuzz' "$rel" 2>&1); then
    printf '%s\n' "$names" >&2
    sluice_warn "fuzz: go test -list failed in $dir"
    exit 1
  fi
  while read -r name; do
    [[ $name =~ ^Fuzz[A-Za-z0-9_]*$ ]] || continue
    if [[ -z $FILTER ]] || grep -qE -- "$FILTER" <<<"$name" || grep -qE -- "$FILTER" <<<"${dir#./}/$name"; then
      TARGETS+=("$mod $rel ${dir#./} $name")
    fi
  done <<<"$names"
done

if ((${#TARGETS[@]} == 0)); then
  sluice_warn "fuzz: no fuzz target found${FILTER:+ matching '$FILTER'}"
  exit 2
fi
if [[ ${SLUICE_FUZZ_LIST:-} == 1 ]]; then
  printf '%s\n' "${TARGETS[@]}"
  exit 0
fi

mkdir -p "$LOGDIR"
declare -a SUMMARY=()
FAILED=0
for t in "${TARGETS[@]}"; do
  read -r mod rel pkgdir name <<<"$t"
  shown=$pkgdir
  [[ $pkgdir == . ]] && shown=root
  log="$LOGDIR/${shown//\//_}_$name.log"
  sluice_log "fuzz $name in $shown for $DURATION${PARALLEL:+ (-parallel $PARALLEL)} (log $log)"
  args=(-C "$mod" -run='^$' -fuzz="^${name}\$" -fuzztime="$DURATION")
  [[ -n $PARALLEL ]] && args+=(-parallel "$PARALLEL")
  t0=$SECONDS
  set +e
  go test "${args[@]}" "$rel" >"$log" 2>&1
  rc=$?
  set -e
  # The last progress line: "fuzz: elapsed: 10m0s, execs: 123 (205/sec), new interesting: 4 (total: 40)"
  execs=$(grep -oE 'execs: [0-9]+' "$log" | tail -n 1 | awk '{print $2}' || true)
  fresh=$(grep -oE 'new interesting: [0-9]+' "$log" | tail -n 1 | awk '{print $3}' || true)
  line=$(printf '%-40s %9s execs, %4s new, %5ss' "$shown $name" "${execs:-?}" "${fresh:-?}" "$((SECONDS - t0))")
  if ((rc == 0)); then
    SUMMARY+=("ok    $line")
  else
    FAILED=1
    SUMMARY+=("FAIL  $line")
    grep -E -- '--- FAIL|Failing input written to|fuzz_test.go|_test.go:[0-9]+:|panic:' "$log" | head -n 20 >&2 || tail -n 20 "$log" >&2
    sluice_warn "fuzz $name failed: its crasher (if any) is under $pkgdir/testdata/fuzz/$name/; commit it with the fix"
  fi
  printf '%s\n' "${SUMMARY[-1]}"
done

echo
sluice_log "fuzz summary ($DURATION per target, $(go env GOVERSION))"
printf '    %s\n' "${SUMMARY[@]}"
if ((FAILED)); then
  echo "fuzz.sh: FAIL"
  exit 1
fi
echo "fuzz.sh: ok"
