"""Commands that serve or run bundles at scale: ``serve`` (on any engine), ``batch``, ``triton``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from modelport.cli.console import err, out
from modelport.cli.options import NoRangeCheck, Threads


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
    max_sequences: int = typer.Option(
        16, "--max-sequences", help="generation: sequences decoded together at most (continuous batching)"
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
    from modelport.scale.engines import serve as start

    def say_ready(server: Any) -> None:
        if engine == "triton":
            grpc = f", gRPC {host}:{server.grpc_port}"
            err.print(f"Triton serving {', '.join(server.names)} on {server.url}{grpc} (Ctrl-C or SIGTERM: stop)",
                      soft_wrap=True)  # fmt: skip
            return
        if engine == "ray":
            copies = "{}..{}".format(*server.autoscale) if server.autoscale else str(server.replicas)
            err.print(f"Ray Serve serving {len(models)} model(s) x {copies} replicas on {server.url} "
                      "(HTTP; Ctrl-C or SIGTERM: stop)", soft_wrap=True)  # fmt: skip
            return
        grpc = f", gRPC {host}:{server.grpc_port}" if server.grpc_port is not None else ""
        names = ", ".join(server.core.models)
        off = "; range checks off: inputs outside the declared ranges are answered" if no_range_check else ""
        err.print(
            f"serving {names} on {server.url}{grpc} (Ctrl-C or SIGTERM: stop after in-flight requests{off})",
            soft_wrap=True,
        )
        if server.core.generators:
            gen = ", ".join(server.core.generators)
            err.print(f"generation ({gen}): OpenAI-compatible API at {server.url}/v1, Triton's generate at "
                      f"{server.url}/v2/models/NAME/generate[_stream]", soft_wrap=True)  # fmt: skip

    start(
        models, engine=engine, backend=backend, threads=threads, host=host, port=port,
        grpc_port=None if no_grpc else grpc_port, batching=not no_batching, max_queue_delay_us=max_queue_delay,
        max_queue_size=max_queue_size, preferred_batch_sizes=preferred_batch_size or (),
        max_batch_size=max_batch_size, max_sequences=max_sequences, max_request_bytes=max_request_bytes, token=token,
        check_ranges=not no_range_check, log_level=log_level, triton_python=triton_python,
        metrics_port=metrics_port, replicas=replicas, autoscale=autoscale, address=address, on_ready=say_ready,
    )  # fmt: skip


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
    max_sequences: int = typer.Option(
        16, "--max-sequences", help="python: a generation bundle's sequences decoded together at most"
    ),
) -> None:
    """Write a Triton model repository (config.pbtxt from Triton's model-config protobuf) from bundles; with
    --platform python a generation bundle becomes a decoupled model that streams (generate_stream)."""
    from modelport.scale.triton import triton_repository

    models = triton_repository(
        bundles, output, platform=platform, instances=instances, batching=not no_batching,
        max_queue_delay_us=max_queue_delay, preferred_batch_sizes=preferred_batch_size or (),
        max_sequences=max_sequences,
    )  # fmt: skip
    for model in models:
        batch = model.config.max_batch_size
        kind = "decoupled generation, " if model.config.model_transaction_policy.decoupled else ""
        out.print(f"{model.folder}: {platform}, {kind}max_batch_size {batch}", highlight=False)
