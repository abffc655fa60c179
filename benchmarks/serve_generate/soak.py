"""The load test of ``modelport serve`` for generation: 16 concurrent streams for two minutes, then the verdict:
0 errors, server RSS no more than 5% above its level after warm-up, every stream's text equal to the same
request served alone.

    .venv/bin/python benchmarks/serve_generate/soak.py [--seconds 120] [--streams 16]

Model: the trained stand-in (``build/models/stdlib-lm``, 30.9 M parameters, real text out; built by
``benchmarks/generate/stdlib_lm.py``), exported once to ``build/serve-generate/stdlib-lm``. Requests: 32
prompts of held-out standard-library text, each with its own length (16 to 109 new tokens) and options
(greedy, or sampling with a seed), so sequences join and leave the running batch at almost every step.
Their single-request answers are taken first, one at a time through the same server.

Results: ``benchmarks/results/serve-generate-soak.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import threading
import time
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from load import Target, _one  # noqa: E402
from servers import PYTHON, RESULTS, Server, free_port  # noqa: E402

import models  # noqa: E402

TRAINED = models.ROOT / "build" / "models" / "stdlib-lm"


def bundle(say) -> Path:
    import modelport

    out = models.BUILD / "stdlib-lm"
    if not (out / "modelport.json").is_file():
        if not (TRAINED / "config.json").is_file():
            raise SystemExit("train the stand-in first: .venv/bin/python benchmarks/generate/stdlib_lm.py")
        say("exporting the trained stand-in")
        modelport.export(f"hf:{TRAINED}", out, task="text-generation")
    return out


def requests() -> list[dict]:
    lines = [line.strip() for line in (TRAINED / "held-out.txt").read_text().splitlines() if len(line.strip()) > 20]
    out = []
    for i, line in enumerate(lines[:32]):
        body = {"prompt": line[: 40 + 7 * i], "max_tokens": 16 + (i * 29) % 94, "ignore_eos": True}
        body |= {"temperature": 0.8, "top_p": 0.95, "seed": i} if i % 4 == 3 else {"temperature": 0}
        out.append(body)
    return out


def rss(pid: int) -> int:
    """The server's resident set, bytes (its process and children)."""
    total = 0
    for task in [pid, *_children(pid)]:
        try:
            for line in Path(f"/proc/{task}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


def _children(pid: int) -> list[int]:
    try:
        kids = [int(k) for k in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []
    return kids + [g for k in kids for g in _children(k)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--streams", type=int, default=16)
    parser.add_argument("--warmup", type=float, default=20, help="seconds before the RSS baseline is read")
    parser.add_argument("--out", type=Path, default=RESULTS / "serve-generate-soak.json")
    args = parser.parse_args()
    say = lambda msg: print(f"[soak] {msg}", file=sys.stderr, flush=True)  # noqa: E731
    path = bundle(say)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = models.BUILD / "soak-server.log"
    argv = [str(PYTHON), "-m", "modelport", "serve", f"lm={path}", "--port", str(port), "--no-grpc",
            "--max-sequences", str(args.streams), "--log-level", "warning"]  # fmt: skip
    server = Server(argv, url + "/v2/health/ready", log)
    try:
        server.wait(600)
        asks = requests()
        say(f"{len(asks)} single-request answers, one at a time")
        alone = asyncio.run(_alone(url, asks))
        say(f"{args.streams} streams for {args.seconds:.0f} s")
        report = asyncio.run(_soak(url, asks, alone, args, server.proc.pid))
    finally:
        server.stop()
    report["verdict"] = {
        "errors": report["errors"] == 0,
        "rss_growth_within_5pct": report["rss_growth_pct"] <= 5.0,
        "texts_equal_alone": report["mismatches"] == 0,
    }
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    args.out.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))


async def _alone(url: str, asks: list[dict]) -> list[str]:
    async with httpx.AsyncClient(timeout=600) as client:
        out = []
        for body in asks:
            result = await _one(client, Target(url, "lm", extra=_extra(body)), body["prompt"], body["max_tokens"])
            if result.error:
                raise SystemExit(f"a single request failed: {result.error}")
            out.append(result.text)
        return out


def _extra(body: dict) -> dict:
    return {k: v for k, v in body.items() if k not in ("prompt", "max_tokens")}


async def _soak(url: str, asks: list[dict], alone: list[str], args, pid: int) -> dict:
    start = time.monotonic()
    samples: list[tuple[float, int]] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(1.0):
            samples.append((time.monotonic() - start, rss(pid)))

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    counts = {"requests": 0, "errors": 0, "mismatches": 0, "tokens": 0}
    errors: list[str] = []

    async def worker(index: int, client: httpx.AsyncClient) -> None:
        turn = index
        while time.monotonic() - start < args.seconds:
            k = turn % len(asks)
            body = asks[k]
            result = await _one(client, Target(url, "lm", extra=_extra(body)), body["prompt"], body["max_tokens"])
            counts["requests"] += 1
            counts["tokens"] += result.tokens
            if result.error:
                counts["errors"] += 1
                errors.append(result.error)
            elif result.text != alone[k]:
                counts["mismatches"] += 1
                errors.append(f"prompt {k}: text differs from its single-request answer")
            turn += args.streams

    async with httpx.AsyncClient(timeout=600, limits=httpx.Limits(max_connections=args.streams + 4)) as client:
        await asyncio.gather(*(worker(i, client) for i in range(args.streams)))
    wall = time.monotonic() - start
    stop.set()
    watcher.join()
    base = [r for t, r in samples if t >= args.warmup][:1] or [samples[-1][1]]
    after = [r for t, r in samples if t >= args.warmup]
    growth = (max(after) - base[0]) / base[0] * 100 if after else 0.0
    mib = lambda b: round(b / 2**20, 1)  # noqa: E731
    return {"streams": args.streams, "seconds": round(wall, 1), **counts,
            "tokens_per_s": round(counts["tokens"] / wall, 1), "rss_after_warmup_mib": mib(base[0]),
            "rss_peak_after_warmup_mib": mib(max(after)), "rss_growth_pct": round(growth, 2),
            "first_errors": errors[:5], "rss_samples_mib": [mib(r) for _, r in samples]}  # fmt: skip


def markdown(report: dict) -> str:
    v = report["verdict"]
    ok = lambda b: "yes" if b else "**no**"  # noqa: E731
    return "\n".join([
        f"# `modelport serve` load test: {report['streams']} concurrent streams for {report['seconds']} s",
        "",
        "Made by `benchmarks/serve_generate/soak.py` (the trained 30.9 M stand-in; 32 prompts of held-out text, "
        "greedy and seeded sampling, 16 to 109 new tokens each).",
        "",
        f"- requests: {report['requests']}, tokens: {report['tokens']} ({report['tokens_per_s']} tokens/s)",
        f"- errors: {report['errors']} — zero: {ok(v['errors'])}",
        f"- texts equal to the single-request answer: {report['requests'] - report['mismatches']} of "
        f"{report['requests']} — all: {ok(v['texts_equal_alone'])}",
        f"- server RSS after warm-up {report['rss_after_warmup_mib']} MiB, peak after "
        f"{report['rss_peak_after_warmup_mib']} MiB: growth {report['rss_growth_pct']}% — within 5%: "
        f"{ok(v['rss_growth_within_5pct'])}",
    ]) + "\n"  # fmt: skip


if __name__ == "__main__":
    main()
