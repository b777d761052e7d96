#!/usr/bin/env python3
"""Check a sluice deployment: every input event enriched or dead-lettered.

    python3 scripts/verify_kafka_enrichment.py [verify flags]

A thin wrapper over examples/verify (see docs/examples.md): it takes the same
flags (-source, -brokers, -redis-addr, -input, -output, -dead-letter,
-min-rate, -timeout) and the same SLUICE_* environment variables, and prints
verify's one JSON object on stdout, for example

    {"input_count":1000,"enriched_count":988,"dead_letter_count":12,
     "missing_count":0,"duplicate_count":0,"enrichment_rate":0.988,
     "unmatched_count":0,"replayed_count":0}

with verify's exit status: 0 when the check passes, 1 when it fails, 2 when
it cannot run.

The verify binary is built once into a cache folder keyed by a hash of the
Go sources, go.mod and go.sum (SLUICE_VERIFY_CACHE, default
~/.cache/sluice/verify), so later runs start at once. The whole run stays
within SLUICE_VERIFY_DEADLINE seconds (default 40, under the guide's 45 s
timeout): verify gets what is left of it as -timeout unless -timeout or
SLUICE_TIMEOUT is given, and a build that cannot finish in time goes on in
the background while the script answers with a JSON error; the next run
finds the binary built. Whatever goes wrong, stdout carries one JSON object.

Python 3.8+ standard library only; it needs the go command to build. The
build shares the go command's build cache, so after `go build ./...` or the
test suite it takes a few seconds; a fully cold cache takes about 70 s of CPU.
"""

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = "./examples/verify"
EXIT_CANNOT_RUN = 2


def answer_error(message, status=EXIT_CANNOT_RUN):
    """Print one JSON object that says what went wrong, and exit."""
    print(json.dumps({"error": message}), flush=True)
    print("verify_kafka_enrichment: " + message, file=sys.stderr)
    sys.exit(status)


def source_hash():
    """Hash go.mod, go.sum and every non-test Go file of the root module.

    Directories with a go.mod of their own are other modules and are left
    out, as are testdata and hidden directories.
    """
    h = hashlib.sha256()
    for name in ("go.mod", "go.sum"):
        with open(os.path.join(ROOT, name), "rb") as f:
            h.update(name.encode() + b"\0" + f.read() + b"\0")
    for dirpath, dirnames, filenames in os.walk(ROOT):
        rel = os.path.relpath(dirpath, ROOT)
        keep = []
        for d in sorted(dirnames):
            if d.startswith(".") or d == "testdata":
                continue
            if os.path.exists(os.path.join(dirpath, d, "go.mod")):
                continue
            keep.append(d)
        dirnames[:] = keep
        for name in sorted(filenames):
            if not name.endswith(".go") or name.endswith("_test.go"):
                continue
            with open(os.path.join(dirpath, name), "rb") as f:
                h.update(os.path.join(rel, name).encode() + b"\0" + f.read() + b"\0")
    h.update(os.environ.get("GOOS", "").encode() + b"/" + os.environ.get("GOARCH", "").encode())
    return h.hexdigest()[:24]


def cache_dir():
    d = os.environ.get("SLUICE_VERIFY_CACHE")
    if d:
        return d
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "sluice", "verify")


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def wait_for(binary, proc_or_pid, deadline):
    """Wait until binary exists, the build ends, or deadline passes.

    Returns the build's exit status, or None at the deadline or when another
    run's build (a pid) ended.
    """
    while time.monotonic() < deadline:
        if isinstance(proc_or_pid, int):
            if os.access(binary, os.X_OK):
                return 0
            if not pid_alive(proc_or_pid):
                return None
        else:
            status = proc_or_pid.poll()
            if status is not None:
                return status
        time.sleep(0.1)
    return None


def build(binary, deadline):
    """Build verify into binary, atomically, before deadline (time.monotonic).

    A build still running at the deadline is left to finish in the
    background, and the script answers with an error; a run that finds
    another run's build going waits for it instead of starting its own.
    """
    folder = os.path.dirname(binary)
    os.makedirs(folder, exist_ok=True)
    marker = os.path.join(folder, "building.pid")
    try:
        with open(marker) as f:
            other = int(f.read().strip() or "0")
    except (OSError, ValueError):
        other = 0
    if other and pid_alive(other):
        if wait_for(binary, other, deadline) == 0:
            return
        if not os.access(binary, os.X_OK):
            answer_error("examples/verify is still being built into %s (a cold build cache): "
                         "run the script again in a minute" % folder)
        return
    fd, tmp = tempfile.mkstemp(prefix=".verify-", dir=folder)
    os.close(fd)
    log = tmp + ".log"
    # The build writes the binary to a temporary name and renames it when
    # done, so that a concurrent run never executes half a file; it runs in
    # its own session, so that it survives this script's exit, and cleans
    # up after itself.
    script = ('go build -o "$1" {pkg} >"$3" 2>&1 && mv -f "$1" "$2" && rm -f "$3"; '
              'status=$?; rm -f "$4"; exit $status').format(pkg=PACKAGE)
    proc = subprocess.Popen(["sh", "-c", script, "sh", tmp, binary, log, marker], cwd=ROOT,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    with open(marker, "w") as f:
        f.write(str(proc.pid))
    status = wait_for(binary, proc, deadline)
    if status is None:
        answer_error("building examples/verify did not finish within the deadline (a cold build "
                     "cache); it goes on in the background into %s: run the script again in a minute"
                     % folder)
    if status != 0:
        try:
            with open(log, "rb") as f:
                out = f.read().decode(errors="replace")
            os.unlink(log)
        except OSError:
            out = ""
        if os.path.exists(tmp):
            os.unlink(tmp)
        sys.stderr.write(out)
        last = (out.strip().splitlines() or [""])[-1]
        answer_error("go build %s failed (exit %d): %s" % (PACKAGE, status, last))


def has_flag(args, name):
    for a in args:
        a = a.lstrip("-")
        if a == name or a.startswith(name + "="):
            return True
    return False


def main():
    start = time.monotonic()
    try:
        budget = float(os.environ.get("SLUICE_VERIFY_DEADLINE", "40"))
    except ValueError:
        answer_error("SLUICE_VERIFY_DEADLINE=%r: want a number of seconds" % os.environ["SLUICE_VERIFY_DEADLINE"])
    deadline = start + budget
    try:
        binary = os.path.join(cache_dir(), source_hash(), "verify")
    except OSError as e:
        answer_error("reading the sources under %s: %s" % (ROOT, e))
    if not os.access(binary, os.X_OK):
        try:
            build(binary, deadline - 3)
        except OSError as e:
            answer_error("building %s: %s (is the go command installed?)" % (PACKAGE, e))
    args = sys.argv[1:]
    if not has_flag(args, "timeout") and not has_flag(args, "h") and not has_flag(args, "help") \
            and not os.environ.get("SLUICE_TIMEOUT"):
        left = max(2.0, deadline - time.monotonic() - 1)
        args = ["-timeout", "%.1fs" % left] + args
    proc = subprocess.run([binary] + args, stdout=subprocess.PIPE)
    out = proc.stdout.decode(errors="replace").strip()
    if out:
        print(out, flush=True)
    elif proc.returncode not in (0,) and not has_flag(args, "h") and not has_flag(args, "help"):
        answer_error("verify exited with status %d without a report (its error is above)" % proc.returncode,
                     proc.returncode if proc.returncode > 0 else EXIT_CANNOT_RUN)
    sys.exit(proc.returncode if proc.returncode >= 0 else EXIT_CANNOT_RUN)


if __name__ == "__main__":
    main()
