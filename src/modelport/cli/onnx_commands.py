"""Commands for any ONNX file, ours or anyone's: ``import``, ``doctor``, ``graph``, ``upgrade``."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from modelport.cli.console import emit_json, err, errors_as_json, out
from modelport.cli.options import Dims, Inputs, VerifyTimeout
from modelport.tolerances import DEFAULT_ATOL, DEFAULT_RTOL


def import_(
    model: Path = typer.Argument(..., help="any .onnx file (tf2onnx, a model zoo, another exporter, any year)"),
    output: Path = typer.Option(..., "--output", "-o", help="bundle directory to write"),
    input: list[str] = Inputs,  # noqa: A002 - the flag is --input
    dim: list[str] = Dims,
    atol: float = typer.Option(DEFAULT_ATOL, help="absolute tolerance against ONNX's reference evaluator"),
    rtol: float = typer.Option(DEFAULT_RTOL, help="relative tolerance against ONNX's reference evaluator"),
    verify_timeout: float = VerifyTimeout,
    as_json: bool = typer.Option(False, "--json", help="print the result as JSON"),
) -> None:
    """Make a bundle of any ONNX file: signature from the graph, ONNX Runtime checked against ONNX's reference
    evaluator; every default taken is stated. Then bench, optimize, serve and triton take it."""
    errors_as_json(as_json)
    from modelport.ingest.importing import import_onnx
    from modelport.spec import parse_dim, parse_input

    specs = [parse_input(text) for text in input or []]
    dims = [parse_dim(text) for text in dim or []]
    with err.status("importing") as status:
        result = import_onnx(model, output, specs, dims, atol=atol, rtol=rtol, verify_timeout=verify_timeout,
                             progress=lambda msg: status.update(msg))  # fmt: skip
    if as_json:
        emit_json(result.to_json())
        return
    status_line = result.parity.summary() if result.parity else "not checked (see the notes)"
    out.print(f"{result.bundle.path}: {result.bundle.manifest['status']} — {status_line}", highlight=False)
    out.print(f"signature: {result.bundle.signature}", highlight=False)
    for note in result.notes:
        out.print(f"note: {note}", highlight=False)


def doctor(
    path: Path = typer.Argument(..., help="an .onnx file (from any exporter) or a bundle directory"),
    as_json: bool = typer.Option(False, "--json", help="print the findings as JSON"),
) -> None:
    """What is wrong with an ONNX model and how to fix it; exit 1 when a finding is an error."""
    errors_as_json(as_json)
    from modelport.cli.show_graph import doctor_text
    from modelport.ingest.doctor import doctor as do_doctor

    with err.status("examining"):
        report = do_doctor(path)
    if as_json:
        emit_json(report.to_json())
    else:
        doctor_text(out, report)
    if not report.ok:
        sys.exit(1)


def graph(
    path: Path = typer.Argument(..., help="an .onnx file or a bundle directory"),
    netron: bool = typer.Option(False, "--netron", help="also open the model in Netron on localhost"),
    port: int = typer.Option(8081, help="port for --netron"),
    as_json: bool = typer.Option(False, "--json", help="print the summary as JSON"),
) -> None:
    """Inputs/outputs with dims, op histogram, and If/Loop with the size of their subgraphs."""
    errors_as_json(as_json)
    from modelport.cli.show_graph import graph_text
    from modelport.diagnose.graph import describe
    from modelport.diagnose.open_model import open_onnx

    model_path, model = open_onnx(path)
    info = describe(model)
    if as_json:
        emit_json(info.to_json())
    else:
        graph_text(out, info)
    if netron:
        from modelport.diagnose.netron import serve_netron

        serve_netron(model_path, port, say=lambda msg: err.print(msg, highlight=False))


def upgrade(
    model: Path = typer.Argument(..., help="an old .onnx file that onnxruntime refuses (any .onnx with --opset)"),
    output: Path = typer.Option(..., "--output", "-o", help="the .onnx to write; NAME.proof.json goes beside it"),
    opset: int = typer.Option(None, "--opset", help="the opset to lift to (default: the lowest onnxruntime runs)"),
    atol: float = typer.Option(DEFAULT_ATOL, help="absolute tolerance against the original's answers"),
    rtol: float = typer.Option(DEFAULT_RTOL, help="relative tolerance against the original's answers"),
    as_json: bool = typer.Option(False, "--json", help="print the proof as JSON"),
) -> None:
    """Lift an old file's opset so onnxruntime runs it, with proof that its answers did not change (against
    the test data beside it, or ONNX's reference evaluator on the original); refused otherwise, naming why."""
    errors_as_json(as_json)
    from modelport.ingest.upgrade import upgrade as do_upgrade

    with err.status("upgrading"):
        report = do_upgrade(model, output, opset, atol=atol, rtol=rtol)
    if as_json:
        emit_json(report.to_json())
    else:
        out.print(report.summary(), highlight=False, soft_wrap=True)
