"""Serves a GGUF model with llama.cpp's OpenAI-compatible HTTP server.

Started by scripts/model.sh, which installs the xllamacpp wheel (a prebuilt
CPU build of llama.cpp's own server) into a virtual environment. This file
only sets the server's parameters and keeps the process alive until SIGTERM
or SIGINT; llama.cpp serves in its own threads.

Usage: python serve.py --model PATH --alias NAME --port N [--host 127.0.0.1]
                       [--parallel N] [--ctx-per-slot N] [--threads N]
                       [--max-tokens N] [--seed N]
"""

import argparse
import os
import signal
import sys
import threading


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="path of the .gguf file")
    p.add_argument("--alias", required=True, help="model name the API reports and accepts")
    p.add_argument("--host", default="127.0.0.1", help="listen address (loopback by default)")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--parallel", type=int, default=2, help="completions decoded at once (slots); more wait in a queue")
    p.add_argument("--ctx-per-slot", type=int, default=2048, help="context tokens of each slot")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: every core)")
    p.add_argument("--max-tokens", type=int, default=1024, help="cap on the tokens of one answer")
    p.add_argument("--seed", type=int, default=42, help="sampling seed, so that runs repeat")
    a = p.parse_args(argv)
    for name in ("port", "parallel", "ctx_per_slot", "max_tokens"):
        if getattr(a, name) < 1:
            p.error("--%s must be at least 1" % name.replace("_", "-"))
    if not os.path.isfile(a.model):
        p.error("--model %s: no such file" % a.model)
    return a


def main(argv):
    a = parse_args(argv)
    import xllamacpp  # imported late so that --help works without it

    threads = a.threads or os.cpu_count() or 1
    p = xllamacpp.CommonParams()
    p.model.path = a.model
    p.model_alias = {a.alias}
    p.hostnames = [a.host]
    p.port = a.port
    p.n_parallel = a.parallel
    # The context is shared by the slots: each gets n_ctx / n_parallel.
    p.n_ctx = a.ctx_per_slot * a.parallel
    p.n_predict = a.max_tokens
    p.cpuparams.n_threads = threads
    p.cpuparams_batch.n_threads = threads
    p.sampling.seed = a.seed
    p.offline = True  # never reach out to a model hub
    p.ui = False  # the API only, no web page
    p.endpoint_metrics = True  # Prometheus /metrics
    p.cache_ram_mib = 256  # prompt cache in RAM; the default is 8 GiB
    p.warmup = True

    stop = threading.Event()

    def on_signal(signum, _frame):
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    server = xllamacpp.Server(p)
    print("serve.py: llama.cpp serving %s as %r on http://%s:%d/v1 (%d slots of %d tokens, %d threads)"
          % (a.model, a.alias, a.host, a.port, a.parallel, a.ctx_per_slot, threads), flush=True)
    while not stop.wait(3600):
        pass
    print("serve.py: stopping", flush=True)
    del server
    sys.stdout.flush()
    # llama.cpp's threads do not all stop on their own; the process is done.
    os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1:])
