"""``modelport optimize``: parse, call ``modelport.optimize`` with a progress bar, print what every candidate
did, write the JSON and the report."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from modelport.errors import ModelportError
from modelport.optimization import OptimizeResult, optimize
from modelport.optimization.report import HEADERS, drift_lines, rows, write_report
from modelport.optimization.search import SearchResult


def optimize_command(
    out: Console, err: Console, model: str, output: Path, report: Path | None, as_json: bool, **options: Any
) -> OptimizeResult:
    with Progress(
        TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(), console=err, transient=True
    ) as bar:
        task = bar.add_task(f"preparing {model}", total=1.0)
        try:
            result = optimize(
                model,
                output,
                progress=lambda text, done: bar.update(task, description=text, completed=done),
                on_export=lambda msg: bar.update(task, description=f"{model}: {msg}"),
                **options,
            )
        except ModelportError as exc:
            failed = getattr(exc, "report", None)
            if isinstance(failed, OptimizeResult):  # the table says what each candidate did
                bar.stop()
                _finish(out, err, failed, model, report, as_json)  # with --json the error is the JSON
            raise
    _finish(out, err, result, model, report, as_json)
    return result


def _finish(out: Console, err: Console, result: OptimizeResult, model: str, report: Path | None, as_json: bool) -> None:
    search = result.search
    console = err if as_json else out
    show(console, search)
    if report is not None:
        plot = write_report(search, report, model, "modelport " + shlex.join(sys.argv[1:]))
        console.print(f"report: {report} (plot {plot})", highlight=False)
    if as_json and result.bundle is not None:
        from modelport.cli.console import emit_json

        emit_json(result.to_json())
    elif result.bundle is not None:
        chosen = search.chosen
        speed = search.speedup(chosen) if chosen else None
        out.print(
            f"bundle {result.bundle.path}: {chosen.name if chosen else '-'} on {chosen.backend if chosen else '-'}"
            + (f", {speed:.2f}x PyTorch eager" if speed else "")
            + f", within {search.budget.text} on held-out data; `modelport run/verify/bench` use it",
            highlight=False,
        )


def show(console: Console, search: SearchResult) -> None:
    table = Table(
        title=f"candidates, budget {search.budget.text} against {search.reference} ({search.data.origin}), "
        f"{search.threads} threads" + (f"; eager p50 {search.eager_p50_ms:.2f} ms" if search.eager_p50_ms else ""),
        title_justify="left",
    )
    for header in HEADERS:
        table.add_column(header, justify="right" if header in ("p50 ms", "vs eager") else "left")
    for row in rows(search):
        table.add_row(*row)
    console.print(table)
    for line in drift_lines(search, top=5):
        console.print(line, highlight=False, soft_wrap=True)
    for note in search.notes:
        console.print(f"note: {note}", highlight=False, soft_wrap=True)
