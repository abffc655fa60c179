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
from modelport.optimization.text_api import TextOptimizeResult
from modelport.optimization.text_search import TextSearch


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
            if isinstance(failed, (OptimizeResult, TextOptimizeResult)):  # the table says what each candidate did
                bar.stop()
                _finish(out, err, failed, model, report, as_json)  # with --json the error is the JSON
            raise
    _finish(out, err, result, model, report, as_json)
    return result


def _finish(out: Console, err: Console, result: Any, model: str, report: Path | None, as_json: bool) -> None:
    if isinstance(result, TextOptimizeResult):
        _finish_text(out, err, result, report, as_json)
        return
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


def _finish_text(out: Console, err: Console, result: TextOptimizeResult, report: Path | None, as_json: bool) -> None:
    from modelport.cli.console import emit_json

    search = result.search
    console = err if as_json else out
    show_text(console, search)
    if report is not None:
        report.write_text(text_markdown(search))
        console.print(f"report: {report}", highlight=False)
    if as_json and result.bundle is not None:
        emit_json(result.to_json())
    elif result.bundle is not None and search.chosen is not None:
        chosen, speed = search.chosen, search.speedup(search.chosen)
        held = chosen.held_out.summary() if chosen.held_out else ""
        out.print(
            f"bundle {result.bundle.path}: {chosen.name} on {chosen.backend}"
            + (f", {speed:.2f}x fp32 decode" if speed else "")
            + f"; held-out {held}, within {search.budget.text}; `modelport generate/verify` use it",
            highlight=False,
            soft_wrap=True,
        )


TEXT_HEADERS = (
    "candidate",
    "backend",
    "tokens/s",
    "vs fp32",
    "TTFT ms",
    "MB",
    "top1",
    "ppl x",
    "kl",
    "greedy",
    "verdict",
)


def text_rows(search: TextSearch) -> list[list[str]]:
    def num(value: float | None, form: str) -> str:
        return format(value, form) if value is not None else "-"

    out = []
    for c in search.candidates:
        score = c.search
        speed = search.speedup(c)
        out.append([
            c.name + (" *" if c is search.chosen else ""), c.backend, num(c.tokens_per_s, ".1f"),
            f"{speed:.2f}x" if speed else "-", num(c.ttft_ms, ".0f"),
            num(c.weight_bytes / 1e6 if c.weight_bytes else None, ".0f"), num(score.top1 if score else None, ".4f"),
            num(score.ppl if score else None, ".4f"), num(score.kl if score else None, ".4f"),
            f"{c.greedy:.0%}" if c.greedy is not None else "-", c.verdict(search.budget),
        ])  # fmt: skip
    return out


def show_text(console: Console, search: TextSearch) -> None:
    table = Table(
        title=f"candidates, budget {search.budget.text} against fp32 PyTorch on {search.data.describe()} "
        f"(figures: the search half), {search.threads} threads",
        title_justify="left",
    )
    for header in TEXT_HEADERS:
        table.add_column(header, justify="left" if header in ("candidate", "backend", "verdict") else "right")
    for row in text_rows(search):
        table.add_row(*row)
    console.print(table)
    for note in search.notes:
        console.print(f"note: {note}", highlight=False, soft_wrap=True)


def text_markdown(search: TextSearch) -> str:
    lines = [f"# modelport optimize: generation bundle, budget {search.budget.text}", "",
             f"Against fp32 PyTorch on {search.data.describe()}; {search.threads} threads. "
             "Quality figures are the search half's; `*` marks the choice.", "",
             "| " + " | ".join(TEXT_HEADERS) + " |", "|" + "---|" * len(TEXT_HEADERS)]  # fmt: skip
    lines += ["| " + " | ".join(row) + " |" for row in text_rows(search)]
    return "\n".join(lines + [""] + [f"Note: {n}" for n in search.notes]) + "\n"
