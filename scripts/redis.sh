#!/usr/bin/env bash
# Runs Debian's redis-server on 127.0.0.1:6379 for tests and local development.
# The port and the state dir can be changed (see Environment), so that a second
# server can run beside the first one: scripts/chaos.sh does that.
#
#   scripts/redis.sh start [--secure]    start (idempotent); waits until PING answers PONG
#   scripts/redis.sh stop      SHUTDOWN NOSAVE (then SIGTERM/SIGKILL if needed)
#   scripts/redis.sh restart [--secure]  keeps the secured mode if it was on
#   scripts/redis.sh secure-env          print the secured mode's env file
#   scripts/redis.sh status    exit 0 if something answers PONG, 3 if not
#   scripts/redis.sh cli ARGS  redis-cli against it
#
# Installs the redis-server package with apt-get when it is missing. No
# systemd: the server runs daemonized with its pid file, log and dir under
#   ${SLUICE_REDIS_HOME:-$HOME/.cache/sluice/redis}
# and, by default, without persistence (--save '' --appendonly no).
#
# Secured mode (--secure): the server also listens with TLS on
# 127.0.0.1:SLUICE_REDIS_TLS_PORT (6380), with a certificate for
# localhost/127.0.0.1 signed by a CA of its own (scripts/certs.sh, in
# $SLUICE_REDIS_HOME/secure; no client certificates), and has an ACL user
# "sluice" (random password, kept in $SLUICE_REDIS_HOME/secure) that may use
# only the stream commands Sluice needs, and INFO, on the keys sluice:*. The
# address, the CA files and the credentials are written to
# $SLUICE_REDIS_HOME/secure/redis-secure.env (mode 600), for example:
#   set -a; . "$(scripts/redis.sh secure-env)"; set +a
# The plain port and its default user stay as they are for everything else.
#
# Environment:
#   SLUICE_REDIS_HOME           state dir (see above): pid file, log, and the
#                               AOF/RDB files if persistence is turned on;
#                               one per server
#   SLUICE_REDIS_PORT           port on 127.0.0.1 (6379)
#   SLUICE_REDIS_ARGS           extra redis-server arguments, word-split
#                               (e.g. "--appendonly yes")
#   SLUICE_REDIS_TLS_PORT       TLS port of --secure (6380)
#   SLUICE_REDIS_START_TIMEOUT  seconds to wait for PONG (30)
set -euo pipefail

readonly HOST=127.0.0.1
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readonly SCRIPT_DIR
readonly PORT=${SLUICE_REDIS_PORT:-6379}
readonly TLS_PORT=${SLUICE_REDIS_TLS_PORT:-6380}
SECURE=""

RHOME=${SLUICE_REDIS_HOME:-$HOME/.cache/sluice/redis}
readonly RHOME
readonly PIDFILE="$RHOME/redis.pid"
readonly LOGFILE="$RHOME/redis.log"
readonly SECDIR="$RHOME/secure"
readonly CREDS="$SECDIR/credentials"
readonly SECURE_CONF="$SECDIR/redis-secure.conf"
readonly SECURE_ENV="$SECDIR/redis-secure.env"
readonly MODEFILE="$RHOME/mode"
readonly ACL_USER=sluice
readonly ACL_KEYS='sluice:*'
# What the ACL user may run: the stream commands of the redisstream source
# and sink (and of the verify example), MULTI/EXEC for the sink's dead
# letters, INFO for the server version check, and the connection commands
# (AUTH, HELLO, PING, CLIENT SETNAME...).
readonly ACL_COMMANDS='+@connection +info +xadd +xreadgroup +xack +xgroup|create +xautoclaim +xclaim +xpending +xinfo|groups +xinfo|stream +xrange +xlen +multi +exec +discard'
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

# The ACL user's password: made once, kept in $CREDS.
load_credentials() {
  ACL_PASSWORD=""
  if [[ ! -s $CREDS ]]; then
    mkdir -p "$SECDIR"
    chmod 700 "$SECDIR"
    (
      umask 077
      printf 'ACL_PASSWORD=%s\n' "$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')" >"$CREDS.tmp"
    )
    mv -f "$CREDS.tmp" "$CREDS"
  fi
  # shellcheck disable=SC1090 # written just above
  source "$CREDS"
  [[ -n $ACL_PASSWORD ]] || die "no password in $CREDS"
}

# The config file of the secured mode: the TLS port and the ACL user, whose
# password is given as its SHA-256 so that the plain text is only in the env
# file.
write_secure_conf() {
  "$SCRIPT_DIR/certs.sh" "$SECDIR" || die "scripts/certs.sh $SECDIR failed"
  load_credentials
  local hash
  hash=$(printf '%s' "$ACL_PASSWORD" | sha256sum | cut -d' ' -f1)
  (
    umask 077
    cat >"$SECURE_CONF" <<EOF
# Written by scripts/redis.sh start --secure.
tls-port $TLS_PORT
tls-cert-file $SECDIR/server.pem
tls-key-file $SECDIR/server.key
tls-ca-cert-file $SECDIR/ca.pem
tls-auth-clients no
user $ACL_USER on #$hash resetkeys ~$ACL_KEYS resetchannels -@all $ACL_COMMANDS
EOF
    cat >"$SECURE_ENV.tmp" <<EOF
# Written by scripts/redis.sh start --secure: the server's TLS port and ACL user.
REDIS_TLS_ADDR=$HOST:$TLS_PORT
REDIS_TLS_CA_FILE=$SECDIR/ca.pem
REDIS_TLS_OTHER_CA_FILE=$SECDIR/other-ca.pem
REDIS_TLS_WRONG_HOST_CERT_FILE=$SECDIR/wrong-host.pem
REDIS_TLS_WRONG_HOST_KEY_FILE=$SECDIR/wrong-host.key
REDIS_TLS_PLAIN_ADDR=$HOST:$PORT
REDIS_ACL_USER=$ACL_USER
REDIS_ACL_PASSWORD=$ACL_PASSWORD
REDIS_ACL_KEYS=$ACL_KEYS
EOF
  )
  mv -f "$SECURE_ENV.tmp" "$SECURE_ENV"
}

