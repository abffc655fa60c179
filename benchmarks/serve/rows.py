"""What a row costs at each batch size, on the runner `modelport serve` builds (same session settings):
the cap worth giving `serve --max-batch-size`. Sizes in interleaved rounds, so a slow spell of the
machine falls on every size alike; per-row time is the round's wall time over the rows it ran.

    .venv/bin/python benchmarks/serve/rows.py [--model minilm] [--sizes 1,2,4,8,12,16] [--rounds 6]

Results: benchmarks/results/serve-rows.json and serve-rows.md (the model is exported by
benchmarks/serve/run.py's recipe if it is not there yet).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import MODELS, ROOT, export, feed_for  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="minilm", choices=sorted(MODELS))
    parser.add_argument("--sizes", default="1,2,4,8,12,16")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=1.5, help="per size per round")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    from modelport.serving.models import ModelSource, ServedModel

    served = ServedModel(ModelSource(args.model, export(args.model)), None, args.threads)
    served.load()
    one = feed_for(MODELS[args.model][1])
    sizes = [int(s) for s in args.sizes.split(",")]
    feeds = {b: {n: np.resize(a, (b, *a.shape[1:])) for n, a in one.items()} for b in sizes}
    per_row: dict[int, list[float]] = {b: [] for b in sizes}
    try:
        for b in sizes:
            served.infer(feeds[b])
        for _ in range(args.rounds):
            for b in sizes:
                start, rows = time.perf_counter(), 0
                while time.perf_counter() - start < args.seconds:
                    served.infer(feeds[b])
                    rows += b
                per_row[b].append((time.perf_counter() - start) / rows * 1e3)
    finally:
        served.close()
    record: dict[str, Any] = {
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()},
        "model": args.model,
        "threads": args.threads,
        "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "rows": [
            {"batch": b, "ms_per_row_median": round(float(np.median(t)), 2), "ms_per_row_min": round(min(t), 2)}
            for b, t in per_row.items()
        ],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "serve-rows.json").write_text(json.dumps(record, indent=1))
    lines = [
        f"# Cost of a row by batch size: {args.model}",
        "",
        f"`{record['command']}`: the runner `modelport serve` builds, {args.threads} threads, "
        f"{args.rounds} interleaved rounds of {args.seconds:g} s per size, {record['machine']['cores']} cores.",
        "",
        "| batch | ms per row (median) | ms per row (best round) |",
        "|---|---|---|",
        *(f"| {r['batch']} | {r['ms_per_row_median']} | {r['ms_per_row_min']} |" for r in record["rows"]),
    ]
    (args.out / "serve-rows.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
