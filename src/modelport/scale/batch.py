"""``modelport batch``: offline inference over many rows, written to one Parquet file keyed by row.

Rows come from a Parquet file (one column per input, each cell the row's tensor without the batch
dimension), a folder of ``.npz``/``.npy`` feeds (each file one feed, its rows along the batch dimension)
or a text file of sentences (one per line, each tokenized on its own with the bundle's tokenizer, so a
row's answer is the one ``modelport run`` gives that sentence). Rows are sorted by shape so equal shapes
run merged, ``batch_size`` rows at a time, within the bound the bundle was verified to.

Engines: ``local`` (this process, one runner) or ``ray`` (Ray Data ``map_batches`` over a pool of
``actors``, each loading the runner once; a dead actor is restarted and its rows retried by Ray Data).
A row that cannot run (a wrong shape or dtype, a size or value outside the declared range, a runtime failure)
goes to ``OUT.errors.jsonl`` with the reason: never silently dropped. The output is written to a temp
file beside ``OUT`` and renamed when complete.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelport.bundle import Bundle
from modelport.errors import UsageError
from modelport.runtime.base import infos_from_manifest
from modelport.scale.batch_rows import read_rows
from modelport.scale.batch_run import Settings, run_local, run_ray
from modelport.scale.batch_write import parquet, write
from modelport.serving.batching import batch_key

__all__ = ["batch", "BatchReport", "ENGINES"]

ENGINES = ("local", "ray")


@dataclass
class BatchReport:
    output: Path
    errors: Path | None  # the errors file, when a row failed
    rows: int
    written: int
    failed: int
    engine: str
    actors: int
    seconds: float
    outputs: list[str] = field(default_factory=list)
    check_ranges: bool = True  # False: rows outside the declared sizes and value ranges were answered too

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "output": str(self.output),
            "errors": str(self.errors) if self.errors else None,
            "rows": self.rows,
            "written": self.written,
            "failed": self.failed,
            "engine": self.engine,
            "actors": self.actors,
            "seconds": round(self.seconds, 3),
            "rows_per_second": round(self.rows_per_second, 2),
            "outputs": self.outputs,
            "check_ranges": self.check_ranges,
        }


def batch(
    bundle: str | Path,
    input: str | Path,
    output: str | Path,
    *,
    engine: str = "local",
    actors: int = 1,
    batch_size: int = 32,
    backend: str | None = None,
    threads: int | None = None,
    address: str | None = None,
    outputs: Sequence[str] | None = None,
    progress: Callable[[int, int], None] | None = None,
    check_ranges: bool = True,
) -> BatchReport:
    """Run the bundle over every row of ``input`` and write ``output`` (Parquet: ``row`` and one column per
    output). ``outputs`` picks which outputs to write (default all); ``progress(done, total)`` is called
    as rows finish. A row outside the bundle's declared sizes or value ranges fails (its reason in the
    errors file) unless ``check_ranges`` is False."""
    if engine not in ENGINES:
        raise UsageError(f"unknown engine {engine!r}", f"choose one of: {', '.join(ENGINES)}")
    if actors < 1 or batch_size < 1:
        raise UsageError("--actors and --batch-size must be at least 1", "e.g. --actors 2 --batch-size 32")
    pq = parquet()
    target = Path(output)
    if target.suffix.lower() != ".parquet":
        raise UsageError(f"{target} is not a .parquet file", "name the output OUT.parquet")
    opened = Bundle.open(bundle)
    names = [o.name for o in infos_from_manifest(opened.manifest.get("outputs", []))]
    wanted = list(outputs or names)
    unknown = [n for n in wanted if names and n not in names]
    if unknown:
        raise UsageError(f"the bundle has no output {', '.join(unknown)}", f"outputs: {', '.join(names)}")
    rows = read_rows(Path(input), opened)
    if not rows:
        raise UsageError(f"{input} holds no rows", "pass a Parquet file, a folder of .npz feeds or a text file")
    rows.sort(key=lambda r: (r.feed is None, batch_key(r.feed) if r.feed else ()))  # equal shapes side by side
    started = time.perf_counter()
    if engine == "ray" and threads is None:  # the actors share the cores rather than fight over them
        threads = max(1, (os.cpu_count() or 1) // actors)
    settings = Settings(str(opened.path), backend, threads, wanted, check_ranges)
    chunks = [rows[i : i + batch_size] for i in range(0, len(rows), batch_size)]
    results = run_local(settings, chunks) if engine == "local" else run_ray(settings, chunks, actors, address)
    errors, written, failed = write(results, target, len(rows), pq, progress)
    return BatchReport(target, errors, len(rows), written, failed, engine, actors if engine == "ray" else 1,
                       time.perf_counter() - started, wanted, check_ranges)  # fmt: skip
