"""Scale-out benchmark on MiniLM: offline batch inference and serving engines, on this machine.

    .venv/bin/python benchmarks/scale/run.py [--rows 4000] [--seconds 15] [--parts batch,serve]

batch: the same sentences (benchmarks/data/sentences.txt, repeated to --rows) embedded by
  - the loop a user writes by hand: one runner, one sentence per call;
  - `modelport batch --engine local` (rows sorted by length, equal lengths merged, 32 per task);
  - `modelport batch --engine ray` with 1 and 2 Ray Data actors (threads split between them).
  Each is timed end to end as a user waits for it (Ray's start and the actors' model loading included);
  every output is checked against the hand loop's. Results: OUT/scale-batch.json and .md.
serve: benchmarks/serve/run.py at 16 concurrent clients on MiniLM for `modelport serve`, `serve --engine ray`
  with 1 and 2 replicas, `serve --engine triton` (a real Triton running modelport's runner) and the Triton
  peer (its own Python model on onnxruntime). Results: OUT/scale-serve.json and .md.
On 2 cores, replicas and actors can only share the same two cores: these figures show the engines'
overheads, not a speed-up that needs more machines.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "build" / "bench" / "scale"
MODELPORT = str(ROOT / ".venv" / "bin" / "modelport")
OUTPUT = "sentence_embedding"


def bundle() -> Path:
    path = ROOT / "build" / "bench" / "serve" / "minilm"  # the serve benchmark's export, shared
    if not (path / "modelport.json").exists():
        subprocess.run([MODELPORT, "export", "demo:minilm", "-o", str(path)], check=True, cwd=ROOT)
    return path


def sentences(rows: int) -> Path:
    lines = [x for x in (ROOT / "benchmarks/data/sentences.txt").read_text().splitlines() if x.strip()]
    path = BUILD / f"sentences-{rows}.txt"
    path.write_text("\n".join((lines * (rows // len(lines) + 1))[:rows]) + "\n")
    return path


def hand_loop(model: Path, text: Path, threads: int) -> tuple[float, dict[int, np.ndarray]]:
    from modelport.bundle import Bundle
    from modelport.optimization.data import read_sentences, tokenizer_folder
    from modelport.runtime.registry import create
    from modelport.sources.hf import load_tokenizer

    start = time.perf_counter()
    tokenizer = load_tokenizer(tokenizer_folder(Bundle.open(model)))
    answers = {}
    with create(None, model, threads=threads) as runner:
        for row, sentence in enumerate(read_sentences(text)):
            encoded = tokenizer(sentence, return_tensors="np")
            feed = {k: encoded[k].astype(np.int64) for k in ("input_ids", "attention_mask", "token_type_ids")}
            answers[row] = runner.infer(feed)[OUTPUT][0]
    return time.perf_counter() - start, answers


def with_batch(model: Path, text: Path, engine: str, actors: int, threads: int) -> tuple[float, Path]:
    """`modelport batch` in a process of its own, as a user runs it."""
    out = BUILD / f"out-{engine}-{actors}.parquet"
    cmd = [MODELPORT, "batch", str(model), "-i", str(text), "-o", str(out), "--engine", engine,
           "--select", OUTPUT, "--json", "--threads", str(threads)]  # fmt: skip
    if engine == "ray":
        cmd += ["--actors", str(actors)]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    seconds = time.perf_counter() - start
    if proc.returncode:
        raise RuntimeError(proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "failed")
    return seconds, out


def worst_difference(out: Path, want: dict[int, np.ndarray]) -> float:
    import pyarrow.parquet as pq

    table = pq.read_table(out)
    got = dict(zip(table.column("row").to_pylist(), table.column(OUTPUT).to_pylist(), strict=True))
    assert sorted(got) == sorted(want), "rows missing or extra"
    return max(float(np.abs(np.asarray(got[r], np.float32) - want[r]).max()) for r in want)


def batch_part(args: argparse.Namespace) -> dict[str, Any]:
    model, text = bundle(), sentences(args.rows)
    cores = os.cpu_count() or 1
    seconds, want = hand_loop(model, text, cores)
    rows = [{"engine": "hand loop (one runner, one sentence per call)", "actors": 1, "seconds": seconds}]
    print(json.dumps(rows[-1]), flush=True)
    for engine, actors in (("local", 1), ("ray", 1), ("ray", 2)):
        try:
            seconds, out = with_batch(model, text, engine, actors, max(1, cores // actors))
        except RuntimeError as exc:
            rows.append({"engine": f"modelport batch --engine {engine}", "actors": actors, "skipped": str(exc)})
        else:
            rows.append({"engine": f"modelport batch --engine {engine}", "actors": actors, "seconds": seconds,
                         "max_abs_diff": worst_difference(out, want)})  # fmt: skip
        print(json.dumps(rows[-1]), flush=True)
    for row in rows:
        if "seconds" in row:
            row["rows_per_s"] = round(args.rows / row["seconds"], 1)
            row["seconds"] = round(row["seconds"], 2)
    return {"rows": args.rows, "cores": cores, "results": rows}


def batch_markdown(record: dict[str, Any], command: str) -> str:
    lines = [
        "# Batch inference: MiniLM sentence embeddings",
        "",
        f"`{command}`: {record['rows']} sentences, {record['cores']} cores; end-to-end wall time of each "
        "(Ray's start and model loading included); outputs checked against the hand loop's.",
        "",
        "| engine | actors | seconds | rows/s | max abs diff vs hand loop |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in record["results"]:
        if "skipped" in r:
            lines.append(f"| {r['engine']} | {r['actors']} | skipped: {r['skipped']} | | |")
        else:
            diff = f"{r['max_abs_diff']:.1e}" if "max_abs_diff" in r else "—"
            lines.append(f"| {r['engine']} | {r['actors']} | {r['seconds']} | {r['rows_per_s']} | {diff} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=4000)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--parts", default="batch,serve")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    BUILD.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    command = " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]])
    if "batch" in args.parts:
        record = {"command": command, "machine": platform.processor() or platform.machine(), **batch_part(args)}
        (args.out / "scale-batch.json").write_text(json.dumps(record, indent=1))
        (args.out / "scale-batch.md").write_text(batch_markdown(record, command))
        print(batch_markdown(record, command))
    if "serve" in args.parts:
        servers = "modelport,modelport-ray,modelport-ray2,modelport-triton,triton"
        out = os.path.relpath(args.out, ROOT)
        subprocess.run([sys.executable, "benchmarks/serve/run.py", "--models", "minilm", "--servers", servers,
                        "--clients", "16", "--seconds", str(args.seconds), "--out", out, "--name", "scale-serve"],
                       check=True, cwd=ROOT)  # fmt: skip


if __name__ == "__main__":
    main()
