"""Serving benchmark: throughput and p50/p99 latency at 1, 8 and 32 concurrent clients, for `modelport serve`
(batching on and off) and every peer server that is set up, on the same ONNX file, the same runtime threads
and the same client; and the in-process `modelport run` loop (one request at a time) as the ceiling.

    .venv/bin/python benchmarks/serve/run.py [--seconds 20] [--servers modelport,modelport-nobatch,triton,...]

Servers: modelport, modelport-nobatch (`modelport serve`), modelport-triton (`serve --engine triton`: a real
Triton running the bundle through modelport's runner), modelport-ray / modelport-ray2 (`serve --engine ray`
with 1 / 2 replicas, the threads split between them), and the peers triton, triton-batching, mlserver,
mlserver-batching, kserve.

Every server is up at once and the load goes round them in turns (--rounds per client count, rotated
order), so a slow spell of the shared machine falls on all of them alike rather than on whichever ran
then; the in-process ceiling takes turns too. The client is one asyncio process (aiohttp) that posts the
same pre-encoded v2 JSON request from C workers and checks the first answer of every server against
`modelport run`; all servers get JSON (not every peer speaks the binary extension) and are asked for the
same output. Every batching server merges at most 8 rows (`serve --max-batch-size 8`; the peers' batching
in benchmarks/serve/peers). Peers run from their own virtual
environments (benchmarks/serve/peers/setup.sh); one that is not set up is listed with the reason.
Results: benchmarks/results/serve.json and serve.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "build" / "bench" / "serve"
PEERS = ROOT / "benchmarks" / "serve" / "peers"
MODELPORT = str(ROOT / ".venv" / "bin" / "modelport")

MODELS = {  # name: (export command args, feed maker, output to request)
    "minilm": (["demo:minilm"], "minilm", "sentence_embedding"),
    "mlp": (["benchmarks/models.py:mlp", "--input", "x:batch,256", "--dim", "batch=1..32"], "mlp", "output"),
}


def feed_for(kind: str) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    if kind == "minilm":
        ids = rng.integers(1000, 30000, (1, 128)).astype(np.int64)
        return {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
    return {"x": rng.standard_normal((1, 256)).astype(np.float32)}


def v2_body(feed: dict[str, np.ndarray], output: str) -> bytes:
    from modelport.serving.protocol import to_datatype

    inputs = [
        {"name": n, "shape": list(a.shape), "datatype": to_datatype(str(a.dtype)), "data": a.ravel().tolist()}
        for n, a in feed.items()
    ]
    return json.dumps({"inputs": inputs, "outputs": [{"name": output}]}).encode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url + "/v2/health/ready", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"not ready after {timeout:.0f} s")


def start(server: str, bundle: Path, name: str, threads: int, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    if server.startswith("modelport"):
        cmd = [MODELPORT, "serve", f"{name}={bundle}", "--port", str(port), "--log-level", "warning"]
        if server == "modelport-triton":  # a real Triton running the bundle through modelport's runner
            triton = ROOT / "build" / "peers" / "triton" / "venv" / "bin" / "python"
            if not triton.exists():
                raise RuntimeError("not set up (make triton-env)")
            cmd += ["--engine", "triton", "--triton-python", str(triton), "--grpc-port", str(free_port())]
        elif server.startswith("modelport-ray"):  # modelport-ray2: two replicas sharing the threads
            replicas = int(server.removeprefix("modelport-ray") or 1)
            cmd += ["--engine", "ray", "--replicas", str(replicas), "--threads", str(max(1, threads // replicas))]
        else:
            cmd += ["--no-grpc", "--threads", str(threads)]
        if server == "modelport-nobatch":
            cmd.append("--no-batching")
        elif server == "modelport":
            cmd += ["--max-batch-size", "8"]  # as the peers' batching is set up: at most 8 rows
    else:
        peer, _, variant = server.partition("-")
        python = ROOT / "build" / "peers" / peer / "venv" / "bin" / "python"
        if not python.exists():
            raise RuntimeError(f"not set up (benchmarks/serve/peers/setup.sh {peer})")
        cmd = [str(python), str(PEERS / "start.py"), peer, "--model", str(bundle / "model.onnx"), "--name", name,
               "--http-port", str(port), "--threads", str(threads)]  # fmt: skip
        if variant == "batching":
            cmd.append("--batching")
    proc = subprocess.Popen(cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, proc)
    except RuntimeError:
        stop(proc)
        raise
    return proc, url


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


async def load(url: str, path: str, body: bytes, clients: int, warmup: float, seconds: float) -> dict[str, Any]:
    """``clients`` workers posting ``body`` back to back: latencies (s) of the answers after ``warmup``."""
    import aiohttp

    latencies: list[float] = []
    errors = 0
    measuring_from = time.perf_counter() + warmup
    until = measuring_from + seconds
    first: dict[str, Any] = {}

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal errors
        while (now := time.perf_counter()) < until:
            try:
                async with session.post(url + path, data=body, headers={"Content-Type": "application/json"}) as r:
                    raw = await r.read()
                    ok = r.status == 200
            except aiohttp.ClientError:
                ok, raw = False, b""
            done = time.perf_counter()
            if not first and ok:
                first.update(json.loads(raw))
            if now >= measuring_from:
                if ok:
                    latencies.append(done - now)
                else:
                    errors += 1

    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(worker(session) for _ in range(clients)))
    return {"latencies": latencies, "errors": errors, "first": first}


def summary(latencies: list[float], errors: int, seconds: float) -> dict[str, Any]:
    ms = np.array(latencies) * 1e3
    return {
        "requests": len(latencies),
        "errors": errors,
        "throughput_rps": round(len(latencies) / seconds, 2),
        "p50_ms": round(float(np.percentile(ms, 50)), 2) if len(ms) else None,
        "p99_ms": round(float(np.percentile(ms, 99)), 2) if len(ms) else None,
    }


def in_process(
    bundle: Path, feed: dict[str, np.ndarray], threads: int, warmup: float, seconds: float
) -> dict[str, Any]:
    """`modelport run`'s runner, called back to back: the ceiling for one request at a time."""
    from modelport.runtime.registry import create

    with create(None, bundle, threads=threads) as runner:
        until = time.perf_counter() + warmup
        while time.perf_counter() < until:
            runner.infer(feed)
        times = []
        until += seconds
        while time.perf_counter() < until:
            start_ = time.perf_counter()
            runner.infer(feed)
            times.append(time.perf_counter() - start_)
    return {"latencies": times, "errors": 0}


