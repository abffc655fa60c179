"""``modelport bench``: resolve the model to a bundle, run the benchmark with a progress bar, print
the tables, write the JSON and the report."""

from __future__ import annotations

import importlib.util
import shlex
import sys
import tempfile
from pathlib import Path
from typing import NamedTuple

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from modelport.bench import BenchConfig, BenchResult, bench, measure_peak, shape_grid
from modelport.bench.method import DEFAULT_BACKENDS, parse_sizes
from modelport.bench.report import COLUMNS, SPLIT, cell, write_json, write_report
from modelport.bundle import MANIFEST, Bundle
from modelport.errors import UsageError
from modelport.runtime.ort import physical_cores


class BenchTiming(NamedTuple):
    warmup: int
    min_runs: int
    min_seconds: float
    block_seconds: float
    settle_seconds: float


def bench_command(
    out: Console,
    err: Console,
    model: str | None,
    backends: str,
    batch: str | None,
    seq: str | None,
    shape: list[str] | None,
    threads: int | None,
    timing: BenchTiming,
    peak: bool,
    json_file: Path | None,
    report: Path | None,
    inputs: list[str] | None,
    dims: list[str] | None,
) -> None:
    threads = threads or physical_cores()
    if model is None and not peak:
        raise UsageError(
            "bench needs a MODEL or bundle directory (or --peak alone)", "e.g. modelport bench demo:minilm"
        )
    peak_gflops = None
    if peak:
        with err.status(f"measuring the fp32 sgemm peak with {threads} threads"):
            peak_gflops = measure_peak(threads)
        out.print(f"fp32 sgemm peak: {peak_gflops} GFLOP/s ({threads} threads, torch.mm, best of n=512/1024/2048)")
    if model is None:
        return
    names, notes = _backends(backends)
    with tempfile.TemporaryDirectory(prefix="modelport-bench-") as tmp:
        bundle = _bundle(err, model, Path(tmp) / "bundle", inputs, dims)
        config = BenchConfig(
            backends=names,
            shapes=shape_grid(
                bundle.signature,
                parse_sizes(batch, "--batch") if batch else None,
                parse_sizes(seq, "--seq") if seq else None,
                shape,
            ),
            threads=threads,
            peak_gflops=peak_gflops,
            **timing._asdict(),
        )
        with Progress(
            TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(), console=err, transient=True
        ) as bar:
            task = bar.add_task("benchmarking", total=1.0)
            result = bench(bundle, config, lambda text, done: bar.update(task, description=text, completed=done))
    result.notes = notes + result.notes
    result.model = model
    show_result(out, result)
    if json_file is not None:
        write_json(result, json_file)
        out.print(f"records: {json_file}")
    if report is not None:
        plot = write_report(result, report, "modelport " + shlex.join(sys.argv[1:]))
        out.print(f"report: {report} (plot {plot})")


def show_result(console: Console, result: BenchResult) -> None:
    for shape in dict.fromkeys(r["shape"] for r in result.records):
        rows = [r for r in result.records if r["shape"] == shape]
        titles = (f"{result.model} at {shape}, {result.machine['threads']} threads: latency", "cost and accuracy")
        for title, columns in zip(titles, (COLUMNS[:SPLIT], COLUMNS[SPLIT:]), strict=True):
            table = Table(title=title, title_justify="left")
            for header, _, _ in columns:
                table.add_column(header, justify="left" if header == "backend" else "right")
            for record in rows:
                table.add_row(*(cell(record, key, fmt) for _, key, fmt in columns))
            console.print(table)
        for record in rows:
            for warning in record["warnings"]:
                console.print(f"warning: {record['backend']}: {warning}", highlight=False, soft_wrap=True)
    for note in result.notes:
        console.print(f"note: {note}", highlight=False, soft_wrap=True)


def _backends(text: str) -> tuple[list[str], list[str]]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise UsageError("--backends is empty", f"e.g. --backends {','.join(DEFAULT_BACKENDS)}")
    if names == list(DEFAULT_BACKENDS) and importlib.util.find_spec("openvino") is None:
        return [n for n in names if not n.startswith("openvino")], [
            "openvino is not installed, so the default backends skip it (pip install 'modelport[openvino]')"
        ]
    return names, []


def _bundle(err: Console, model: str, staging: Path, inputs: list[str] | None, dims: list[str] | None) -> Bundle:
    """A bundle directory as it is; anything else is exported (and verified) first, into ``staging``."""
    if Path(model).is_dir() and (Path(model) / MANIFEST).is_file():
        if inputs or dims:
            raise UsageError("--input/--dim apply when bench exports a MODEL, not to a bundle", "drop them")
        return Bundle.open(model)
    from modelport.export import export
    from modelport.spec import parse_dim, parse_input

    with err.status(f"exporting {model}") as status:
        result = export(
            model,
            staging,
            [parse_input(t) for t in inputs or []],
            [parse_dim(t) for t in dims or []],
            progress=lambda msg: status.update(f"{model}: {msg}"),
        )
    err.print(
        f"exported and verified {model} ({result.bundle.manifest['capture']['strategy']}, "
        f"{result.export_seconds + result.verify_seconds:.0f} s)",
        highlight=False,
    )
    return result.bundle
