#!/usr/bin/env bash
# The project's test command (CI runs exactly this through .ci/run).
#
#   scripts/test.sh [go test flags] [packages]
#
# 1. go mod download
# 2. a real Kafka 4.4 broker and redis-server (scripts/kafka.sh, scripts/redis.sh)
#    unless KAFKA_BROKERS / REDIS_ADDR are already set; exports both. Both run
#    their secured mode too (start --secure: Kafka's SASL_SSL listener with
#    SCRAM users, Redis's TLS port and ACL user), whose env files are exported
#    for the secured tests (TestConformanceSecure, TestSecure*,
#    TestEnrichService*Secure, TestSecretsNeverShown). With KAFKA_BROKERS or
#    REDIS_ADDR set, set the KAFKA_SECURE_* / REDIS_TLS_* / REDIS_ACL_*
#    variables too, or those tests skip (fail under CI=true). Then Debian's
#    prometheus package (promtool and the server, which the deploy module's
#    rule checks and the e2e scrape test run) when it is missing, without
#    starting its system service; and, when the packages include the
#    real-model tests (./openai and ./examples/e2e, so also ./...), a real
#    model server (scripts/model.sh: llama.cpp with SmolLM2-135M-Instruct)
#    unless SLUICE_MODEL_URL is set; exports SLUICE_MODEL_URL and SLUICE_MODEL
# 3. go vet ./... in every module (the root and each go.mod below it, e.g.
#    integration/testcontainers)
# 4. staticcheck ./... in every module (installed with go install when
#    missing; skipped with a warning if that fails)
# 5. go test -race -count=1 [your flags] ./...   (your packages replace ./...)
#    in the root module, then in every other module (only with ./...); the
#    output goes through internal/cmd/testreport
#    then the conformance suite's ServerRestart subtests, which restart the
#    local servers, alone in a pass of their own
# 6. a short chaos soak once the tests passed: scripts/chaos.sh kafka N and
#    scripts/chaos.sh redis N with N=${SLUICE_CHAOS_CYCLES:-3}, each against a
#    server of its own on other ports (SLUICE_CHAOS_CYCLES=0 skips it; so do
#    custom packages or flags)
# 7. a short fuzz pass: scripts/fuzz.sh runs every fuzz target of every
#    module for ${SLUICE_FUZZTIME:-5s} (SLUICE_FUZZTIME=0 skips it); the long
#    run is scripts/fuzz.sh 10m
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
FUZZTIME=${SLUICE_FUZZTIME:-5s}
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

# Every module of the repository: the root first, then each go.mod below it.
mapfile -t SLUICE_MODULES < <(
  echo .
  find . -mindepth 2 -name go.mod -not -path './.git/*' -not -path '*/testdata/*' -printf '%h\n' | sort
)

sluice_log "go mod download (${SLUICE_MODULES[*]})"
for mod in "${SLUICE_MODULES[@]}"; do (cd "$mod" && go mod download); done

if [[ -z $(go list ./... 2>/dev/null) ]]; then
  sluice_warn "no Go packages yet: nothing to test"
  exit 0
fi

sluice_start_servers --secure
sluice_log "KAFKA_BROKERS=$KAFKA_BROKERS REDIS_ADDR=$REDIS_ADDR${KAFKA_SECURE_BROKERS:+ KAFKA_SECURE_BROKERS=$KAFKA_SECURE_BROKERS}${REDIS_TLS_ADDR:+ REDIS_TLS_ADDR=$REDIS_TLS_ADDR}"

# Prometheus: deploy/ runs promtool on the alert rules, and examples/e2e runs
# a Prometheus server of its own on a loopback port. apt's maintainer scripts
# would start the packaged service; a policy-rc.d that says "no" stops that.
install_prometheus() {
  command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1 && return 0
  if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
    sluice_warn "prometheus is not installed (Debian: apt-get install prometheus); its tests skip, or fail under CI=true"
    return 0
  fi
  sluice_log "installing prometheus (promtool and the server) with apt-get"
  local policy=/usr/sbin/policy-rc.d made_policy="" rc=0
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    made_policy=1
  fi
  {
    apt-get update -qq &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus
  } >"$WORK/apt-prometheus.log" 2>&1 || rc=$?
  [[ -n $made_policy ]] && rm -f "$policy"
  if ((rc != 0)); then
    tail -n 20 "$WORK/apt-prometheus.log" >&2
    sluice_warn "apt-get install prometheus failed (rc $rc); its tests skip, or fail under CI=true"
  fi
}
install_prometheus
# The real-model tests (openai's TestRealModel*, e2e's
# TestEnrichServiceRealModel) need the model server; other runs do not pay
# for it.
sluice_split_args "$@"
needs_model=0
for p in "${SLUICE_PKGS[@]}"; do
  case $p in
    ./... | all | ./openai | ./openai/... | ./examples/... | ./examples/e2e | ./examples/e2e/... | \
      github.com/sluicehq/sluice/openai* | github.com/sluicehq/sluice/examples/e2e*) needs_model=1 ;;
  esac
