"""``modelport.serve``: HTTP (uvicorn) and gRPC (grpcio) in one event loop over the same models.

The server listens at once and answers ``/v2/health/live``; models load and warm up off the event loop,
and ``ready`` turns true only after that. SIGTERM or Ctrl-C stops taking new connections, lets in-flight
requests finish (HTTP through uvicorn's graceful shutdown, gRPC through ``stop(grace)``), drains the
batch queues, closes the runtimes and returns; the CLI then exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from modelport.errors import MissingExtraError, ResourceError, UsageError
from modelport.serving.batching import BatchConfig
from modelport.serving.core import Core, Limits
from modelport.serving.models import ServedModel, parse_sources

__all__ = ["Server", "serve", "TOKEN_ENV", "check_settings"]

TOKEN_ENV = "MODELPORT_SERVE_TOKEN"
GRACE_S = 30.0  # how long in-flight requests get to finish on shutdown


def serve(
    models: Sequence[str | Path],
    *,
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
    block: bool = True,
    on_ready: Callable[[Server], None] | None = None,
) -> Server:
    """Serve ``models`` (bundles or ``.onnx`` files, each ``PATH`` or ``NAME=PATH``) over the Open Inference
    Protocol v2. ``block``: run until SIGTERM/Ctrl-C; otherwise start in a background thread and return
    the running ``Server`` (``with serve(..., block=False) as server: server.url``). ``port``/``grpc_port``
    0 take a free port; ``grpc_port`` None serves HTTP only. ``max_batch_size``: rows one execution merges at
    most (default: each model's verified bound; a single larger request still runs, alone). ``max_sequences``:
    for a generation bundle, the sequences decoded together at most (continuous batching: requests join
    between decode steps; ``batching=False`` decodes one at a time). ``token`` (or
    ``$MODELPORT_SERVE_TOKEN``): a bearer token every route but health requires. ``check_ranges=False``
    answers requests outside a bundle's declared sizes and value ranges (refused with 400 by default,
    since such an answer may be wrong: a negative token id reads another token's row). ``on_ready`` is called once
    every model is warm."""
    server = Server(
        models,
        backend=backend,
        threads=threads,
        host=host,
        port=port,
        grpc_port=grpc_port,
        batch=BatchConfig(
            batching,
            max_queue_delay_us / 1e6,
            max_queue_size,
            tuple(preferred_batch_sizes),
            max_batch_size,
            max_sequences,
        ),
        limits=Limits(
            max_request_bytes,
            token if token is not None else os.environ.get(TOKEN_ENV) or None,
            check_ranges=check_ranges,
        ),
        log_level=log_level,
        on_ready=on_ready,
    )
    if block:
        server.run()
        return server
    return server.start()


class Server:
    def __init__(
        self,
        models: Sequence[str | Path],
        *,
        backend: str | None,
        threads: int | None,
        host: str,
        port: int,
        grpc_port: int | None,
        batch: BatchConfig,
        limits: Limits,
        log_level: str = "warning",
        on_ready: Callable[[Server], None] | None = None,
    ) -> None:
        _need_extra()
        check_settings(models, port, grpc_port, batch, limits)
        sources = parse_sources(models)
        self.core = Core([ServedModel(s, backend, threads, limits.check_ranges) for s in sources], batch, limits)
        self.host, self.port, self.grpc_port = host, port, grpc_port
        self.log_level = log_level
        self.on_ready = on_ready
        self._uvicorn: Any = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # -- blocking, for the CLI -------------------------------------------------------------------------
    def run(self) -> None:
        asyncio.run(self._main(signals=threading.current_thread() is threading.main_thread()))
        if self._error is not None:
            raise self._error

    # -- in the background, for notebooks and tests -------------------------------------------------
    def start(self, timeout: float = 300.0) -> Server:
        self._thread = threading.Thread(target=self._background, name="modelport-serve", daemon=True)
        self._thread.start()
        if not self._started.wait(timeout):
            self.stop()
            raise TimeoutError(f"the server did not get ready in {timeout:.0f} s")
        if self._error is not None:
            self.stop()
            raise self._error
        return self

    def stop(self) -> None:
        if self._uvicorn is not None:
            self._uvicorn.should_exit = True
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> Server:
        return self if self._thread else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _background(self) -> None:
        try:
            asyncio.run(self._main(signals=False))
        except BaseException as exc:  # reported by start()
            self._error = self._error or exc
        finally:
            self._started.set()

    async def _main(self, signals: bool) -> None:
        import uvicorn

        from modelport.serving.app import create_app

        _configure_logging(self.log_level)
        for port, flag in ((self.port, "--port"), (self.grpc_port, "--grpc-port")):
            if port:  # uvicorn and gRPC's core would log lines of their own for a port in use
                try:
                    socket.create_server((self.host, port)).close()
                except OSError as exc:
                    raise _unbindable(self.host, port, exc.strerror or str(exc), flag) from None
        config = uvicorn.Config(
            create_app(self.core),
            host=self.host,
            port=self.port,
            log_level="debug" if self.log_level == "debug" else "warning",  # requests are logged by app.py
            access_log=False,
            timeout_graceful_shutdown=int(GRACE_S),
        )
        self._uvicorn = server = _uvicorn_server(config)
        grpc_server = None
        if self.grpc_port is not None:
            from modelport.serving.grpc_service import start_grpc

            try:
                grpc_server, self.grpc_port = await start_grpc(self.core, self.host, self.grpc_port)
            except (OSError, RuntimeError) as exc:
                raise _unbindable(self.host, self.grpc_port, str(exc), "--grpc-port") from None
        if signals:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, lambda: setattr(server, "should_exit", True))
        serving = asyncio.create_task(server.serve())
        try:
            while not server.started and not serving.done():
                await asyncio.sleep(0.01)
            if not server.started:  # uvicorn logged why and exits
                raise _unbindable(self.host, self.port, "the port is in use?", "--port")
            self.port = server.servers[0].sockets[0].getsockname()[1]
            await self.core.load()
            if self.on_ready is not None:
                self.on_ready(self)
        except BaseException as exc:
            self._error = exc
            server.should_exit = True
        self._started.set()
        await asyncio.wait({serving})  # the HTTP side has drained (its own failure was reported above)
        if grpc_server is not None:
            await grpc_server.stop(GRACE_S)
        await self.core.close()


def _uvicorn_server(config: Any) -> Any:
    """uvicorn's Server without its own signal capture: it re-raises the signal after shutdown, which turns
    a clean drain into exit 143; this server's signal handlers just ask it to stop."""
    import uvicorn

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    return Server(config)


def _unbindable(host: str, port: int, why: str, flag: str) -> ResourceError:
    return ResourceError(f"cannot listen on {host}:{port} ({why})", f"pick another {flag} (0: any free one)")


def _configure_logging(level: str) -> None:
    log = logging.getLogger("modelport.serving")
    log.setLevel(level.upper())
    if not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)