tls_ok() {
  [[ $(redis-cli -h "$HOST" -p "$TLS_PORT" --tls --cacert "$SECDIR/ca.pem" ping 2>/dev/null) == PONG ]]
}

cmd_start() {
  mkdir -p "$RHOME"
  exec 9>"$RHOME/.lock"
  flock -w 120 9 || die "could not lock $RHOME/.lock"
  if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
    install_redis
  fi
  local pid mode=""
  [[ -f $MODEFILE ]] && mode=$(<"$MODEFILE")
  if pid=$(our_pid) && ping_ok; then
    if [[ -n $SECURE && $mode != secure ]]; then
      log "running (pid $pid) without TLS and the ACL user: restarting it with them"
      stop_server "$pid"
    else
      log "already running (pid $pid) on $HOST:$PORT; log: $LOGFILE"
      [[ $mode == secure ]] && log "secured (TLS, ACL user $ACL_USER) on $HOST:$TLS_PORT; env file: $SECURE_ENV"
      return 0
    fi
  fi
  if ping_ok; then
    [[ -n $SECURE ]] && die "a redis-server this script did not start answers on $HOST:$PORT: it cannot add the secured mode to it"
    log "a redis-server this script did not start already answers on $HOST:$PORT: using it as is"
    return 0
  fi
  local conf=()
  if [[ -n $SECURE ]]; then
    if (exec 3<>"/dev/tcp/$HOST/$TLS_PORT") 2>/dev/null; then
      die "$HOST:$TLS_PORT (SLUICE_REDIS_TLS_PORT) is taken by another process"
    fi
    write_secure_conf
    conf=("$SECURE_CONF")
    printf 'secure\n' >"$MODEFILE"
  else
    rm -f "$MODEFILE"
  fi
  local extra=()
  # shellcheck disable=SC2206 # word splitting is the point
  [[ -n ${SLUICE_REDIS_ARGS:-} ]] && extra=(${SLUICE_REDIS_ARGS})
  log "starting $(redis-server --version | awk '{sub("v=", "", $3); print "redis-server " $3}') on $HOST:$PORT"
  # 9>&- : the daemon must not inherit (and so hold forever) our lock.
  redis-server "${conf[@]}" --bind "$HOST" --port "$PORT" --daemonize yes \
    --pidfile "$PIDFILE" --logfile "$LOGFILE" --dir "$RHOME" \
    --save '' --appendonly no --protected-mode yes \
    "${extra[@]}" 9>&- || die "redis-server failed to start; log: $LOGFILE"
  local deadline=$((SECONDS + START_TIMEOUT))
  until ping_ok && { [[ -z $SECURE ]] || tls_ok; }; do
    if ((SECONDS >= deadline)); then
      tail -n 30 "$LOGFILE" >&2 || true
      die "no PONG on $HOST:$PORT within $START_TIMEOUT s; log: $LOGFILE"
    fi
    sleep 0.2
  done
  pid=$(our_pid || echo '?')
  log "started (pid $pid) on $HOST:$PORT; log: $LOGFILE"
  [[ -n $SECURE ]] && log "secured (TLS, ACL user $ACL_USER) on $HOST:$TLS_PORT; env file: $SECURE_ENV"
  return 0
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
  stop_server "$pid"
  log "stopped (pid $pid)"
}

stop_server() {
  local pid=$1
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

# The --secure flag of start and restart.
secure_flag() {
  (($# == 0)) && return 0
  [[ $# == 1 && $1 == --secure ]] || die "expected --secure or nothing, got '$*'"
  SECURE=1
}

main() {
  (($# >= 1)) || usage
  local cmd=$1
  shift
  case $cmd in
    start) secure_flag "$@" && cmd_start ;;
    stop) cmd_stop ;;
    restart)
      secure_flag "$@"
      # A restart keeps the secured mode of the server it restarts.
      if [[ -f $MODEFILE && $(<"$MODEFILE") == secure ]]; then SECURE=1; fi
      cmd_stop && cmd_start
      ;;
    secure-env)
      [[ -f $SECURE_ENV ]] || die "no $SECURE_ENV: run '$0 start --secure' first"
      printf '%s\n' "$SECURE_ENV"
      ;;
    status) cmd_status ;;
    cli) exec redis-cli -h "$HOST" -p "$PORT" "$@" ;;
    -h | --help | help) usage ;;
    *) log "unknown command '$cmd'"; usage ;;
  esac
}

main "$@"
