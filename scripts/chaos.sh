#!/usr/bin/env bash
# The chaos soak: "no loss at the edges", measured.
#
#   scripts/chaos.sh kafka|redis [CYCLES]      (20 cycles by default)
#
# Builds examples/enrich-service and the driver examples/chaos once, starts a
# Kafka 4.4 broker or a redis-server of its own (other ports, its own state
# dir: the servers of scripts/test.sh on 9092/9093 and 6379 are never
# touched), and runs the driver. The driver runs the service against that
# server for CYCLES cycles while a producer keeps appending input events, and
# in each cycle injects faults drawn at random from a seeded generator:
# SIGKILL of the service (restarted with the same -instance-id), a restart of
# the broker or server (this script's restart command), network faults
# between the service and the broker through an in-process fault proxy
# (latency, reset_peer, black hole, timeout, bandwidth, proxy down/up), and
# 429 storms (Retry-After 1-2 s) and 5xx bursts from the fake model. Then it
# heals everything, waits for consumer lag 0, verifies, and prints one line:
#
#   {"cycles":20,"input_count":..,"enriched_count":..,"dead_letter_count":..,"missing_count":0,"duplicate_count":..}
#
# Exit status: 0 when missing_count is 0; 1 when events are missing (the work
# dir with the missing events, the schedule of faults and the service logs is
# kept, and the server's data too); 2 when the soak could not run.
# The driver prints its seed on stderr; replay a run with
#   SLUICE_CHAOS_SEED=<seed> scripts/chaos.sh kafka 20
#
# Environment:
#   SLUICE_CHAOS_SEED        seed of the run (default: a new one, printed)
#   SLUICE_CHAOS_HOME        state of the soak's servers, and the work dirs
#                            (~/.cache/sluice/chaos)
#   SLUICE_CHAOS_KAFKA_PORT  first of four ports for Kafka (19092): PLAINTEXT
#                            listener, controller, the proxied listener, and
#                            the fault proxy in front of it (advertised)
#   SLUICE_CHAOS_REDIS_PORT  first of two ports for Redis (16379): the server,
#                            and the fault proxy in front of it
#   SLUICE_CHAOS_ARGS        more driver flags, word-split (e.g. "-rate 500
#                            -hold 2s-6s"); see go run ./examples/chaos -h
#   SLUICE_CHAOS_KEEP=1      keep the work dir (service logs, schedule of
#                            faults) of a run that passed too
#   SLUICE_KEEP_SERVERS=1    leave the soak's server running afterwards
# The Kafka jars are shared with scripts/kafka.sh's default home
# (~/.cache/sluice/kafka-4.4.0/lib), fetched there if missing.
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$SLUICE_ROOT"

usage() {
  sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}" >&2
  exit 2
}

