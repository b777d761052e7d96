#!/usr/bin/env bash
# Runs a single-node Apache Kafka 4.4.0 (KRaft, broker+controller in one JVM)
# on 127.0.0.1:9092 for tests, examples and local development. The ports and
# the state dir can be changed (see Environment), so that a second broker can
# run beside the first one: scripts/chaos.sh does that.
#
#   scripts/kafka.sh start [--secure]       start (idempotent); waits until it serves
#   scripts/kafka.sh stop                   SIGTERM, bounded wait, then SIGKILL
#   scripts/kafka.sh restart [--secure]     keeps the secured mode if it was on
#   scripts/kafka.sh secure-env             print the secured mode's env file
#   scripts/kafka.sh status                 exit 0 if running, 3 if not
#   scripts/kafka.sh logs [-f] [LINES]      show (or follow) the broker log
#   scripts/kafka.sh topic-create NAME PARTITIONS
#   scripts/kafka.sh topics                 list topics
#   scripts/kafka.sh tool CLASS [ARGS...]   run any Kafka CLI main class, e.g.
#       tool org.apache.kafka.tools.consumer.group.ConsumerGroupCommand --list --bootstrap-server 127.0.0.1:9092
#   scripts/kafka.sh wipe                   stop and delete the data (keeps the jars)
#
# No tarball and no Docker: the jars come from Maven Central through
# scripts/kafka/pom.xml (fetched once with mvn). Jars, data and logs live in
#   ${SLUICE_KAFKA_HOME:-$HOME/.cache/sluice/kafka-4.4.0}
# so that they survive between runs on the same machine.
#
# Secured mode (--secure): the broker also listens with SASL_SSL on
# 127.0.0.1:SLUICE_KAFKA_SECURE_PORT (9094), with a certificate for
# localhost/127.0.0.1 signed by a CA of its own (scripts/certs.sh, in
# $SLUICE_KAFKA_HOME/secure), and SCRAM-SHA-512 and SCRAM-SHA-256 logins; a
# second SASL_SSL listener on SLUICE_KAFKA_WRONG_HOST_PORT (9095) presents a
# certificate for another host name, for tests of that failure. The
# authorizer is on (StandardAuthorizer): the PLAINTEXT and controller
# listeners (principal ANONYMOUS) and the users "sluice" and "sluice256" are
# super users; "sluice-limited" has only the ACLs someone grants it. The
# SCRAM users are created when the data dir is formatted (random passwords,
# kept in $SLUICE_KAFKA_HOME/secure); a data dir formatted without them is
# wiped first. The addresses, the CA files and the credentials are written to
# $SLUICE_KAFKA_HOME/secure/kafka-secure.env (mode 600), for example:
#   set -a; . "$(scripts/kafka.sh secure-env)"; set +a
# The PLAINTEXT listener stays as it is for everything else.
#
# Environment:
#   SLUICE_KAFKA_HOME          state dir (see above): config, data, logs, pid
#                              file; one per broker
#   SLUICE_KAFKA_LIB           folder of the jars ($SLUICE_KAFKA_HOME/lib). A
#                              second broker can point it at the first one's
#                              lib so that the jars are fetched only once
#   SLUICE_KAFKA_PORT          PLAINTEXT listener on 127.0.0.1 (9092)
#   SLUICE_KAFKA_CONTROLLER_PORT  KRaft controller listener on 127.0.0.1 (9093)
#   SLUICE_KAFKA_PROXY_LISTEN  optional host:port of a third listener, PROXIED,
#                              for clients that reach the broker through a
#                              TCP proxy (unset: no such listener)
#   SLUICE_KAFKA_PROXY_ADVERTISE  host:port that the PROXIED listener advertises
#                              in metadata: the proxy's own address, which
#                              forwards to SLUICE_KAFKA_PROXY_LISTEN. Needed
#                              because Kafka clients connect to the advertised
#                              address after bootstrap, so a proxy in front of
#                              a normal listener would carry only bootstrap
#   SLUICE_KAFKA_SECURE_PORT   SASL_SSL listener of --secure (9094)
#   SLUICE_KAFKA_WRONG_HOST_PORT  SASL_SSL listener of --secure with a
#                              certificate for another host name (9095)
#   SLUICE_KAFKA_START_TIMEOUT seconds to wait for the broker to serve (90)
#   SLUICE_KAFKA_STOP_TIMEOUT  seconds to wait after SIGTERM before SIGKILL (60)
#   SLUICE_KAFKA_HEAP          broker heap, -Xms and -Xmx (512m)
set -euo pipefail

