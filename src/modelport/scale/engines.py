"""``modelport.serve``: bundles served by one of three engines, with the same options where they mean the
same thing. ``engine="modelport"`` is this process (``serving.serve``: v2 over HTTP and gRPC, dynamic
batching); ``"triton"`` a real Triton (``serve_triton``); ``"ray"`` Ray Serve replicas (``serve_ray``,
HTTP). An option the chosen engine does not take is refused, never dropped: a ``token`` Triton would not
check is a hole, a ``max_batch_size`` Ray would not apply a bound nobody holds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from modelport.errors import UsageError

__all__ = ["serve", "ENGINES"]

ENGINES = ("modelport", "triton", "ray")

# options some engines do not take: name -> (its default, the engines that take it, what to do instead)
_ONLY: dict[str, tuple[Any, tuple[str, ...], str]] = {
    "backend": (None, ("modelport", "ray"), "set it in the bundles"),
    "threads": (None, ("modelport", "ray"), "set it in the bundles"),
    "token": (None, ("modelport", "ray"), "put Triton behind a proxy that checks it"),
    "check_ranges": (True, ("modelport", "ray"), "Triton answers what its config allows"),
    "max_batch_size": (None, ("modelport",), "drop it: the bound the bundle verified applies"),
    "max_sequences": (16, ("modelport", "ray", "triton"), "drop it"),
    "preferred_batch_sizes": ((), ("modelport", "triton"), "drop it"),
    "max_queue_size": (256, ("modelport", "ray"), "drop it"),
    "max_request_bytes": (64 * 2**20, ("modelport", "ray"), "drop it"),
    "triton_python": (None, ("triton",), "drop it"),
    "metrics_port": (None, ("triton",), "the modelport engine serves /metrics on its HTTP port"),
    "instances": (1, ("triton",), "use replicas with --engine ray"),
    "replicas": (1, ("ray",), "use --engine ray"),
    "autoscale": (None, ("ray",), "use --engine ray"),
    "address": (None, ("ray",), "use --engine ray"),
}


def serve(
    models: Sequence[str | Path],
    *,
    engine: str = "modelport",
    backend: str | None = None,
    threads: int | None = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    grpc_port: int | None = 8001,
    batching: bool = True,
    max_queue_delay_us: int = 0,
    max_queue_size: int = 256,
    preferred_batch_sizes: Sequence[int] = (),
    max_batch_size: int | None = None,
    max_sequences: int = 16,
    max_request_bytes: int = 64 * 2**20,
    token: str | None = None,
    check_ranges: bool = True,
    log_level: str = "warning",
    triton_python: str | Path | None = None,
    metrics_port: int | None = None,
    instances: int = 1,
    replicas: int = 1,
    autoscale: tuple[int, int] | str | None = None,
    address: str | None = None,
    block: bool = True,
    on_ready: Callable[[Any], None] | None = None,
) -> Any:
    """Serve ``models`` (bundles or ``.onnx`` files, each ``PATH`` or ``NAME=PATH``; for Triton also a model
    repository folder) on ``engine``; returns the running server (``Server``, ``TritonServer`` or
    ``RayServer``: ``.url``, ``.stop()``, a context manager). ``block``: run until SIGTERM/Ctrl-C.
    ``on_ready(server)`` is called once it answers. Options as ``serving.serve``; Triton's own:
    ``triton_python`` (its environment), ``metrics_port``, ``instances``; Ray's: ``replicas``,
    ``autoscale`` (``(MIN, MAX)`` or ``"MIN..MAX"``), ``address`` (an existing cluster). Ray serves HTTP
    only (``grpc_port`` is not used there)."""
    given = dict(locals())
    if engine not in ENGINES:
        raise UsageError(f"unknown engine {engine!r}", f"choose one of: {', '.join(ENGINES)}")
    for name, (default, engines, instead) in _ONLY.items():
        value = tuple(given[name]) if name == "preferred_batch_sizes" else given[name]
        if engine not in engines and value != default:
            flag = "--no-range-check" if name == "check_ranges" else f"--{name.replace('_', '-')}"
            raise UsageError(f"{flag} applies to --engine {' or '.join(engines)}, not {engine}", instead)
    if engine == "modelport":
        from modelport.serving.server import serve as serve_here

        return serve_here(
            models, backend=backend, threads=threads, host=host, port=port, grpc_port=grpc_port,
            batching=batching, max_queue_delay_us=max_queue_delay_us, max_queue_size=max_queue_size,
            preferred_batch_sizes=preferred_batch_sizes, max_batch_size=max_batch_size, max_sequences=max_sequences,
            max_request_bytes=max_request_bytes, token=token, check_ranges=check_ranges, log_level=log_level,
            block=block, on_ready=on_ready,
        )  # fmt: skip
    if engine == "triton":
        from modelport.scale.triton_server import serve_triton

        server = serve_triton(
            models, python=triton_python, host=host, port=port, grpc_port=grpc_port or 8001,
            metrics_port=metrics_port, instances=instances, batching=batching,
            max_queue_delay_us=max_queue_delay_us, preferred_batch_sizes=preferred_batch_sizes,
            max_sequences=max_sequences, block=False,
        )  # fmt: skip
    else:
        from modelport.scale.ray_serve import serve_ray

        server = serve_ray(
            models, backend=backend, threads=threads, host=host, port=port, replicas=replicas,
            autoscale=parse_autoscale(autoscale), address=address, batching=batching,
            max_queue_delay_us=max_queue_delay_us, max_queue_size=max_queue_size, max_sequences=max_sequences,
            max_request_bytes=max_request_bytes, token=token, check_ranges=check_ranges, block=False,
        )  # fmt: skip
    if on_ready is not None:
        on_ready(server)
    if block:
        server.wait()
    return server


def parse_autoscale(autoscale: tuple[int, int] | str | None) -> tuple[int, int] | None:
    """``"MIN..MAX"`` (as ``--autoscale`` takes it) or a pair, as a pair."""
    if autoscale is None or not isinstance(autoscale, str):
        return autoscale
    low, sep, high = autoscale.partition("..")
    if not (sep and low.isdigit() and high.isdigit()):
        raise UsageError(f"--autoscale {autoscale!r} is not MIN..MAX", "e.g. --autoscale 1..4")
    return int(low), int(high)
