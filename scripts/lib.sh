# shellcheck shell=bash
# Shared by scripts/test.sh and scripts/bench.sh (sourced, not run).
#
# sluice_start_servers [--secure]
#                       makes a Kafka broker and a Redis server available and
#                       exports KAFKA_BROKERS and REDIS_ADDR. A variable the
#                       caller already set is used as is (nothing is started
#                       for it). A server that is already running is reused and
#                       left running afterwards. With --secure the servers it
#                       starts or reuses also run their secured mode (a running
#                       one is restarted into it), and the variables of their
#                       env files (KAFKA_SECURE_*, REDIS_TLS_*, REDIS_ACL_*) are
#                       exported for the tests.
# sluice_start_model    makes a real model server available (scripts/model.sh:
#                       llama.cpp with a small model) and exports
#                       SLUICE_MODEL_URL and SLUICE_MODEL, unless the caller
#                       set SLUICE_MODEL_URL; reused when already running.
# sluice_stop_servers   stops only the servers that sluice_start_servers and
#                       sluice_start_model started themselves;
#                       SLUICE_KEEP_SERVERS=1 keeps them up.

SLUICE_SCRIPTS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck disable=SC2034 # used by the scripts that source this file
SLUICE_ROOT=$(cd "$SLUICE_SCRIPTS/.." && pwd)
SLUICE_STARTED_KAFKA=""
SLUICE_STARTED_REDIS=""
SLUICE_STARTED_MODEL=""

sluice_log() { printf '==> %s\n' "$*" >&2; }
sluice_warn() { printf '==> WARNING: %s\n' "$*" >&2; }

# Go settings every script wants; only filled in when the caller has not.
sluice_go_env() {
  if [[ -z ${GOFLAGS:-} ]]; then
    export GOFLAGS=-buildvcs=false
  fi
  command -v go >/dev/null 2>&1 || {
    sluice_warn "go is not on PATH"
    return 1
  }
  local gobin
  gobin=$(go env GOBIN)
  [[ -n $gobin ]] || gobin="$(go env GOPATH)/bin"
  case ":$PATH:" in
    *":$gobin:"*) ;;
    *) export PATH="$PATH:$gobin" ;;
  esac
}

sluice_start_servers() {
  local secure=()
  [[ ${1:-} == --secure ]] && secure=(--secure)
  if [[ -n ${KAFKA_BROKERS:-} ]]; then
    sluice_log "Kafka: using KAFKA_BROKERS=$KAFKA_BROKERS (not starting one)"
  else
    if "$SLUICE_SCRIPTS/kafka.sh" status >/dev/null 2>&1; then
      sluice_log "Kafka: already running; reusing it"
      if ((${#secure[@]})); then
        "$SLUICE_SCRIPTS/kafka.sh" start --secure || return 1
      fi
    else
      sluice_log "Kafka: starting (scripts/kafka.sh start ${secure[*]})"
      "$SLUICE_SCRIPTS/kafka.sh" start "${secure[@]}" || return 1
      SLUICE_STARTED_KAFKA=1
    fi
    export KAFKA_BROKERS=127.0.0.1:${SLUICE_KAFKA_PORT:-9092}
    if ((${#secure[@]})); then
      sluice_source_env "$("$SLUICE_SCRIPTS/kafka.sh" secure-env)" || return 1
    fi
  fi

  if [[ -n ${REDIS_ADDR:-} ]]; then
    sluice_log "Redis: using REDIS_ADDR=$REDIS_ADDR (not starting one)"
  else
    if "$SLUICE_SCRIPTS/redis.sh" status >/dev/null 2>&1; then
      sluice_log "Redis: already running; reusing it"
      if ((${#secure[@]})); then
        "$SLUICE_SCRIPTS/redis.sh" start --secure || return 1
      fi
    else
      sluice_log "Redis: starting (scripts/redis.sh start ${secure[*]})"
      "$SLUICE_SCRIPTS/redis.sh" start "${secure[@]}" || return 1
      SLUICE_STARTED_REDIS=1
    fi
    export REDIS_ADDR=127.0.0.1:${SLUICE_REDIS_PORT:-6379}
    if ((${#secure[@]})); then
      sluice_source_env "$("$SLUICE_SCRIPTS/redis.sh" secure-env)" || return 1
    fi
  fi
}

sluice_start_model() {
  if [[ -n ${SLUICE_MODEL_URL:-} ]]; then
    sluice_log "model: using SLUICE_MODEL_URL=$SLUICE_MODEL_URL SLUICE_MODEL=${SLUICE_MODEL:-} (not starting one)"
    return 0
  fi
  local vars
  if "$SLUICE_SCRIPTS/model.sh" status >/dev/null 2>&1; then
    sluice_log "model: already running; reusing it"
    vars=$("$SLUICE_SCRIPTS/model.sh" env) || return 1
  else
    sluice_log "model: starting (scripts/model.sh start)"
    vars=$("$SLUICE_SCRIPTS/model.sh" start) || return 1
    SLUICE_STARTED_MODEL=1
  fi
  local line
  while IFS= read -r line; do
    line=${line#export }
    case $line in
      SLUICE_MODEL_URL=* | SLUICE_MODEL=*) export "${line?}" ;;
    esac
  done <<<"$vars"
}

# sluice_source_env FILE exports the VAR=value lines of a secured mode's env
# file.
sluice_source_env() {
  [[ -f $1 ]] || {
    sluice_warn "no env file '$1'"
    return 1
  }
  set -a
  # shellcheck disable=SC1090 # written by scripts/kafka.sh or scripts/redis.sh
  source "$1"
  set +a
}

sluice_stop_servers() {
  if [[ ${SLUICE_KEEP_SERVERS:-} == 1 ]]; then
    [[ -n $SLUICE_STARTED_KAFKA$SLUICE_STARTED_REDIS$SLUICE_STARTED_MODEL ]] &&
      sluice_log "SLUICE_KEEP_SERVERS=1: leaving the servers running"
    return 0
  fi
  if [[ -n $SLUICE_STARTED_KAFKA ]]; then
    "$SLUICE_SCRIPTS/kafka.sh" stop || true
    SLUICE_STARTED_KAFKA=""
  fi
  if [[ -n $SLUICE_STARTED_REDIS ]]; then
    "$SLUICE_SCRIPTS/redis.sh" stop || true
    SLUICE_STARTED_REDIS=""
  fi
  if [[ -n $SLUICE_STARTED_MODEL ]]; then
    "$SLUICE_SCRIPTS/model.sh" stop || true
    SLUICE_STARTED_MODEL=""
  fi
  return 0
}

# Splits "$@" into go test flags (array SLUICE_FLAGS) and package patterns
# (array SLUICE_PKGS): patterns are the arguments that look like ./x, ../x, .,
# all or a path in this module; with none given, SLUICE_PKGS is ./... .
# A flag's separate value must not look like a package (write -run=X).
sluice_split_args() {
  SLUICE_FLAGS=()
  SLUICE_PKGS=()
  local a
  for a in "$@"; do
    case $a in
      . | ./* | ../* | all | github.com/sluicehq/*) SLUICE_PKGS+=("$a") ;;
      *) SLUICE_FLAGS+=("$a") ;;
    esac
  done
  ((${#SLUICE_PKGS[@]} > 0)) || SLUICE_PKGS=(./...)
}
