"""``modelport`` entry point. Heavy libraries load inside the commands, so ``--help`` stays fast."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer

from modelport.benchmark.timing import DEFAULT_BACKENDS
from modelport.cli import generate_command, onnx_commands, scale_commands
from modelport.cli.console import emit_json, err, errors_as_json, out
from modelport.cli.failures import exit_process, run_app
from modelport.cli.options import Backend, Dims, Fallback, Inputs, NoRangeCheck, Threads, VerifyTimeout
from modelport.options import DEFAULT_OPSET
from modelport.tolerances import DEFAULT_ATOL, DEFAULT_RTOL

app = typer.Typer(
    name="modelport",
    help="Export PyTorch models to ONNX you can trust: verified against PyTorch beyond the example, or refused "
    "with the reason. Add --debug anywhere for full tracebacks.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


@app.command()
def export(
    model: str = typer.Argument(
        ..., help="file.py:factory, package.module:factory, model.pt, model.pt2, hf:DIR, demo:minilm"
    ),
    output: Path = typer.Option(..., "--output", "-o", help="bundle directory to write"),
    input: list[str] = Inputs,  # noqa: A002 - the flag is --input
    dim: list[str] = Dims,
    exporter: str = typer.Option(
        "auto",
        help="auto (torch.export non-strict, strict, jit.script, jit.trace, trace+script; the first that "
        "verifies wins), dynamo, script or trace",
    ),
    opset: int = typer.Option(
        DEFAULT_OPSET, help="ONNX opset to write; raised to the lowest that can express the model (said in one line)"
    ),
    strict_opset: bool = typer.Option(
        False, "--strict-opset", help="refuse, naming the minimum, instead of raising the opset"
    ),
    atol: float = typer.Option(DEFAULT_ATOL, help="absolute tolerance against PyTorch"),
    rtol: float = typer.Option(DEFAULT_RTOL, help="relative tolerance against PyTorch"),
    keep_failed: bool = typer.Option(False, "--keep-failed", help="write the bundle even when verification fails"),
    verify_timeout: float = VerifyTimeout,
    task: str = typer.Option(
        None,
        help="hf: folders: text-generation (a decoder with a KV cache, checked by generating; the default for a "
        "causal LM folder), text2text-generation / automatic-speech-recognition (an encoder and a decoder; the "
        "default for T5, BART, Marian, Whisper), a task head (text-classification, question-answering...: "
        "`modelport tasks hf:DIR` lists a folder's) or feature-extraction (the folder's own class, a fixed graph)",
    ),
    data: Path = typer.Option(None, "--data", help="text-generation: prompts for the checks, one per line"),
    as_json: bool = typer.Option(False, "--json", help="print the result as JSON"),
) -> None:
    """Export MODEL to an ONNX bundle, verified against PyTorch at min/max/odd sizes of every dimension."""
    errors_as_json(as_json)
    from modelport.cli import show
    from modelport.exporting import export as do_export
    from modelport.spec import parse_dim, parse_input

    specs = [parse_input(text) for text in input or []]
    dims = [parse_dim(text) for text in dim or []]
    with err.status("exporting") as status:
        result = do_export(
            model,
            output,
            specs,
            dims,
            exporter,
            opset,
            atol,
            rtol,
            keep_failed,
            progress=lambda msg: status.update(msg),
            strict_opset=strict_opset,
            verify_timeout=verify_timeout,
            task=task,
            data=data,
        )
    from modelport.generation_export import GenerationExport

    shown: Any = show
    if isinstance(result, GenerationExport):
        from modelport.cli import show_generation as shown
    if as_json:
        emit_json(shown.export_json(result))
    else:
        shown.export_table(out, result)


@app.command()
def verify(
    bundle: Path = typer.Argument(..., help="bundle directory"),
    model: str = typer.Option(None, help="MODEL to compare against (default: the one recorded in the bundle)"),
    atol: float = typer.Option(None, help="absolute tolerance (default: the bundle's)"),
    rtol: float = typer.Option(None, help="relative tolerance (default: the bundle's)"),
    backend: str = Backend,
    threads: int = Threads,
    fallback: str = Fallback,
    verify_timeout: float = VerifyTimeout,
    data: Path = typer.Option(None, "--data", help="a generation bundle: prompts for its checks, one per line"),
    as_json: bool = typer.Option(False, "--json", help="print the parity report as JSON"),
) -> None:
    """Re-check a bundle against PyTorch on a backend (tolerances per its precision); exit 1 on a mismatch.
    A generation bundle is checked by generating: its tokens against transformers' generate."""
    errors_as_json(as_json)
    from modelport.cli import show
    from modelport.verification.bundle import verify as do_verify

    with err.status("verifying") as status:
        report = do_verify(
            bundle,
            model,
            atol,
            rtol,
            lambda msg: (
                err.print(msg, highlight=False, soft_wrap=True) if msg.startswith("importing") else status.update(msg)
            ),
            backend=backend,
            threads=threads,
            fallback=fallback,
            verify_timeout=verify_timeout,
            data=data,
        )
    from modelport.verification.budget import BudgetReport
    from modelport.verification.generation_report import GenerationReport
    from modelport.verification.text_verify import TextVerifyReport

    if as_json:
        emit_json(report.to_json())
    elif isinstance(report, GenerationReport):
        from modelport.cli.show_generation import checks_table

        checks_table(out, report)
    elif isinstance(report, TextVerifyReport):  # a generation bundle compressed by optimize
        out.print(report.summary(), highlight=False, soft_wrap=True)
    elif isinstance(report, BudgetReport):  # a bundle written by optimize: held to its accuracy budget
        show.budget_table(out, report)
    else:
        show.parity_table(out, report)


