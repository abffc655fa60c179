"""``modelport`` entry point. Heavy libraries load inside the commands, so ``--help`` stays fast."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer

from modelport.benchmark.timing import DEFAULT_BACKENDS
from modelport.cli import generate_command
from modelport.cli.console import emit_json, err, errors_as_json, out
from modelport.cli.failures import exit_process, run_app
from modelport.deadline import DEFAULT_VERIFY_TIMEOUT
from modelport.options import DEFAULT_OPSET
from modelport.runtime.registry import backend_help, backend_names
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

Inputs = typer.Option(
    None, "--input", "-i", help="NAME:DIMS[:DTYPE[:LOW..HIGH]], e.g. x:batch,3,h,w (repeat per input)"
)
Dims = typer.Option(None, "--dim", "-d", help="NAME=MIN..MAX[@OPT] bounds of a symbolic dimension (repeatable)")
VerifyTimeout = typer.Option(
    DEFAULT_VERIFY_TIMEOUT,
    "--verify-timeout",
    help="seconds each PyTorch or runtime call may take while verifying; past it the model is refused "
    "(a loop that does not end)",
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
        help="text-generation (a decoder with a KV cache, checked by generating; the default for a causal LM "
        "folder) or feature-extraction (a fixed graph without a cache)",
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


@app.command("import")
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


Backend = typer.Option(
    None,
    "--backend",
    "-b",
    help="where to run it (default: the bundle's own: ort:cpu, or what `modelport optimize` chose); one of: "
    + ", ".join(backend_names())
    + ". "
    + backend_help(),
)
Threads = typer.Option(None, "--threads", help="intra-op threads (default: physical cores)")
Fallback = typer.Option(
    "refuse", "--fallback", help="refuse (default): a missing provider is an error; allow: warn and run on the next"
)
NoRangeCheck = typer.Option(
    False,
    "--no-range-check",
    help="run inputs outside the bundle's declared sizes and value ranges (default: refused); noted in the output",
)


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
    from modelport.verification.generation import GenerationReport

    if as_json:
        emit_json(report.to_json())
    elif isinstance(report, GenerationReport):
        from modelport.cli.show_generation import checks_table

        checks_table(out, report)
    elif hasattr(report, "budget"):  # a bundle written by optimize: held to its accuracy budget
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


@app.command()
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
        "cos>=0.999", "--budget", help="accuracy per output: cos>=X (default), atol=X, or top1>=X (classifiers)"
    ),
    precision: str = typer.Option("auto", "--precision", help="auto (every candidate), fp32, fp16, bf16 or int8"),
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
def serve(
    models: list[str] = typer.Argument(..., help="bundles or .onnx files to serve, each PATH or NAME=PATH"),
    backend: str = typer.Option(None, "--backend", help="for every model (default: each bundle's own)"),
    threads: int = Threads,
    host: str = typer.Option("127.0.0.1", "--host", help="address to bind (0.0.0.0: every interface)"),
    port: int = typer.Option(8000, "--port", help="HTTP port (0: any free one)"),
    grpc_port: int = typer.Option(8001, "--grpc-port", help="gRPC port (0: any free one)"),
    no_grpc: bool = typer.Option(False, "--no-grpc", help="serve HTTP only"),
    no_batching: bool = typer.Option(False, "--no-batching", help="run every request on its own"),
    max_queue_delay: int = typer.Option(
        0,
        "--max-queue-delay",
        help="µs the oldest request waits for others to batch with (0: batch what queued during the last execution)",
    ),
    max_queue_size: int = typer.Option(256, "--max-queue-size", help="requests queued per model; more get 503"),
    preferred_batch_size: list[int] = typer.Option(
        None, "--preferred-batch-size", help="a batch size run without waiting out the delay (repeatable)"
    ),
    max_batch_size: int = typer.Option(
        None, "--max-batch-size", help="rows one execution merges at most (default: the model's verified bound)"
    ),
    max_request_bytes: int = typer.Option(64 * 2**20, "--max-request-bytes", help="larger requests get 413"),
    token: str = typer.Option(
        None, "--token", help="bearer token every route but health needs (default: $MODELPORT_SERVE_TOKEN)"
    ),
    log_level: str = typer.Option("info", "--log-level", help="info: one JSON line per request; warning: quiet"),
    engine: str = typer.Option(
        "modelport", "--engine", help="modelport (this process), triton (a real Triton) or ray (Ray Serve replicas)"
    ),
    triton_python: str = typer.Option(
        None, "--triton-python", help="triton: Triton's own environment's Python (default: $MODELPORT_TRITON_PYTHON)"
    ),
    metrics_port: int = typer.Option(None, "--metrics-port", help="triton: Prometheus metrics port (default: off)"),
    replicas: int = typer.Option(1, "--replicas", help="ray: replicas per model"),
    autoscale: str = typer.Option(None, "--autoscale", help="ray: MIN..MAX replicas, autoscaled on load"),
    address: str = typer.Option(None, "--address", help="ray: an existing cluster (default: a local Ray)"),
    no_range_check: bool = NoRangeCheck,
) -> None:
    """Serve bundles over the Open Inference Protocol v2 (HTTP and gRPC), with dynamic batching and metrics.
    --engine triton runs them in a real Triton (a model repository, or bundles as a Python-backend one);
    --engine ray as Ray Serve deployments (HTTP)."""
    from modelport.serving import Server
    from modelport.serving import serve as start

    if engine != "modelport":
        _serve_elsewhere(
            engine, models, backend=backend, threads=threads, host=host, port=port, grpc_port=grpc_port,
            batching=not no_batching, max_queue_delay_us=max_queue_delay, max_queue_size=max_queue_size,
            preferred=preferred_batch_size or (), max_batch_size=max_batch_size, max_request_bytes=max_request_bytes,
            token=token, triton_python=triton_python, metrics_port=metrics_port, replicas=replicas,
            autoscale=autoscale, address=address, check_ranges=not no_range_check,
        )  # fmt: skip
        return

    def say_ready(server: Server) -> None:
        grpc = f", gRPC {host}:{server.grpc_port}" if server.grpc_port is not None else ""
        names = ", ".join(server.core.models)
        off = "; range checks off: inputs outside the declared ranges are answered" if no_range_check else ""
        err.print(
            f"serving {names} on {server.url}{grpc} (Ctrl-C or SIGTERM: stop after in-flight requests{off})",
            soft_wrap=True,
        )

    start(
        models, backend=backend, threads=threads, host=host, port=port, grpc_port=None if no_grpc else grpc_port,
        batching=not no_batching, max_queue_delay_us=max_queue_delay, max_queue_size=max_queue_size,
        preferred_batch_sizes=preferred_batch_size or (), max_batch_size=max_batch_size,
        max_request_bytes=max_request_bytes, token=token, check_ranges=not no_range_check, log_level=log_level,
        on_ready=say_ready,
    )  # fmt: skip


def _serve_elsewhere(engine: str, models: list[str], **o: Any) -> None:
    from modelport.errors import UsageError

    if o["max_batch_size"] is not None and engine in ("triton", "ray"):
        raise UsageError(f"--max-batch-size applies to --engine modelport, not {engine}", "drop it: the bound applies")
    if engine == "triton":
        from modelport.scale.triton_server import serve_triton

        ignored = [f"--{f.replace('_', '-')}" for f in ("backend", "threads", "token") if o[f]]
        ignored += ["--no-range-check"] if not o["check_ranges"] else []
        if ignored:
            raise UsageError(f"{', '.join(ignored)} do not apply to --engine triton", "set them in the bundles")
        server = serve_triton(
            models, python=o["triton_python"], host=o["host"], port=o["port"], grpc_port=o["grpc_port"],
            metrics_port=o["metrics_port"], batching=o["batching"], max_queue_delay_us=o["max_queue_delay_us"],
            preferred_batch_sizes=o["preferred"], block=False,
        )  # fmt: skip
        err.print(f"Triton serving {', '.join(server.names)} on {server.url}, gRPC {o['host']}:{server.grpc_port} "
                  "(Ctrl-C or SIGTERM: stop)", soft_wrap=True)  # fmt: skip
        server.wait()
    elif engine == "ray":
        from modelport.scale.ray_serve import serve_ray

        scale = None
        if o["autoscale"]:
            low, sep, high = o["autoscale"].partition("..")
            if not (sep and low.isdigit() and high.isdigit()):
                raise UsageError(f"--autoscale {o['autoscale']!r} is not MIN..MAX", "e.g. --autoscale 1..4")
            scale = (int(low), int(high))
        server = serve_ray(
            models, backend=o["backend"], threads=o["threads"], host=o["host"], port=o["port"],
            replicas=o["replicas"], autoscale=scale, address=o["address"], batching=o["batching"],
            max_queue_delay_us=o["max_queue_delay_us"],
            max_queue_size=o["max_queue_size"], max_request_bytes=o["max_request_bytes"], token=o["token"],
            check_ranges=o["check_ranges"], block=False,
        )  # fmt: skip
        copies = f"{scale[0]}..{scale[1]}" if scale else str(o["replicas"])
        err.print(f"Ray Serve serving {len(models)} model(s) x {copies} replicas on {server.url} "
                  "(HTTP; Ctrl-C or SIGTERM: stop)", soft_wrap=True)  # fmt: skip
        server.wait()
    else:
        raise UsageError(f"unknown engine {engine!r}", "choose modelport, triton or ray")


@app.command()
def batch(
    bundle: Path = typer.Argument(..., help="the bundle to run"),
    input: Path = typer.Option(..., "--input", "-i", help="Parquet (a column per input), a folder of .npz, or .txt"),
    output: Path = typer.Option(..., "--output", "-o", help="OUT.parquet: row and one column per output"),
    engine: str = typer.Option("local", "--engine", help="local (this process) or ray (Ray Data actors)"),
    actors: int = typer.Option(2, "--actors", help="ray: runner actors, each loading the model once"),
    batch_size: int = typer.Option(32, "--batch-size", help="rows per task (equal shapes run merged)"),
    backend: str = typer.Option(None, "--backend", help="default: the bundle's own"),
    threads: int = typer.Option(None, "--threads", help="runtime threads per runner (ray default: cores / actors)"),
    address: str = typer.Option(None, "--address", help="ray: an existing cluster (default: a local Ray)"),
    select: list[str] = typer.Option(None, "--select", help="write only this output (repeatable)"),
    no_range_check: bool = NoRangeCheck,
    json_out: bool = typer.Option(False, "--json", help="print the report as JSON"),
) -> None:
    """Offline inference over many rows (locally or on Ray Data); failed rows go to OUT.errors.jsonl."""
    from rich.progress import Progress

    from modelport.scale.batch import batch as run_batch

    with Progress(console=err, transient=True) as bar:
        task = bar.add_task("rows", total=None)
        report = run_batch(
            bundle, input, output, engine=engine, actors=actors, batch_size=batch_size, backend=backend,
            threads=threads, address=address, outputs=select or None, check_ranges=not no_range_check,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )  # fmt: skip
    if json_out:
        out.print_json(data=report.to_json())
        return
    out.print(f"{report.written} of {report.rows} rows -> {report.output} ({report.engine}, {report.actors} "
              f"runner(s), {report.seconds:.1f} s, {report.rows_per_second:.0f} rows/s"
              f"{'; range checks off' if no_range_check else ''})", highlight=False)  # fmt: skip
    if report.errors:
        out.print(f"{report.failed} rows failed: reasons in {report.errors}", highlight=False)


@app.command()
def triton(
    bundles: list[str] = typer.Argument(..., help="bundles to put in the repository, each PATH or NAME=PATH"),
    output: Path = typer.Option(..., "--output", "-o", help="the repository folder to write (must not exist)"),
    platform: str = typer.Option(
        "onnxruntime", "--platform", help="onnxruntime (Triton's ORT backend) or python (modelport's runner)"
    ),
    instances: int = typer.Option(1, "--instances", help="model instances (instance_group count, on the CPU)"),
    no_batching: bool = typer.Option(False, "--no-batching", help="no dynamic_batching block"),
    max_queue_delay: int = typer.Option(0, "--max-queue-delay", help="dynamic batcher delay, µs"),
    preferred_batch_size: list[int] = typer.Option(None, "--preferred-batch-size", help="repeatable"),
) -> None:
    """Write a Triton model repository (config.pbtxt from Triton's model-config protobuf) from bundles."""
    from modelport.scale.triton import triton_repository

    models = triton_repository(
        bundles, output, platform=platform, instances=instances, batching=not no_batching,
        max_queue_delay_us=max_queue_delay, preferred_batch_sizes=preferred_batch_size or (),
    )  # fmt: skip
    for model in models:
        batch = model.config.max_batch_size
        out.print(f"{model.folder}: {platform}, max_batch_size {batch}", highlight=False)


@app.command()
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


app.command()(generate_command.generate)


def main(argv: list[str] | None = None) -> None:
    """The ``modelport`` command: one line and an exit code from ``modelport.errors`` on every failure.
    With ``argv`` (tests, scripts) it raises ``SystemExit``; as the process's entry point it ends the process."""
    if argv is not None:
        run_app(app, argv)
    exit_process(lambda: run_app(app, sys.argv[1:]))