done
if ((needs_model)); then
  sluice_start_model || sluice_warn "the model server did not start; the real-model tests will skip (and fail under CI=true)"
fi

# ------------------------------------------------------------------ vet
vet_ok=1
for mod in "${SLUICE_MODULES[@]}"; do
  sluice_log "go vet ./... (module $mod)"
  go vet -C "$mod" ./... || vet_ok=0
done
if ((vet_ok)); then record vet ok; else record vet FAIL; fi

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
  sc_ok=1
  for mod in "${SLUICE_MODULES[@]}"; do
    sluice_log "staticcheck ./... (module $mod)"
    (cd "$mod" && "$SC" ./...) || sc_ok=0
  done
  if ((sc_ok)); then record staticcheck ok; else record staticcheck FAIL; fi
else
  sluice_warn "staticcheck could not be installed; skipping it"
  record staticcheck "skipped (install failed)"
fi

# ------------------------------------------------------------------ tests
# internal/cmd/testreport renders `go test -json`: package lines (ok/FAIL),
# build errors, and the output of failed and skipped tests only; it counts
# results and lists the tests skipped for want of a server or integration
# environment.
GOFLAGS=-buildvcs=false go build -o "$WORK/testreport" ./internal/cmd/testreport
report() { "$WORK/testreport" -counts "$WORK/counts" "$@"; }

mkdir -p "$LOGDIR"
JSONLOG="$LOGDIR/go-test.json"
sluice_log "go test -race -count=1 ${SLUICE_FLAGS[*]} ${SLUICE_PKGS[*]}"
set +e
go test -json -race -count=1 "${SLUICE_FLAGS[@]}" "${SLUICE_PKGS[@]}" 2>&1 |
  tee "$JSONLOG" | report -env-skips "$WORK/env-skips.txt"
TEST_RC=${PIPESTATUS[0]}
set -e
# The other modules (go.mod files below the root, e.g. integration/testcontainers)
# run after the root module's packages, with the same flags, when the packages
# are the default ./... . Their skips (no Docker engine) are not integration
# skips: they need no server of ours.
if ((${#SLUICE_PKGS[@]} == 1)) && [[ ${SLUICE_PKGS[0]} == ./... ]]; then
  for mod in "${SLUICE_MODULES[@]:1}"; do
    sluice_log "go test -race -count=1 ${SLUICE_FLAGS[*]} ./... (module $mod)"
    set +e
    go test -C "$mod" -json -race -count=1 "${SLUICE_FLAGS[@]}" ./... 2>&1 |
      tee -a "$JSONLOG" | report
    rc=${PIPESTATUS[0]}
    set -e
    ((rc == 0)) || TEST_RC=$rc
  done
fi
if ((TEST_RC == 0)); then record "go test" ok; else record "go test" "FAIL (exit $TEST_RC; raw log $JSONLOG)"; fi

# Server restarts: the conformance suite's ServerRestart subtests restart the
# local Kafka and Redis, so they run here, one package at a time, when
# nothing else uses the servers (and only against the servers of our scripts).
if ((${#SLUICE_FLAGS[@]} == 0 && ${#SLUICE_PKGS[@]} == 1)) && [[ ${SLUICE_PKGS[0]} == ./... ]] &&
  [[ $KAFKA_BROKERS == 127.0.0.1:9092 && $REDIS_ADDR == 127.0.0.1:6379 ]]; then
  sluice_log "server restarts: SLUICE_SERVER_RESTART=1 go test -p 1 -run TestConformance/ServerRestart ./kafka ./redisstream"
  set +e
  SLUICE_SERVER_RESTART=1 go test -json -race -count=1 -p 1 -run '^TestConformance$/^ServerRestart$' ./kafka ./redisstream 2>&1 |
    tee "$LOGDIR/go-test-restarts.json" | report -env-skips "$WORK/env-skips-restarts.txt"
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
# scripts/fuzz.sh finds every target itself (go test -list '^Fuzz' in each
# package that has one) and runs them one after the other; a crasher stays
# under <package>/testdata/fuzz/<FuzzName>/.
if [[ $FUZZTIME == 0 || $FUZZTIME == 0s ]]; then
  record fuzz "skipped (SLUICE_FUZZTIME=$FUZZTIME)"
else
  t0=$SECONDS
  set +e
  scripts/fuzz.sh "$FUZZTIME" >"$WORK/fuzz.out"
  rc=$?
  set -e
  cat "$WORK/fuzz.out"
  n=$(grep -cE '^(ok|FAIL)  ' "$WORK/fuzz.out" || true)
  case $rc in
    0) record fuzz "ok ($n targets, $FUZZTIME each, $((SECONDS - t0)) s)" ;;
    2) record fuzz "FAIL (no fuzz target found)" ;;
    *) record fuzz "FAIL ($(grep -c '^FAIL  ' "$WORK/fuzz.out" || true) of $n targets; crashers under <package>/testdata/fuzz)" ;;
  esac
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