def check_settings(models: Sequence[Any], port: int, grpc_port: int | None, batch: BatchConfig, limits: Limits) -> None:
    """Refuse, before anything starts, settings no server can run with."""
    if not models:
        raise UsageError("no model to serve", "pass one or more bundles or .onnx files (NAME=PATH to name one)")
    for what, value in (("--port", port), ("--grpc-port", grpc_port)):
        if value is not None and not 0 <= value <= 65535:
            raise UsageError(f"{what} {value} is not a port", "use 1..65535 (0: any free port)")
    if port and grpc_port and port == grpc_port:
        raise UsageError(f"HTTP and gRPC both asked for port {port}", "give --grpc-port another port")
    if not 0 <= batch.max_delay_s <= 10:
        raise UsageError(f"--max-queue-delay {batch.max_delay_s * 1e6:.0f} µs is out of range", "use 0..10000000 µs")
    if batch.max_queue < 1:
        raise UsageError("--max-queue-size must be at least 1", "e.g. --max-queue-size 256")
    if batch.max_sequences < 1:
        raise UsageError("--max-sequences must be at least 1", "e.g. --max-sequences 16")
    if batch.max_rows is not None and batch.max_rows < 1:
        raise UsageError("--max-batch-size must be at least 1", "e.g. --max-batch-size 8")
    if any(size < 1 for size in batch.preferred):
        raise UsageError("preferred batch sizes must be >= 1", "e.g. --preferred-batch-size 4 --preferred-batch-size 8")
    if limits.max_request_bytes < 1024:
        raise UsageError("--max-request-bytes must be at least 1024", "e.g. --max-request-bytes 67108864")


def _need_extra() -> None:
    import importlib.util

    missing = [
        m
        for m in ("fastapi", "uvicorn", "grpc", "prometheus_client", "tritonclient")
        if not importlib.util.find_spec(m)
    ]
    if missing:
        raise MissingExtraError(f"serving ({', '.join(missing)} missing)", "serve")