def matches(first: dict[str, Any], want: np.ndarray, output: str) -> bool:
    for out in first.get("outputs", []):
        if out.get("name") == output:
            got = np.asarray(out["data"], np.float32).reshape(want.shape)
            return bool(np.allclose(got, want, atol=1e-4, rtol=1e-3))
    return False


def export(model: str) -> Path:
    bundle = BUILD / model
    if not (bundle / "modelport.json").exists():
        subprocess.run([MODELPORT, "export", *MODELS[model][0], "-o", str(bundle)], check=True, cwd=ROOT)
    return bundle


def measure(model: str, servers: list[str], clients: list[int], args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every server up at once, the load going round them in turns: ``args.rounds`` rounds per client
    count, each in a rotated order, each turn ``args.seconds / args.rounds`` long after ``args.warmup``.
    A slow spell of the machine then falls on every server alike. The in-process ceiling takes its turns
    in the first client count's rounds."""
    from modelport.runtime.run import run

    bundle = export(model)
    _, kind, output = MODELS[model]
    feed = feed_for(kind)
    want = run(bundle, feed).outputs[output]
    body = v2_body(feed, output)
    path, share = f"/v2/models/{model}/infer", args.seconds / args.rounds
    rows: list[dict[str, Any]] = []
    running: dict[str, tuple[subprocess.Popen[bytes], str]] = {}
    try:
        for server in servers:
            try:
                running[server] = start(server, bundle, model, args.threads, BUILD / f"{server}-{model}.log")
            except (RuntimeError, OSError) as exc:
                rows.append({"model": model, "server": server, "skipped": str(exc)})
                print(json.dumps(rows[-1]), flush=True)
        for c in clients:
            names = (["in-process run"] if c == clients[0] else []) + list(running)
            runs: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
            for turn in range(args.rounds):
                for name in names[turn % len(names) :] + names[: turn % len(names)]:
                    if name == "in-process run":
                        runs[name].append(in_process(bundle, feed, args.threads, args.warmup, share))
                    else:
                        runs[name].append(asyncio.run(load(running[name][1], path, body, c, args.warmup, share)))
            for name, parts in runs.items():
                latencies = [t for part in parts for t in part["latencies"]]
                result = summary(latencies, sum(part["errors"] for part in parts), args.seconds)
                same = name == "in-process run" or matches(parts[0]["first"], want, output)
                rows.append({"model": model, "server": name, "clients": 1 if name == "in-process run" else c, **result,
                             "answers": "same" if same else "DIFFERENT"})  # fmt: skip
                print(json.dumps(rows[-1]), flush=True)
    finally:
        for proc, _ in running.values():
            stop(proc)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="minilm,mlp")
    parser.add_argument(
        "--servers", default="modelport,modelport-nobatch,triton,triton-batching,mlserver,mlserver-batching,kserve"
    )
    parser.add_argument("--clients", default="1,8,32")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds of load before each round's timing")
    parser.add_argument("--rounds", type=int, default=3, help="turns each server gets at each client count")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--name", default="serve", help="results: OUT/NAME.json and OUT/NAME.md")
    args = parser.parse_args()
    BUILD.mkdir(parents=True, exist_ok=True)
    clients = [int(c) for c in args.clients.split(",")]
    rows: list[dict[str, Any]] = []
    for model in args.models.split(","):
        rows += measure(model, args.servers.split(","), clients, args)
    record = {
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()},
        "threads": args.threads,
        "seconds": args.seconds,
        "rounds": args.rounds,
        "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "rows": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.json").write_text(json.dumps(record, indent=1))
    (args.out / f"{args.name}.md").write_text(markdown(record))
    print(markdown(record))


def markdown(record: dict[str, Any]) -> str:
    lines = [
        "# Serving: throughput and latency",
        "",
        f"`{record['command']}`: every server up at once, the load going round them in turns; each point "
        f"{record['seconds']:.0f} s in {record['rounds']} turns (rotated order, each after a warm-up), "
        f"one client process (aiohttp, v2 JSON), {record['threads']} runtime threads per server, "
        f"{record['machine']['cores']} cores shared by client and server.",
        "",
        "| model | server | clients | req/s | p50 ms | p99 ms | errors | answers |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in record["rows"]:
        if "skipped" in r:
            lines.append(f"| {r['model']} | {r['server']} | - | - | - | - | - | skipped: {r['skipped']} |")
            continue
        lines.append(
            f"| {r['model']} | {r['server']} | {r['clients']} | {r['throughput_rps']:.1f} | {r['p50_ms']} | "
            f"{r['p99_ms']} | {r['errors']} | {r['answers']} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