(($# >= 1 && $# <= 2)) || usage
SOURCE=$1
CYCLES=${2:-20}
[[ $SOURCE == kafka || $SOURCE == redis ]] || usage
[[ $CYCLES =~ ^[0-9]+$ ]] || usage

CHAOS_HOME=${SLUICE_CHAOS_HOME:-$HOME/.cache/sluice/chaos}
KPORT=${SLUICE_CHAOS_KAFKA_PORT:-19092}
RPORT=${SLUICE_CHAOS_REDIS_PORT:-16379}
for p in "$KPORT" "$RPORT"; do
  [[ $p =~ ^[0-9]+$ ]] || { sluice_warn "ports must be numbers"; exit 2; }
done
# Never the shared servers' ports.
for p in $KPORT $((KPORT + 1)) $((KPORT + 2)) $((KPORT + 3)) $RPORT $((RPORT + 1)); do
  case $p in
    9092 | 9093 | 6379)
      sluice_warn "port $p belongs to the shared servers of scripts/test.sh; pick other SLUICE_CHAOS_*_PORT"
      exit 2
      ;;
  esac
done

sluice_go_env
mkdir -p "$CHAOS_HOME/bin" "$CHAOS_HOME/runs"
BIN=$CHAOS_HOME/bin
sluice_log "chaos: building enrich-service and the driver"
go build -o "$BIN/enrich-service" ./examples/enrich-service
go build -o "$BIN/chaos" ./examples/chaos

# The soak's own server, configured through the scripts' variables. They are
# exported, so that the driver's restart command sees them too.
if [[ $SOURCE == kafka ]]; then
  export SLUICE_KAFKA_HOME=$CHAOS_HOME/kafka
  export SLUICE_KAFKA_LIB=${SLUICE_KAFKA_LIB:-$HOME/.cache/sluice/kafka-4.4.0/lib}
  export SLUICE_KAFKA_PORT=$KPORT
  export SLUICE_KAFKA_CONTROLLER_PORT=$((KPORT + 1))
  export SLUICE_KAFKA_PROXY_LISTEN=127.0.0.1:$((KPORT + 2))
  export SLUICE_KAFKA_PROXY_ADVERTISE=127.0.0.1:$((KPORT + 3))
  SERVER=(scripts/kafka.sh)
  DRIVER_ARGS=(-source kafka -brokers "127.0.0.1:$KPORT"
    -proxy-upstream "$SLUICE_KAFKA_PROXY_LISTEN" -proxy-listen "$SLUICE_KAFKA_PROXY_ADVERTISE")
  STATE=$SLUICE_KAFKA_HOME/data
else
  export SLUICE_REDIS_HOME=$CHAOS_HOME/redis
  export SLUICE_REDIS_PORT=$RPORT
  # Persistence, or a restart would lose every stream: each write is on
  # disk before it is answered.
  export SLUICE_REDIS_ARGS="--appendonly yes --appendfsync always --appenddirname appendonlydir"
  SERVER=(scripts/redis.sh)
  DRIVER_ARGS=(-source redis -redis-addr "127.0.0.1:$RPORT"
    -proxy-upstream "127.0.0.1:$RPORT" -proxy-listen "127.0.0.1:$((RPORT + 1))")
  STATE=$SLUICE_REDIS_HOME/appendonlydir
fi

RC=2
# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
  local rc=$?
  ((rc != 0)) && RC=$rc
  if [[ ${SLUICE_KEEP_SERVERS:-} == 1 ]]; then
    sluice_log "chaos: SLUICE_KEEP_SERVERS=1: leaving the $SOURCE server running"
  else
    "${SERVER[@]}" stop >/dev/null 2>&1 || true
    if ((RC == 0)); then
      rm -rf "$STATE" # a passed run's topics and streams are of no more use
    else
      sluice_log "chaos: the $SOURCE server's data is kept in $STATE"
    fi
  fi
  exit "$RC"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

t0=$SECONDS
"${SERVER[@]}" start
WORKDIR=$CHAOS_HOME/runs/$SOURCE-$(date +%Y%m%d-%H%M%S)-$$
EXTRA=()
# shellcheck disable=SC2206 # word splitting is the point
[[ -n ${SLUICE_CHAOS_ARGS:-} ]] && EXTRA=(${SLUICE_CHAOS_ARGS})
[[ -n ${SLUICE_CHAOS_SEED:-} ]] && EXTRA+=(-seed "$SLUICE_CHAOS_SEED")

set +e
"$BIN/chaos" "${DRIVER_ARGS[@]}" -cycles "$CYCLES" -service "$BIN/enrich-service" \
  -restart-broker "$(printf '%q restart' "$SLUICE_ROOT/${SERVER[0]}")" -work "$WORKDIR" "${EXTRA[@]}"
RC=$?
set -e
if ((RC == 0)) && [[ ${SLUICE_CHAOS_KEEP:-} != 1 ]]; then
  rm -rf "$WORKDIR"
else
  sluice_log "chaos: work dir kept: $WORKDIR"
fi
sluice_log "chaos: $SOURCE, $CYCLES cycles: exit $RC in $((SECONDS - t0)) s"
exit "$RC"
