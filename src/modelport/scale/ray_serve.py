"""``serve --engine ray``: the Open Inference Protocol v2 app of ``modelport serve`` on Ray Serve, one
deployment per model with ``replicas`` copies (or autoscaled between two bounds) and Ray Serve's batching.

Ray runs locally by default (a Ray instance started for this server and stopped with it) or on an
existing cluster (``address``, e.g. ``ray://head:10001`` or ``auto``). Each replica is one Ray actor
holding one runtime with ``threads`` threads (default: the machine's cores over the replicas), reserving
one CPU; the ingress replica (HTTP parsing, checks, metrics) reserves none.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from modelport.errors import MissingExtraError, ResourceError, UsageError, first_line
from modelport.scale.lifecycle import port_for, until_stopped
from modelport.serving.batching import BatchConfig
from modelport.serving.core import Limits
from modelport.serving.models import parse_sources
from modelport.serving.server import TOKEN_ENV, check_settings

__all__ = ["serve_ray", "RayServer", "need_ray", "start_ray"]

APP = "modelport"


def need_ray(what: str) -> None:
    import importlib.util

    if importlib.util.find_spec("ray") is None or importlib.util.find_spec("ray.serve") is None:
        raise MissingExtraError(what, "ray")


def start_ray(address: str | None) -> None:
    """Ray on ``address`` (an existing cluster, whose workers need modelport installed), or a local one
    started for this process; quiet but for errors."""
    import logging

    import ray

    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "error")
    for name in ("ray", "ray.data", "ray.serve"):
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    except ConnectionError as exc:
        raise ResourceError(
            f"cannot reach the Ray cluster at {address}: {first_line(exc)}", "check --address"
        ) from None


def serve_ray(
    models: Sequence[str | Path],
    *,
    backend: str | None = None,
    threads: int | None = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    replicas: int = 1,
    autoscale: tuple[int, int] | None = None,
    address: str | None = None,
    batching: bool = True,
    max_queue_delay_us: int = 0,
    max_queue_size: int = 256,
    max_sequences: int = 16,
    max_request_bytes: int = 64 * 2**20,
    token: str | None = None,
    check_ranges: bool = True,
    block: bool = True,
) -> RayServer:
    """Serve ``models`` (bundles or ``.onnx`` files, ``PATH`` or ``NAME=PATH``) over v2 HTTP on Ray Serve.
    ``autoscale`` ``(min, max)`` replaces ``replicas``. ``block``: run until SIGTERM/Ctrl-C; otherwise
    return the started server (``with serve_ray(..., block=False) as server: server.url``)."""
    server = RayServer(
        models,
        backend=backend,
        threads=threads,
        host=host,
        port=port,
        replicas=replicas,
        autoscale=autoscale,
        address=address,
        batching=batching,
        max_queue_delay_us=max_queue_delay_us,
        max_queue_size=max_queue_size,
        max_sequences=max_sequences,
        limits=Limits(
            max_request_bytes,
            token if token is not None else os.environ.get(TOKEN_ENV) or None,
            check_ranges=check_ranges,
        ),
    )
    server.start()
    if block:
        server.wait()
    return server


class RayServer:
    def __init__(
        self,
        models: Sequence[str | Path],
        *,
        backend: str | None = None,
        threads: int | None = None,
        host: str = "127.0.0.1",
        port: int = 8000,
        replicas: int = 1,
        autoscale: tuple[int, int] | None = None,
        address: str | None = None,
        batching: bool = True,
        max_queue_delay_us: int = 0,
        max_queue_size: int = 256,
        max_sequences: int = 16,
        limits: Limits | None = None,
    ) -> None:
        need_ray("serving on Ray")
        self.limits = limits or Limits()
        batch = BatchConfig(batching, max_queue_delay_us / 1e6, max_queue_size, max_sequences=max_sequences)
        check_settings(models, port, None, batch, self.limits)
        if autoscale is not None and not 1 <= autoscale[0] <= autoscale[1]:
            raise UsageError(f"--autoscale {autoscale[0]}..{autoscale[1]} is not a range", "e.g. --autoscale 1..4")
        if replicas < 1:
            raise UsageError("--replicas must be at least 1", "e.g. --replicas 2")
        self.sources = parse_sources(models)
        for source in self.sources:
            if not source.path.exists():
                raise UsageError(f"no such bundle or file: {source.path}", "check the path")
        self.backend, self.host, self.address = backend, host, address
        self.port = port_for(host, port, "--port")
        self.replicas, self.autoscale = replicas, autoscale
        most = autoscale[1] if autoscale else replicas
        self.threads = threads or max(1, (os.cpu_count() or 1) // most)
        self.wait_s = max_queue_delay_us / 1e6 if batching else None
        self.max_queue = max_queue_size
        self.sequences = batch.sequences
        self._started_ray = False
        self._running = False

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> RayServer:
        import ray
        from ray import serve

        if not ray.is_initialized():
            start_ray(self.address)
            self._started_ray = True
        try:
            serve.start(http_options={"host": self.host, "port": self.port})
            serve.run(self._application(), name=APP, route_prefix="/")
        except Exception as exc:
            self.stop()
            why = f"{type(exc).__name__}: {first_line(exc)}"
            raise ResourceError(f"Ray Serve did not start: {why}", "see Ray's log") from None
        self._running = True
        return self

    def wait(self) -> None:
        """Block until SIGTERM/Ctrl-C, then stop."""
        try:
            until_stopped()
        finally:
            self.stop()

    def stop(self) -> None:
        import ray
        from ray import serve

        if self._running:
            self._running = False
            serve.delete(APP)  # replicas finish what they hold, then go
        if self._started_ray:
            self._started_ray = False
            serve.shutdown()
            ray.shutdown()

    def __enter__(self) -> RayServer:
        return self if self._running else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _application(self) -> Any:
        from ray import serve

        from modelport.scale.ray_deployments import Ingress, ModelDeployment

        scaling: dict[str, Any] = {"num_replicas": self.replicas}
        if self.autoscale is not None:
            low, high = self.autoscale
            scaling = {"autoscaling_config": {"min_replicas": low, "max_replicas": high}}
        handles = []
        for source in self.sources:
            deployment = serve.deployment(
                ModelDeployment,
                name=f"model-{source.name}",
                ray_actor_options={"num_cpus": 1},
                max_ongoing_requests=64,  # what one replica may hold: room for its batches to form
                max_queued_requests=self.max_queue,  # more get 503
                **scaling,
            )
            handles.append(deployment.bind(source, self.backend, self.threads, self.wait_s, self.limits.check_ranges,
                                           self.sequences, self.max_queue))  # fmt: skip
        ingress = serve.deployment(Ingress, name="v2", ray_actor_options={"num_cpus": 0}, max_ongoing_requests=1024)
        return ingress.bind(self.sources, self.limits, *handles)
