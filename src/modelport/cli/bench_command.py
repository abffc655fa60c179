"""``modelport bench``: parse, call ``modelport.bench`` with a progress bar, print the tables, write the JSON and
the report."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import NamedTuple

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from modelport.benchmark.api import bench
from modelport.benchmark.machine import measure_peak
from modelport.benchmark.report import COLUMNS, SPLIT, cell, write_json, write_report
from modelport.benchmark.shapes import parse_sizes
from modelport.benchmark.timing import BenchResult
from modelport.errors import UsageError
from modelport.machine import physical_cores


class BenchTiming(NamedTuple):
    warmup: int
    min_runs: int
    min_seconds: float
    block_seconds: float
    settle_seconds: float
    strict: bool = False


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
    if model is None and not peak:
        raise UsageError(
            "bench needs a MODEL or bundle directory (or --peak alone)", "e.g. modelport bench demo:minilm"
        )
    peak_gflops = None
    if peak:
        threads = threads or physical_cores()
        with err.status(f"measuring the fp32 sgemm peak with {threads} threads"):
            peak_gflops = measure_peak(threads)
        out.print(f"fp32 sgemm peak: {peak_gflops} GFLOP/s ({threads} threads, torch.mm, best of n=512/1024/2048)")
    if model is None:
        return
    with Progress(
        TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(), console=err, transient=True
    ) as bar:
        task = bar.add_task(f"exporting {model}", total=1.0)
        result = bench(
            model,
            backends,  # the default list means the library's default choice
            batch=parse_sizes(batch, "--batch") if batch else None,
            seq=parse_sizes(seq, "--seq") if seq else None,
            shapes=shape,
            inputs=inputs or None,
            dims=dims or None,
            threads=threads,
            peak_gflops=peak_gflops,
            progress=lambda text, done: bar.update(task, description=text, completed=done),
            on_export=lambda msg: bar.update(task, description=f"{model}: {msg}"),
            **timing._asdict(),
        )
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
