#!/usr/bin/env bash
# Runs Debian's redis-server on 127.0.0.1:6379 for tests and local development.
# The port and the state dir can be changed (see Environment), so that a second
# server can run beside the first one: scripts/chaos.sh does that.
#
#   scripts/redis.sh start     start (idempotent); waits until PING answers PONG
#   scripts/redis.sh stop      SHUTDOWN NOSAVE (then SIGTERM/SIGKILL if needed)
#   scripts/redis.sh restart
#   scripts/redis.sh status    exit 0 if something answers PONG, 3 if not
#   scripts/redis.sh cli ARGS  redis-cli against it
#
# Installs the redis-server package with apt-get when it is missing. No
# systemd: the server runs daemonized with its pid file, log and dir under
#   ${SLUICE_REDIS_HOME:-$HOME/.cache/sluice/redis}
# and, by default, without persistence (--save '' --appendonly no).
#
# Environment:
#   SLUICE_REDIS_HOME           state dir (see above): pid file, log, and the
#                               AOF/RDB files if persistence is turned on;
#                               one per server
#   SLUICE_REDIS_PORT           port on 127.0.0.1 (6379)
#   SLUICE_REDIS_ARGS           extra redis-server arguments, word-split
#                               (e.g. "--appendonly yes")
#   SLUICE_REDIS_START_TIMEOUT  seconds to wait for PONG (30)
set -euo pipefail

readonly HOST=127.0.0.1
readonly PORT=${SLUICE_REDIS_PORT:-6379}

RHOME=${SLUICE_REDIS_HOME:-$HOME/.cache/sluice/redis}
readonly RHOME
readonly PIDFILE="$RHOME/redis.pid"
readonly LOGFILE="$RHOME/redis.log"
START_TIMEOUT=${SLUICE_REDIS_START_TIMEOUT:-30}

log() { printf 'redis: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

usage() {
  sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}" >&2
  exit 2
}

# apt's maintainer scripts would start the packaged service on install (on a
# machine without systemd, via /etc/init.d), taking port 6379 with Debian's
# config. A policy-rc.d that says "no" keeps it from doing that.
install_redis() {
  if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
    die "redis-server is not installed; install it (Debian: apt-get install redis-server)"
  fi
  log "installing redis-server with apt-get"
  local policy=/usr/sbin/policy-rc.d made_policy=""
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    made_policy=1
  fi
  local rc=0
  {
    apt-get update -qq &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server redis-tools
  } >"$RHOME/apt.log" 2>&1 || rc=$?
  [[ -n $made_policy ]] && rm -f "$policy"
  if ((rc != 0)); then
    tail -n 20 "$RHOME/apt.log" >&2
    die "apt-get install redis-server failed (rc $rc)"
  fi
}

ping_ok() {
  [[ $(redis-cli -h "$HOST" -p "$PORT" ping 2>/dev/null) == PONG ]]
}

# Prints the pid of the redis-server this script started; returns 1 if none.
our_pid() {
  local pid cmdline
  [[ -f $PIDFILE ]] || return 1
  pid=$(<"$PIDFILE")
  [[ $pid =~ ^[0-9]+$ && -r /proc/$pid/cmdline ]] || return 1
  cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
  [[ $cmdline == *redis-server* ]] || return 1
  printf '%s\n' "$pid"
}

cmd_start() {
  mkdir -p "$RHOME"
  exec 9>"$RHOME/.lock"
  flock -w 120 9 || die "could not lock $RHOME/.lock"
  if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
    install_redis
  fi
  local pid
  if pid=$(our_pid) && ping_ok; then
    log "already running (pid $pid) on $HOST:$PORT; log: $LOGFILE"
    return 0
  fi
  if ping_ok; then
    log "a redis-server this script did not start already answers on $HOST:$PORT: using it as is"
    return 0
  fi
  local extra=()
  # shellcheck disable=SC2206 # word splitting is the point
  [[ -n ${SLUICE_REDIS_ARGS:-} ]] && extra=(${SLUICE_REDIS_ARGS})
  log "starting $(redis-server --version | awk '{sub("v=", "", $3); print "redis-server " $3}') on $HOST:$PORT"
  # 9>&- : the daemon must not inherit (and so hold forever) our lock.
  redis-server --bind "$HOST" --port "$PORT" --daemonize yes \
    --pidfile "$PIDFILE" --logfile "$LOGFILE" --dir "$RHOME" \
    --save '' --appendonly no --protected-mode yes \
    "${extra[@]}" 9>&- || die "redis-server failed to start; log: $LOGFILE"
  local deadline=$((SECONDS + START_TIMEOUT))
  until ping_ok; do
    if ((SECONDS >= deadline)); then
      tail -n 30 "$LOGFILE" >&2 || true
      die "no PONG on $HOST:$PORT within $START_TIMEOUT s; log: $LOGFILE"
    fi
    sleep 0.2
  done
  pid=$(our_pid || echo '?')
  log "started (pid $pid) on $HOST:$PORT; log: $LOGFILE"
}

cmd_stop() {
  local pid
  if ! pid=$(our_pid); then
    rm -f "$PIDFILE"
    if ping_ok; then
      log "the redis-server on $HOST:$PORT was not started by this script: leaving it alone"
    else
      log "not running"
    fi
    return 0
  fi
  redis-cli -h "$HOST" -p "$PORT" shutdown nosave >/dev/null 2>&1 || true
  local deadline=$((SECONDS + 15))
  while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    deadline=$((SECONDS + 10))
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
    if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
  fi
  rm -f "$PIDFILE"
  log "stopped (pid $pid)"
}

cmd_status() {
  local pid
  if ! command -v redis-cli >/dev/null 2>&1; then
    echo "redis: not installed"
    return 3
  fi
  if pid=$(our_pid) && ping_ok; then
    echo "redis: running (pid $pid) on $HOST:$PORT; log: $LOGFILE"
  elif ping_ok; then
    echo "redis: running on $HOST:$PORT (not started by this script)"
  else
    echo "redis: not running"
    return 3
  fi
}

main() {
  (($# >= 1)) || usage
  local cmd=$1
  shift
  case $cmd in
    start) cmd_start ;;
    stop) cmd_stop ;;
    restart) cmd_stop && cmd_start ;;
    status) cmd_status ;;
    cli) exec redis-cli -h "$HOST" -p "$PORT" "$@" ;;
    -h | --help | help) usage ;;
    *) log "unknown command '$cmd'"; usage ;;
  esac
}

main "$@"
