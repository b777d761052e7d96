#!/usr/bin/env bash
# Benchmarks against real servers:
#
#   scripts/bench.sh [go test flags] [packages]
#
# Starts Kafka and Redis like scripts/test.sh (or uses KAFKA_BROKERS /
# REDIS_ADDR when set), runs go test -run='^$' -bench=. -benchmem [flags]
# ./... (your packages replace ./...; a later -bench=X overrides -bench=.),
# and stops the servers it started (SLUICE_KEEP_SERVERS=1 keeps them).
#
#   scripts/bench.sh compare
#
# runs, in one invocation, the hand-written sarama and go-redis loops and
# Sluice with its defaults, once to warm the brokers up (not counted), then
# interleaved, SLUICE_COMPARE_RUNS times (5), and
# prints the medians: the ratio table (Kafka pass-through of 200,000 events,
# Redis pass-through of 100,000, a 20ms model with 256 calls at once against
# the Little's-law bound), end-to-end latency with a 5ms model at half of the
# load measured for it, memory with a 200,000-event backlog and a 60s model,
# and the most events in flight (what a crash or rebalance redelivers),
# then every round's pass-through ratio.
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$SLUICE_ROOT"

trap sluice_stop_servers EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

sluice_go_env
[[ -f go.mod ]] || {
  sluice_warn "no go.mod in $SLUICE_ROOT: nothing to benchmark"
  exit 0
}
go mod download
sluice_start_servers
sluice_log "KAFKA_BROKERS=$KAFKA_BROKERS REDIS_ADDR=$REDIS_ADDR"

if [[ ${1:-} == compare ]]; then
  shift
  # shellcheck source=scripts/compare.sh
  source "$SLUICE_SCRIPTS/compare.sh"
  sluice_compare "$@"
  exit 0
fi

sluice_split_args "$@"
sluice_log "go test -run='^\$' -bench=. -benchmem ${SLUICE_FLAGS[*]} ${SLUICE_PKGS[*]}"
go test -run='^$' -bench=. -benchmem "${SLUICE_FLAGS[@]}" "${SLUICE_PKGS[@]}"
