"""What the HTTP and gRPC front ends share: the models by exact name, their batchers, the metrics, the one
path every inference takes (find the model, check the tensors, queue, answer, count), and for a generation
bundle its ``ServedGenerator`` (the continuous-batching scheduler the text routes share)."""

from __future__ import annotations

import asyncio
import hmac
import time
from dataclasses import dataclass

import numpy as np

from modelport.errors import ModelportError, first_line
from modelport.generation.model import is_generation
from modelport.serving.batching import BatchConfig, Batcher
from modelport.serving.generation import ServedGenerator
from modelport.serving.metrics import Metrics
from modelport.serving.models import ServedModel
from modelport.serving.protocol import ClientError, Request, RequestedOutput

__all__ = ["Core", "Limits", "server_version"]


@dataclass(frozen=True)
class Limits:
    max_request_bytes: int = 64 * 2**20
    token: str | None = None  # a bearer token every route but health needs
    warmup: int = 2
    check_ranges: bool = True  # refuse sizes and values outside the bundles' declared ones (feeds.check_feed)


def server_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("modelport")
    except PackageNotFoundError:
        return "0"


class Core:
    def __init__(self, models: list[ServedModel], batching: BatchConfig, limits: Limits) -> None:
        self.models = {m.name: m for m in models}
        self.batching = batching
        self.limits = limits
        self.metrics = Metrics()
        self.batchers: dict[str, Batcher] = {}
        self.generators: dict[str, ServedGenerator] = {}  # the generation bundles', by model name
        self.failed: dict[str, str] = {}  # models that could not load, with why
        self.stopping = False

    # -- lifecycle -----------------------------------------------------------------------------------
    async def load(self) -> None:
        """Load and warm up every model off the event loop (health/live answers meanwhile), then batch."""
        loop = asyncio.get_running_loop()
        for model in self.models.values():
            await loop.run_in_executor(None, model.load, self.limits.warmup)
            batcher = Batcher(model, self.batching, self.metrics)
            batcher.start()
            self.batchers[model.name] = batcher
            if model.bundle is not None and is_generation(model.bundle):
                generator = ServedGenerator(
                    model, self.metrics.generation, self.batching.sequences, self.batching.max_queue
                )
                generator.start()
                self.generators[model.name] = generator

    async def close(self) -> None:
        self.stopping = True
        loop = asyncio.get_running_loop()
        for generator in self.generators.values():  # what is still running ends (abort) and hears so
            await loop.run_in_executor(None, generator.stop)
        for batcher in self.batchers.values():
            await batcher.stop()
        for model in self.models.values():
            model.close()

    @property
    def ready(self) -> bool:
        return not self.stopping and all(m.ready for m in self.models.values())

    # -- requests ------------------------------------------------------------------------------------
    def authorized(self, header: str | None) -> bool:
        token = self.limits.token
        if token is None:
            return True
        given = (header or "").removeprefix("Bearer ").strip()
        return hmac.compare_digest(given.encode(), token.encode())

    def model(self, name: str, version: str | None = None) -> ServedModel:
        model = self.models.get(name)
        if model is None:
            known = ", ".join(sorted(self.models)) or "none"
            raise ClientError(404, f"unknown model {name!r}; served: {known}")
        if version not in (None, "", model.version):
            raise ClientError(404, f"model {name!r} has no version {version!r}; versions: {model.version}")
        return model

    def ready_model(self, name: str, version: str | None = None) -> ServedModel:
        model = self.model(name, version)
        if not model.ready or self.stopping:
            raise ClientError(
                503, f"model {name!r} is not ready" + (" (the server is stopping)" if self.stopping else "")
            )
        return model

    async def infer(self, model: ServedModel, request: Request) -> tuple[dict[str, np.ndarray], list[RequestedOutput]]:
        """The outputs the request asked for (all, by default), in its order."""
        start = time.perf_counter()
        try:
            order = self._requested(model, request)
            rows = model.check(request.inputs)
            outputs = await self.execute(model, request.inputs, rows)
        except ClientError:
            self.metrics.request(model, False, 0.0, "REJECTED")
            raise
        except ModelportError as exc:  # a feed the runtime refused after the checks passed
            self.metrics.request(model, False, 0.0, "BACKEND")
            raise ClientError(400, exc.one_line()) from None
        except Exception as exc:
            self.metrics.request(model, False, 0.0, "BACKEND")
            raise ClientError(500, f"model {model.name!r} failed: {type(exc).__name__}: {first_line(exc)}") from None
        self.metrics.request(model, True, time.perf_counter() - start)
        return {o.name: outputs[o.name] for o in order}, order

    async def execute(self, model: ServedModel, feed: dict[str, np.ndarray], rows: int) -> dict[str, np.ndarray]:
        """Run a checked feed: through the model's batcher here; other engines (Ray Serve) send it elsewhere."""
        return await self.batchers[model.name].infer(feed, rows)

    def _requested(self, model: ServedModel, request: Request) -> list[RequestedOutput]:
        names = [o.name for o in model.outputs]
        if request.outputs is None:
            return [RequestedOutput(n, request.binary_default) for n in names]
        for want in request.outputs:
            if want.name not in names:
                raise ClientError(400, f"model {model.name!r} has no output {want.name!r}; outputs: {', '.join(names)}")
        return request.outputs
