# shellcheck shell=bash
# Process helpers shared by the server scripts (kafka.sh, model.sh); sourced,
# not run. Each script defines log() and die() before sourcing this file.

# sluice_take_lock DIR holds DIR/.lock (file descriptor 9) so that two runs
# of one script never start or stop the same server at once.
sluice_take_lock() {
  mkdir -p "$1"
  exec 9>"$1/.lock"
  flock -w 600 9 || die "could not lock $1/.lock within 600 s"
}

# sluice_port_open HOST PORT: true if something accepts connections there.
sluice_port_open() {
  (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null
}

# sluice_stop_pid PID TIMEOUT PIDFILE sends SIGTERM, waits up to TIMEOUT
# seconds, then SIGKILLs, and removes PIDFILE. An empty or dead PID is fine.
sluice_stop_pid() {
  local pid=$1 timeout=$2 pidfile=$3
  if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + timeout))
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do
      sleep 0.2
    done
    if kill -0 "$pid" 2>/dev/null; then
      log "still alive after $timeout s: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    fi
  fi
  rm -f "$pidfile"
}