@app.command()
def run(
    bundle: Path = typer.Argument(..., help="bundle directory, or any .onnx file"),
    feed: list[str] = typer.Option(None, "--feed", help="NAME=FILE.npy (one per input; none: a random example feed)"),
    backend: str = Backend,
    threads: int = Threads,
    fallback: str = Fallback,
    show_placement: bool = typer.Option(
        False, "--show-placement", help="where ONNX Runtime ran each node: per provider and per op type"
    ),
    strict: bool = typer.Option(False, "--strict", help="fail when any node leaves the first-choice provider"),
    save: Path = typer.Option(None, help="write the outputs to this .npz file"),
    timeout: float = typer.Option(600.0, "--timeout", help="seconds the run may take; past it, it is stopped"),
    no_range_check: bool = NoRangeCheck,
    as_json: bool = typer.Option(False, "--json", help="print output stats, the backend and placement as JSON"),
) -> None:
    """Run a bundle (or an .onnx file) on a backend with inputs from .npy files."""
    errors_as_json(as_json)
    from modelport.cli import show
    from modelport.runtime.run import parse_feeds
    from modelport.runtime.run import run as do_run

    result = do_run(
        bundle,
        parse_feeds(feed or []),
        backend,
        threads=threads,
        fallback=fallback,
        placement=True if show_placement else (None if as_json else False),
        strict=strict,
        timeout=timeout,
        check_ranges=not no_range_check,
    )
    for warning in result.warnings:
        err.print(f"warning: {warning}", highlight=False, soft_wrap=True)
    if save is not None:
        show.save_npz(save, result.outputs)
    if as_json:
        emit_json({"outputs": show.output_stats(result.outputs), **result.to_json()})
        return
    show.outputs_table(out, result.outputs)
    show.ran_on(out, result)
    if show_placement and result.placement is not None:
        show.placement_table(out, result.placement)


@app.command()
def bench(
    model: str = typer.Argument(None, help="a bundle directory, or a MODEL to export first (as for export)"),
    backends: str = typer.Option(
        ",".join(DEFAULT_BACKENDS),
        "--backends",
        help="comma-separated: eager, torchscript, torch-compile, ort:PROVIDERS[@all|@disabled|...], "
        "openvino:f32, openvino:default, tensorrt (default: eager, ort:cpu and both OpenVINO precisions "
        "when openvino is installed)",
    ),
    batch: str = typer.Option(None, "--batch", help="sizes of the batch dimension, e.g. 1,8"),
    seq: str = typer.Option(None, "--seq", help="sizes of the sequence dimension, e.g. 32,128"),
    shape: list[str] = typer.Option(None, "--shape", help="NAME=SIZE[,SIZE...] for any dimension (repeatable)"),
    threads: int = Threads,
    warmup: int = typer.Option(3, help="untimed runs per backend before timing"),
    min_runs: int = typer.Option(20, "--min-runs", help="timed runs per backend, at least"),
    min_seconds: float = typer.Option(2.0, "--min-seconds", help="seconds of timed runs per backend, at least"),
    block_seconds: float = typer.Option(0.25, "--block-seconds", help="timed seconds per backend per round"),
    settle_seconds: float = typer.Option(
        0.1, "--settle-seconds", help="pause (and one untimed run) before each block; 0 for neither"
    ),
    peak: bool = typer.Option(False, "--peak", help="measure this machine's fp32 sgemm peak (GFLOP/s) first"),
    strict: bool = typer.Option(
        False, "--strict", help="refuse to report timings taken while other processes kept the cores busy"
    ),
    json_file: Path = typer.Option(None, "--json", help="write the records (one per backend x shape) to this file"),
    report: Path = typer.Option(None, "--report", help="write a Markdown report (and a PNG plot beside it)"),
    input: list[str] = Inputs,  # noqa: A002 - the flag is --input
    dim: list[str] = Dims,
) -> None:
    """Time backends side by side on the same feeds, with parity against eager and GFLOP/s."""
    from modelport.cli.bench_command import BenchTiming, bench_command

    timing = BenchTiming(warmup, min_runs, min_seconds, block_seconds, settle_seconds, strict)
    bench_command(out, err, model, backends, batch, seq, shape, threads, timing, peak, json_file, report, input, dim)