readonly KAFKA_VERSION=4.4.0
readonly HOST=127.0.0.1
readonly PORT=${SLUICE_KAFKA_PORT:-9092}
readonly CONTROLLER_PORT=${SLUICE_KAFKA_CONTROLLER_PORT:-9093}
readonly BOOTSTRAP="$HOST:$PORT"
readonly PROXY_LISTEN=${SLUICE_KAFKA_PROXY_LISTEN:-}
readonly PROXY_ADVERTISE=${SLUICE_KAFKA_PROXY_ADVERTISE:-$PROXY_LISTEN}
readonly SECURE_PORT=${SLUICE_KAFKA_SECURE_PORT:-9094}
readonly WRONG_HOST_PORT=${SLUICE_KAFKA_WRONG_HOST_PORT:-9095}
SECURE=""

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readonly SCRIPT_DIR
readonly POM="$SCRIPT_DIR/kafka/pom.xml"
readonly LOG4J_SRC="$SCRIPT_DIR/kafka/log4j2.xml"

KHOME=${SLUICE_KAFKA_HOME:-$HOME/.cache/sluice/kafka-$KAFKA_VERSION}
readonly KHOME
LIB=${SLUICE_KAFKA_LIB:-$KHOME/lib}
readonly LIB
readonly CONF="$KHOME/config"
readonly DATA="$KHOME/data"
readonly LOGS="$KHOME/logs"
readonly PROPS="$CONF/server.properties"
readonly LOG4J="$CONF/log4j2.xml"
readonly PIDFILE="$KHOME/kafka.pid"
readonly LOGFILE="$LOGS/server.log"
readonly OUTFILE="$LOGS/kafka.out"
readonly DATA_STAMP="$KHOME/data.version"
readonly LIB_STAMP="$LIB/.complete"
readonly SECDIR="$KHOME/secure"
readonly CREDS="$SECDIR/credentials"
readonly SCRAM_STAMP="$KHOME/data.scram"
readonly SECURE_ENV="$SECDIR/kafka-secure.env"

START_TIMEOUT=${SLUICE_KAFKA_START_TIMEOUT:-90}
STOP_TIMEOUT=${SLUICE_KAFKA_STOP_TIMEOUT:-60}
HEAP=${SLUICE_KAFKA_HEAP:-512m}

log() { printf 'kafka: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
# shellcheck source=scripts/daemon.sh
source "$(dirname "${BASH_SOURCE[0]}")/daemon.sh"

usage() {
  sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}" >&2
  exit 2
}

# ---------------------------------------------------------------- helpers

# Serialise start/stop/fetch between concurrent callers (two test runs, say).
take_lock() { sluice_take_lock "$KHOME"; }

port_open() { sluice_port_open "$1" "$2"; }

# True if PID is a live broker JVM started with our server.properties.
is_our_broker() {
  local pid=$1 cmdline
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  [[ -r /proc/$pid/cmdline ]] || return 1
  cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
  [[ $cmdline == *kafka.Kafka*"$PROPS"* ]]
}

