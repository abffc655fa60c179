#!/usr/bin/env python3
"""Start a peer inference server on one ONNX model, print READY when it answers, stop it on SIGTERM.

    python benchmarks/serve/peers/start.py PEER --model FILE.onnx --name NAME --http-port P \
        [--grpc-port G] --threads T [--batching]

Any Python 3.8+ runs this launcher (stdlib only); it runs the peer itself with that peer's venv,
build/peers/PEER/venv (made by setup.sh PEER). Once GET /v2/health/ready and GET /v2/models/NAME/ready
both answer 200 it prints one line to stdout:

    READY peer=PEER url=http://127.0.0.1:P model=NAME pid=PID seconds=S

On SIGTERM or SIGINT it sends SIGTERM to the server, waits up to 30 s (then SIGKILL), removes the
temp folder and exits 0. If the server exits by itself, or is not ready in --ready-timeout seconds,
the launcher exits non-zero (2: not ready in time).
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

STOP_GRACE = 30.0


def _die_with_parent() -> None:
    # the server gets SIGTERM if this launcher dies without forwarding a signal (e.g. SIGKILL)
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def main() -> int:
    args = common.parse()
    python = common.venv_python(args.peer)
    if not python.exists():
        print(f"no venv for {args.peer}: run benchmarks/serve/peers/setup.sh {args.peer}", file=sys.stderr)
        return 1
    if not os.path.isfile(args.model):
        print(f"no such model: {args.model}", file=sys.stderr)
        return 1
    own_workdir = args.workdir is None
    workdir = tempfile.mkdtemp(prefix=f"peer-{args.peer}-") if own_workdir else os.path.abspath(args.workdir)
    os.makedirs(workdir, exist_ok=True)

    argv = sys.argv[1:] + (["--workdir", workdir] if own_workdir else [])
    script = os.path.join(common.HERE, f"peer_{args.peer}.py")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(common.HERE), env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    t0 = time.monotonic()
    proc = subprocess.Popen([str(python), script, *argv], env=env, preexec_fn=_die_with_parent)

    stopping = []

    def on_signal(signum, _frame):
        stopping.append(signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    base = f"http://127.0.0.1:{args.http_port}"
    ready = False
    code = 0
    while not stopping:
        if proc.poll() is not None:
            print(
                f"{args.peer} exited with {proc.returncode} before it was ready"
                if not ready
                else f"{args.peer} exited with {proc.returncode}",
                file=sys.stderr,
            )
            code = proc.returncode or 1
            break
        if not ready:
            if _ok(f"{base}/v2/health/ready") and _ok(f"{base}/v2/models/{args.name}/ready"):
                ready = True
                print(
                    f"READY peer={args.peer} url={base} model={args.name} pid={proc.pid} "
                    f"seconds={time.monotonic() - t0:.1f}",
                    flush=True,
                )
                continue
            if time.monotonic() - t0 > args.ready_timeout:
                print(f"{args.peer} not ready after {args.ready_timeout:.0f} s", file=sys.stderr)
                stopping.append(None)
                code = 2
                break
            time.sleep(0.2)
        else:
            time.sleep(0.5)

    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(STOP_GRACE)
        except subprocess.TimeoutExpired:
            print(f"{args.peer} still running {STOP_GRACE:.0f} s after SIGTERM: killing it", file=sys.stderr)
            proc.kill()
            proc.wait()
    if own_workdir:
        shutil.rmtree(workdir, ignore_errors=True)
    if stopping and stopping[0] is not None:
        how = "SIGTERM re-raised after its shutdown" if proc.returncode == -signal.SIGTERM else proc.returncode
        print(f"stopped {args.peer} (exit: {how})", file=sys.stderr, flush=True)
        return 0
    return code


if __name__ == "__main__":
    sys.exit(main())