@app.command()
def optimize(
    model: str = typer.Argument(..., help="a bundle directory, or a MODEL to export first (as for export)"),
    output: Path = typer.Option(..., "--output", "-o", help="where to write the optimized bundle"),
    budget: str = typer.Option(
        "cos>=0.999",
        "--budget",
        help="accuracy per output: cos>=X (default), atol=X, or top1>=X (classifiers); a generation bundle: "
        "top1>=X,ppl<=X,kl<=X against fp32 PyTorch on --data (default top1>=0.9,ppl<=1.05,kl<=0.05)",
    ),
    precision: str = typer.Option(
        "auto", "--precision", help="auto (every candidate), fp32, fp16, bf16 or int8; int4 for a generation bundle"
    ),
    data: Path = typer.Option(
        None, "--data", help="a folder of .npz feeds, or a .txt file of sentences (default: generated feeds)"
    ),
    seq: int = typer.Option(128, "--seq", help="token length sentences are padded or cut to"),
    shape: list[str] = typer.Option(
        None, "--shape", help="NAME=SIZE of the generated feeds (no --data), which are also the timed ones"
    ),
    candidates: str = typer.Option(
        None, "--candidates", help="comma-separated names to try (default: all that --precision allows)"
    ),
    threads: int = Threads,
    max_exclusions: int = typer.Option(16, "--max-exclusions", help="nodes a candidate may keep in float"),
    search_seconds: float = typer.Option(
        600.0, "--search-seconds", help="past this, candidates stop trading nodes for accuracy"
    ),
    report: Path = typer.Option(None, "--report", help="write a Markdown report (and a PNG plot beside it)"),
    as_json: bool = typer.Option(False, "--json", help="print every candidate and the choice as JSON"),
    input: list[str] = Inputs,  # noqa: A002 - the flag is --input
    dim: list[str] = Dims,
) -> None:
    """The fastest candidate (fusions, bf16, int8...) that stays within an accuracy budget on your data."""
    errors_as_json(as_json)
    from modelport.cli.optimize_command import optimize_command

    optimize_command(
        out, err, model, output, report, as_json, budget=budget, precision=precision, data=data, seq=seq,
        shape=shape or None, candidates=candidates, threads=threads, max_exclusions=max_exclusions,
        search_seconds=search_seconds, inputs=input or None, dims=dim or None,
    )  # fmt: skip


@app.command()
def demo(
    output: Path = typer.Option(Path("build/minilm"), "--output", "-o", help="where to write the demo bundle"),
) -> None:
    """Export the packaged all-MiniLM-L6-v2, verify it, and embed real sentences with it."""
    from modelport.cli import show
    from modelport.demo_job import run_demo

    with err.status("exporting demo:minilm") as status:
        report = run_demo(output, progress=lambda msg: status.update(msg))
    show.demo_tables(out, report)


@app.command()
def tasks(
    model: str = typer.Argument(None, help="hf:DIR (none: every task modelport exports)"),
    as_json: bool = typer.Option(False, "--json", help="print the tasks as JSON"),
) -> None:
    """The tasks a transformers folder supports (its own first: export's default) and the bundle each writes."""
    errors_as_json(as_json)
    from dataclasses import asdict

    from rich.table import Table

    from modelport.sources.hf_tasks import tasks as find_tasks

    found = find_tasks(model)
    if as_json:
        emit_json({"model": model, "tasks": [asdict(t) for t in found]})
        return
    table = Table("task", "class", "bundle", title=f"tasks of {model}" if model else "tasks")
    for task in found:
        table.add_row(task.name + (" (default)" if task.own else ""), task.model_class or "-", task.bundle)
    out.print(table)


app.command("import")(onnx_commands.import_)
app.command()(onnx_commands.doctor)
app.command()(onnx_commands.graph)
app.command()(onnx_commands.upgrade)
app.command()(scale_commands.serve)
app.command()(scale_commands.batch)
app.command()(scale_commands.triton)
app.command()(generate_command.generate)


def main(argv: list[str] | None = None) -> None:
    """The ``modelport`` command: one line and an exit code from ``modelport.errors`` on every failure.
    With ``argv`` (tests, scripts) it raises ``SystemExit``; as the process's entry point it ends the process."""
    if argv is not None:
        run_app(app, argv)
    exit_process(lambda: run_app(app, sys.argv[1:]))