# Prints the pid of our running broker (from the pid file, or by scanning
# /proc if the pid file was lost); returns 1 if there is none.
broker_pid() {
  local pid=""
  if [[ -f $PIDFILE ]]; then
    pid=$(<"$PIDFILE")
    if is_our_broker "$pid"; then
      printf '%s\n' "$pid"
      return 0
    fi
  fi
  local d
  for d in /proc/[0-9]*; do
    pid=${d#/proc/}
    if is_our_broker "$pid"; then
      printf '%s\n' "$pid" >"$PIDFILE"
      printf '%s\n' "$pid"
      return 0
    fi
  done
  return 1
}

ensure_tools() {
  local missing=()
  command -v java >/dev/null 2>&1 || missing+=(openjdk-17-jre-headless)
  command -v mvn >/dev/null 2>&1 || missing+=(maven)
  [[ -n $SECURE ]] && ! command -v openssl >/dev/null 2>&1 && missing+=(openssl)
  ((${#missing[@]} == 0)) && return 0
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    log "installing ${missing[*]} with apt-get"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    die "missing ${missing[*]}: install Java 17+ and Maven"
  fi
}

# Fetches the jars into $LIB once. The stamp records a hash of the pom, so
# editing the pom (a version bump) fetches again.
ensure_jars() {
  local want have=""
  want=$(sha256sum "$POM" | cut -d' ' -f1)
  [[ -f $LIB_STAMP ]] && have=$(<"$LIB_STAMP")
  if [[ $have == "$want" ]]; then
    return 0
  fi
  ensure_tools
  # Another home may share this lib: lock it, and look again once locked.
  mkdir -p "$(dirname "$LIB")"
  exec 8>"$LIB.lock"
  flock -w 600 8 || die "could not lock $LIB.lock within 600 s"
  have=""
  [[ -f $LIB_STAMP ]] && have=$(<"$LIB_STAMP")
  if [[ $have == "$want" ]]; then
    exec 8>&-
    return 0
  fi
  log "fetching Kafka $KAFKA_VERSION jars from Maven Central into $LIB (first run only)"
  local tmp="$LIB.tmp" t0=$SECONDS
  rm -rf "$tmp"
  mkdir -p "$tmp"
  if ! mvn -B -q -Dstyle.color=never -f "$POM" package -Dkafka.lib.dir="$tmp" >"$KHOME/mvn.log" 2>&1; then
    tail -n 40 "$KHOME/mvn.log" >&2
    die "mvn failed; full output in $KHOME/mvn.log"
  fi
  compgen -G "$tmp/kafka_2.13-$KAFKA_VERSION.jar" >/dev/null || die "mvn ran but kafka_2.13-$KAFKA_VERSION.jar is missing from $tmp"
  printf '%s\n' "$want" >"$tmp/.complete"
  rm -rf "$LIB"
  mv "$tmp" "$LIB"
  log "jars ready in $((SECONDS - t0)) s ($(du -sh "$LIB" | cut -f1), $(find "$LIB" -name '*.jar' | wc -l) jars)"
  exec 8>&-
}

write_config() {
  mkdir -p "$CONF" "$DATA" "$LOGS"
  cp "$LOG4J_SRC" "$LOG4J"
  local listeners="PLAINTEXT://$HOST:$PORT,CONTROLLER://$HOST:$CONTROLLER_PORT"
  local advertised="PLAINTEXT://$HOST:$PORT"
  local protocols="CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"
  if [[ -n $PROXY_LISTEN ]]; then
    listeners+=",PROXIED://$PROXY_LISTEN"
    advertised+=",PROXIED://$PROXY_ADVERTISE"
    protocols+=",PROXIED:PLAINTEXT"
  fi
  local secure_conf=""
  if [[ -n $SECURE ]]; then
    listeners+=",SECURE://$HOST:$SECURE_PORT,WRONGHOST://$HOST:$WRONG_HOST_PORT"
    advertised+=",SECURE://$HOST:$SECURE_PORT,WRONGHOST://$HOST:$WRONG_HOST_PORT"
    protocols+=",SECURE:SASL_SSL,WRONGHOST:SASL_SSL"
    secure_conf=$(secure_config)
  fi
  cat >"$PROPS.tmp" <<EOF
# Written by scripts/kafka.sh; rewritten on every start.
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=$HOST:$CONTROLLER_PORT
listeners=$listeners
advertised.listeners=$advertised
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=$protocols
log.dirs=$DATA

num.partitions=1
default.replication.factor=1
auto.create.topics.enable=true
delete.topic.enable=true

offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0

num.network.threads=2
num.io.threads=4
log.retention.hours=24
log.segment.bytes=104857600
$secure_conf
EOF
  mv "$PROPS.tmp" "$PROPS"
}

# The properties of the secured mode: SASL_SSL with SCRAM on the SECURE and
# WRONGHOST listeners (PEM keystores, no client certificates), and the
# authorizer. Inter-broker and controller traffic stays PLAINTEXT.
secure_config() {
  local l bundle jaas='org.apache.kafka.common.security.scram.ScramLoginModule required;'
  printf '\n# Secured mode (scripts/kafka.sh start --secure).\n'
  printf 'authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer\n'
  printf 'super.users=User:ANONYMOUS;User:%s;User:%s\n' "$SCRAM512_USER" "$SCRAM256_USER"
  printf 'sasl.enabled.mechanisms=SCRAM-SHA-512,SCRAM-SHA-256\n'
  for l in secure wronghost; do
    bundle=$SECDIR/server-bundle.pem
    [[ $l == wronghost ]] && bundle=$SECDIR/wrong-host-bundle.pem
    printf 'listener.name.%s.ssl.keystore.type=PEM\n' "$l"
    printf 'listener.name.%s.ssl.keystore.location=%s\n' "$l" "$bundle"
    printf 'listener.name.%s.ssl.client.auth=none\n' "$l"
    printf 'listener.name.%s.sasl.enabled.mechanisms=SCRAM-SHA-512,SCRAM-SHA-256\n' "$l"
    printf 'listener.name.%s.scram-sha-512.sasl.jaas.config=%s\n' "$l" "$jaas"
    printf 'listener.name.%s.scram-sha-256.sasl.jaas.config=%s\n' "$l" "$jaas"
  done
}

# The SCRAM users and their passwords: made once per format of the data dir
# (random), kept in $CREDS.
readonly SCRAM512_USER=sluice SCRAM256_USER=sluice256 LIMITED_USER=sluice-limited
new_credentials() {
  mkdir -p "$SECDIR"
  chmod 700 "$SECDIR"
  (
    umask 077
    printf 'SCRAM512_PASSWORD=%s\nSCRAM256_PASSWORD=%s\nLIMITED_PASSWORD=%s\n' \
      "$(random_hex)" "$(random_hex)" "$(random_hex)" >"$CREDS.tmp"
  )
  mv -f "$CREDS.tmp" "$CREDS"
}

random_hex() { head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n'; }

load_credentials() {
  SCRAM512_PASSWORD="" SCRAM256_PASSWORD="" LIMITED_PASSWORD=""
  # shellcheck disable=SC1090 # written by new_credentials
  [[ -f $CREDS ]] && source "$CREDS"
  [[ -n $SCRAM512_PASSWORD && -n $SCRAM256_PASSWORD && -n $LIMITED_PASSWORD ]]
}

# The env file that tests and users read to reach the secured listener.
write_secure_env() {
  load_credentials || die "no SCRAM credentials in $CREDS"
  (
    umask 077
    cat >"$SECURE_ENV.tmp" <<EOF
# Written by scripts/kafka.sh start --secure: the broker's secured listener.
KAFKA_SECURE_BROKERS=$HOST:$SECURE_PORT
KAFKA_SECURE_CA_FILE=$SECDIR/ca.pem
KAFKA_SECURE_OTHER_CA_FILE=$SECDIR/other-ca.pem
KAFKA_SECURE_WRONG_HOST_BROKERS=$HOST:$WRONG_HOST_PORT
KAFKA_SECURE_PLAIN_BROKERS=$BOOTSTRAP
KAFKA_SECURE_USER=$SCRAM512_USER
KAFKA_SECURE_PASSWORD=$SCRAM512_PASSWORD
KAFKA_SECURE_USER_256=$SCRAM256_USER
KAFKA_SECURE_PASSWORD_256=$SCRAM256_PASSWORD
KAFKA_SECURE_LIMITED_USER=$LIMITED_USER
KAFKA_SECURE_LIMITED_PASSWORD=$LIMITED_PASSWORD
EOF
  )
  mv -f "$SECURE_ENV.tmp" "$SECURE_ENV"
}

# True if the config on disk (the running broker's) has the secured listeners.
props_secure() { grep -q '^listener.name.secure.' "$PROPS" 2>/dev/null; }

# Storage formatted by one Kafka version must be started by that version:
# wipe the data dir when it was formatted by another one (or by nobody we know).
ensure_storage() {
  local stamp=""
  [[ -f $DATA_STAMP ]] && stamp=$(<"$DATA_STAMP")
  if [[ $stamp != "$KAFKA_VERSION" ]] && [[ -n $(ls -A "$DATA" 2>/dev/null) ]]; then
    log "data dir was formatted by Kafka '${stamp:-unknown}', not $KAFKA_VERSION: wiping $DATA"
    rm -rf "$DATA"
    mkdir -p "$DATA"
  fi
  # SCRAM users exist only if the format made them, with the passwords
  # kept beside: the secured mode wipes a data dir formatted otherwise.
  if [[ -n $SECURE && -f $DATA/meta.properties ]] && { [[ ! -f $SCRAM_STAMP ]] || ! load_credentials; }; then
    log "data dir was formatted without the SCRAM users of --secure: wiping $DATA"
    rm -rf "$DATA"
    mkdir -p "$DATA"
  fi
  if [[ ! -f $DATA/meta.properties ]]; then
    local id
    id=$(run_class kafka.tools.StorageTool random-uuid | tail -n 1)
    [[ -n $id ]] || die "StorageTool random-uuid printed nothing"
    log "formatting $DATA (cluster id $id) with SCRAM users $SCRAM512_USER, $SCRAM256_USER, $LIMITED_USER"
    rm -f "$SCRAM_STAMP"
    new_credentials
    load_credentials || die "could not write $CREDS"
    run_class kafka.tools.StorageTool format --standalone -t "$id" -c "$PROPS" -g \
      --add-scram "SCRAM-SHA-512=[name=$SCRAM512_USER,password=$SCRAM512_PASSWORD]" \
      --add-scram "SCRAM-SHA-256=[name=$SCRAM256_USER,password=$SCRAM256_PASSWORD]" \
      --add-scram "SCRAM-SHA-512=[name=$LIMITED_USER,password=$LIMITED_PASSWORD]" \
      >"$LOGS/format.log" 2>&1 || {
      cat "$LOGS/format.log" >&2
      die "StorageTool format failed"
    }
    printf '1\n' >"$SCRAM_STAMP"
  fi
  printf '%s\n' "$KAFKA_VERSION" >"$DATA_STAMP"
}

# Runs a Kafka main class in the foreground with a small heap; its own logging
# goes to logs/tools.log, its stdout/stderr to ours.
run_class() {
  local cls=$1
  shift
  java -Xmx256m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$LOG4J" -Dkafka.logs.dir="$LOGS" -Dkafka.log.file=tools.log \
    -cp "$LIB/*" "$cls" "$@"
}

print_log_tail() {
  local f
  for f in "$OUTFILE" "$LOGFILE"; do
    if [[ -s $f ]]; then
      printf -- '----- last lines of %s -----\n' "$f" >&2
      tail -n 60 "$f" >&2
    fi
  done
}

# ---------------------------------------------------------------- commands

cmd_start() {
  take_lock
  local pid
  if pid=$(broker_pid); then
    if [[ -n $SECURE ]] && ! props_secure; then
      log "running (pid $pid) without the secured listeners: restarting it with them"
      stop_pid "$pid"
    else
      log "already running (pid $pid) on $BOOTSTRAP; log: $LOGFILE"
      if props_secure; then
        write_secure_env
        log "secured (SASL_SSL, SCRAM) on $HOST:$SECURE_PORT; env file: $SECURE_ENV"
      fi
      return 0
    fi
  fi
  if port_open "$HOST" "$PORT" || port_open "$HOST" "$CONTROLLER_PORT"; then
    die "$HOST:$PORT or :$CONTROLLER_PORT is taken by a process this script did not start (another Kafka?); stop it or set KAFKA_BROKERS to use it"
  fi
  if [[ -n $SECURE ]] && { port_open "$HOST" "$SECURE_PORT" || port_open "$HOST" "$WRONG_HOST_PORT"; }; then
    die "$HOST:$SECURE_PORT or :$WRONG_HOST_PORT (SLUICE_KAFKA_SECURE_PORT, SLUICE_KAFKA_WRONG_HOST_PORT) is taken by another process"
  fi
  if [[ -n $PROXY_LISTEN ]] && port_open "${PROXY_LISTEN%:*}" "${PROXY_LISTEN##*:}"; then
    die "$PROXY_LISTEN (SLUICE_KAFKA_PROXY_LISTEN) is taken by another process"
  fi
  ensure_jars
  ensure_tools
  if [[ -n $SECURE ]]; then
    "$SCRIPT_DIR/certs.sh" "$SECDIR" || die "scripts/certs.sh $SECDIR failed"
  fi
  write_config
  ensure_storage

  # Keep one previous log so that "started" below is read from this run only.
  [[ -f $LOGFILE ]] && mv -f "$LOGFILE" "$LOGFILE.prev"
  [[ -f $OUTFILE ]] && mv -f "$OUTFILE" "$OUTFILE.prev"
  rm -f "$PIDFILE"

  log "starting Kafka $KAFKA_VERSION on $BOOTSTRAP (controller $HOST:$CONTROLLER_PORT${PROXY_LISTEN:+, proxied listener $PROXY_LISTEN advertised as $PROXY_ADVERTISE}; home $KHOME)"
  # setsid: own session, so the broker survives the shell (and its Ctrl-C)
  # that started it. The inner shell writes its pid and then becomes java.
  # 9>&- : the broker must not inherit (and so hold forever) our lock.
  # shellcheck disable=SC2016 # $$ and $@ are for the inner shell
  KAFKA_PIDFILE=$PIDFILE setsid nohup bash -c 'echo $$ >"$KAFKA_PIDFILE"; exec "$@"' kafka-broker \
    java -Xms"$HEAP" -Xmx"$HEAP" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent \
    -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$LOG4J" -Dkafka.logs.dir="$LOGS" -Dkafka.log.file=server.log \
    -cp "$LIB/*" kafka.Kafka "$PROPS" \
    >"$OUTFILE" 2>&1 </dev/null 9>&- &

  local t0=$SECONDS deadline=$((SECONDS + START_TIMEOUT))
  while ((SECONDS < deadline)); do
    sleep 1
    pid=""
    [[ -f $PIDFILE ]] && pid=$(<"$PIDFILE")
    if [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null; then
      print_log_tail
      die "the broker exited during start-up; log: $LOGFILE"
    fi
    if grep -q 'Kafka Server started' "$LOGFILE" 2>/dev/null && port_open "$HOST" "$PORT"; then
      log "started in $((SECONDS - t0)) s (pid $pid); bootstrap $BOOTSTRAP; log: $LOGFILE"
      if [[ -n $SECURE ]]; then
        write_secure_env
        log "secured (SASL_SSL, SCRAM) on $HOST:$SECURE_PORT; env file: $SECURE_ENV"
      fi
      return 0
    fi
  done
  print_log_tail
  log "error: the broker did not serve on $BOOTSTRAP within $START_TIMEOUT s; stopping it"
  stop_pid "${pid:-}"
  exit 1
}

stop_pid() { sluice_stop_pid "$1" "$STOP_TIMEOUT" "$PIDFILE"; }

cmd_stop() {
  take_lock
  local pid t0=$SECONDS
  if ! pid=$(broker_pid); then
    rm -f "$PIDFILE"
    log "not running"
    return 0
  fi
  log "stopping pid $pid (SIGTERM)"
  stop_pid "$pid"
  log "stopped in $((SECONDS - t0)) s; log: $LOGFILE"
}

cmd_status() {
  local pid
  if pid=$(broker_pid); then
    if port_open "$HOST" "$PORT"; then
      echo "kafka: running (pid $pid) on $BOOTSTRAP; log: $LOGFILE"
    else
      echo "kafka: running (pid $pid) but $BOOTSTRAP does not answer yet; log: $LOGFILE"
    fi
    return 0
  fi
  if port_open "$HOST" "$PORT"; then
    echo "kafka: not started by this script, but something answers on $BOOTSTRAP"
  else
    echo "kafka: not running (home $KHOME)"
  fi
  return 3
}

cmd_logs() {
  local follow="" lines=100 a
  for a in "$@"; do
    case $a in
      -f) follow=1 ;;
      *[!0-9]* | '') die "logs: expected -f or a line count, got '$a'" ;;
      *) lines=$a ;;
    esac
  done
  echo "kafka: log file $LOGFILE" >&2
  [[ -f $LOGFILE ]] || die "no log yet"
  if [[ -n $follow ]]; then
    exec tail -n "$lines" -F "$LOGFILE"
  fi
  tail -n "$lines" "$LOGFILE"
}

need_running() {
  [[ -f $LIB_STAMP ]] || die "jars not fetched yet: run '$0 start' first"
  port_open "$HOST" "$PORT" || die "nothing answers on $BOOTSTRAP: run '$0 start' first"
  mkdir -p "$LOGS"
  [[ -f $LOG4J ]] || write_config
}

cmd_topic_create() {
  (($# == 2)) || die "usage: $0 topic-create NAME PARTITIONS"
  local name=$1 parts=$2
  [[ $parts =~ ^[1-9][0-9]*$ ]] || die "PARTITIONS must be a positive integer, got '$parts'"
  need_running
  run_class org.apache.kafka.tools.TopicCommand --bootstrap-server "$BOOTSTRAP" \
    --create --if-not-exists --topic "$name" --partitions "$parts" --replication-factor 1
}

cmd_topics() {
  need_running
  run_class org.apache.kafka.tools.TopicCommand --bootstrap-server "$BOOTSTRAP" --list
}

cmd_tool() {
  (($# >= 1)) || die "usage: $0 tool MAIN_CLASS [ARGS...]"
  [[ -f $LIB_STAMP ]] || die "jars not fetched yet: run '$0 start' first"
  mkdir -p "$LOGS"
  [[ -f $LOG4J ]] || write_config
  run_class "$@"
}

cmd_wipe() {
  cmd_stop
  log "deleting $DATA"
  rm -rf "$DATA" "$DATA_STAMP" "$SCRAM_STAMP"
}

# The --secure flag of start and restart.
secure_flag() {
  (($# == 0)) && return 0
  [[ $# == 1 && $1 == --secure ]] || die "expected --secure or nothing, got '$*'"
  SECURE=1
}

cmd_secure_env() {
  [[ -f $SECURE_ENV ]] || die "no $SECURE_ENV: run '$0 start --secure' first"
  printf '%s\n' "$SECURE_ENV"
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
      # A restart keeps the secured mode of the broker it restarts.
      if props_secure; then SECURE=1; fi
      cmd_stop && cmd_start
      ;;
    secure-env) cmd_secure_env ;;
    status) cmd_status ;;
    logs) cmd_logs "$@" ;;
    topic-create) cmd_topic_create "$@" ;;
    topics) cmd_topics ;;
    tool) cmd_tool "$@" ;;
    wipe) cmd_wipe ;;
    -h | --help | help) usage ;;
    *) log "unknown command '$cmd'"; usage ;;
  esac
}

main "$@"
