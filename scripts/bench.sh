#!/usr/bin/env bash
# Benchmarks against real servers:
#
#   scripts/bench.sh [go test flags] [packages]
#
# Starts Kafka and Redis like scripts/test.sh (or uses KAFKA_BROKERS /
# REDIS_ADDR when set), runs go test -run='^$' -bench=. -benchmem [flags]
# ./... (your packages replace ./...; a later -bench=X overrides -bench=.),
# and stops the servers it started (SLUICE_KEEP_SERVERS=1 keeps them).
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

sluice_split_args "$@"
sluice_log "go test -run='^\$' -bench=. -benchmem ${SLUICE_FLAGS[*]} ${SLUICE_PKGS[*]}"
go test -run='^$' -bench=. -benchmem "${SLUICE_FLAGS[@]}" "${SLUICE_PKGS[@]}"
