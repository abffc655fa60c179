"""The Ray Serve deployments behind ``serve --engine ray`` (imported only when Ray is installed).

- ``ModelDeployment``: one per model, ``replicas`` copies (or autoscaled), each loading the model once;
  requests are merged by Ray Serve's ``@serve.batch`` along the model's batch dimension, within its
  verified bound, and run off the replica's event loop so the next batch gathers meanwhile.
  A generation bundle's replica also runs the continuous-batching scheduler of ``modelport serve`` and
  streams each request's updates back (``generate``, a streaming method).
- ``Ingress``: the same Open Inference Protocol v2 app as ``modelport serve`` (FastAPI, the same checks,
  errors and metrics, the same OpenAI-compatible and generate routes), whose executions go to the model
  deployments' handles instead of local batchers, and whose generation streams come from the replicas.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

import numpy as np
from ray import serve
from ray.serve.exceptions import BackPressureError

from modelport.errors import first_line
from modelport.generation.model import is_generation
from modelport.generation.sampling import Decoding
from modelport.generation.scheduler import Update
from modelport.serving.batching import BatchConfig, batch_key, merge, split
from modelport.serving.core import Core, Limits
from modelport.serving.generation import RETRY_AFTER_S, ServedGenerator, Stream
from modelport.serving.metrics import GenerationMetrics, Metrics
from modelport.serving.models import ModelSource, ServedModel
from modelport.serving.protocol import ClientError

__all__ = ["ModelDeployment", "Ingress"]


class ModelDeployment:
    def __init__(
        self,
        source: ModelSource,
        backend: str | None,
        threads: int | None,
        wait_s: float | None,
        check_ranges: bool,
        sequences: int = 16,
        max_waiting: int = 256,
    ) -> None:
        """``wait_s`` None: no batching. ``sequences``: what a generation bundle's scheduler runs at once
        (``BatchConfig.sequences``)."""
        self.model = ServedModel(source, backend, threads, check_ranges)
        self.model.load()
        bound = self.model.batch.max if self.model.batch and wait_s is not None else 1
        self.run_batch.set_max_batch_size(bound)
        self.run_batch.set_batch_wait_timeout_s(wait_s or 0.0)
        self.generator = None
        if self.model.bundle is not None and is_generation(self.model.bundle):
            self.generator = ServedGenerator(self.model, Metrics().generation, sequences, max_waiting)
            self.generator.start()

    async def generate(self, prompt: list[int], decoding: Decoding) -> AsyncIterator[Any]:
        """A generation request's updates (a streaming method); first ``("refused", status, message)`` when
        the scheduler refuses it (a ``ClientError`` does not survive pickling)."""
        assert self.generator is not None
        try:
            stream = await self.generator.submit(prompt, decoding)
        except ClientError as exc:
            yield ("refused", exc.status, exc.message)
            return
        try:
            async for update in stream:
                yield update
                if update.result is not None or update.error is not None:
                    return
        finally:
            stream.cancel()  # the ingress let go (its client left): free the slot

    async def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.model.batch is None:
            return await asyncio.to_thread(self.model.infer, feed)
        return await self.run_batch(feed)

    @serve.batch(max_batch_size=1, batch_wait_timeout_s=0.0)
    async def run_batch(self, feeds: list[dict[str, np.ndarray]]) -> list[Any]:
        """Ray Serve's batch of requests, merged per shape within the bound, answered in order."""
        assert self.model.batch is not None
        answers: list[Any] = [None] * len(feeds)
        groups: dict[tuple[Any, ...], list[int]] = {}
        for index, feed in enumerate(feeds):
            groups.setdefault(batch_key(feed), []).append(index)
        rows = [len(next(iter(feed.values()))) for feed in feeds]
        for indexes in groups.values():
            for chunk in _chunks(indexes, [rows[i] for i in indexes], self.model.batch.max):
                try:
                    outputs = await asyncio.to_thread(self.model.infer, merge([feeds[i] for i in chunk]))
                    for i, part in zip(chunk, split(outputs, [rows[i] for i in chunk]), strict=True):
                        answers[i] = part
                except Exception as exc:  # every request of the execution hears why
                    for i in chunk:
                        answers[i] = exc
        return answers


def _chunks(indexes: list[int], rows: list[int], bound: int) -> list[list[int]]:
    chunks: list[list[int]] = [[]]
    total = 0
    for index, count in zip(indexes, rows, strict=True):
        if chunks[-1] and total + count > bound:
            chunks.append([])
            total = 0
        chunks[-1].append(index)
        total += count
    return chunks


class _RemoteCore(Core):
    """The server's core with each model's executions sent to its Ray Serve deployment."""

    def __init__(self, models: list[ServedModel], handles: dict[str, Any], limits: Limits) -> None:
        super().__init__(models, BatchConfig(enabled=False), limits)
        self.handles = handles

    async def load(self) -> None:
        for model in self.models.values():  # read the signature; the replicas hold the runtimes
            await asyncio.to_thread(_describe, model)
            if model.bundle is not None and is_generation(model.bundle):
                self.generators[model.name] = _RemoteGenerator(model, self.metrics.generation, self.handles[model.name])

    async def close(self) -> None:
        self.stopping = True

    async def execute(self, model: ServedModel, feed: dict[str, np.ndarray], rows: int) -> dict[str, np.ndarray]:
        try:
            answer = await self.handles[model.name].infer.remote(feed)
        except BackPressureError:
            raise ClientError(503, f"model {model.name!r} has too many requests queued; retry later") from None
        if isinstance(answer, Exception):
            raise answer
        return answer


class _RemoteGenerator(ServedGenerator):
    """The ingress's side of a generation model: tokenizer and checks here, the decoding on a replica."""

    def __init__(self, model: ServedModel, metrics: GenerationMetrics, handle: Any) -> None:
        self.flowing = 0  # streams relayed now: what "running" reads here (the replicas queue their own)
        super().__init__(model, metrics)  # (its scheduler is never started: the replicas run theirs)
        self.handle = handle

    def running(self) -> int:
        return self.flowing

    def waiting(self) -> int:
        return 0

    async def submit(self, prompt: Sequence[int], decoding: Decoding) -> Stream:
        stream = Stream(self.name, self.metrics)
        response = self.handle.options(stream=True).generate.remote(list(prompt), decoding)
        updates = response.__aiter__()
        try:
            first = await updates.__anext__()
        except BackPressureError:
            raise ClientError(429, f"model {self.name!r} has too many requests queued; retry later",
                              {"Retry-After": str(RETRY_AFTER_S)}) from None  # fmt: skip
        if isinstance(first, tuple):
            _, status, message = first
            headers = {"Retry-After": str(RETRY_AFTER_S)} if status == 429 else None
            raise ClientError(status, message, headers)
        stream.ticket = _Cancel(response)  # type: ignore[assignment]
        stream.push(first)
        self.flowing += 1
        asyncio.get_running_loop().create_task(self._relay(updates, stream))
        return stream

    async def _relay(self, updates: AsyncIterator[Update], stream: Stream) -> None:
        try:
            async for update in updates:
                stream.push(update)
        except Exception as exc:  # the replica died or the response was cancelled
            if stream.result is None:
                stream.push(Update(error=f"{type(exc).__name__}: {first_line(exc)}"))
        finally:
            self.flowing -= 1


class _Cancel:
    """What ``Stream.cancel`` calls for a remote request: cancel its Ray response."""

    def __init__(self, response: Any) -> None:
        self.response = response
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True
        self.response.cancel()


def _describe(model: ServedModel) -> None:
    if model.bundle is None or not model.bundle.manifest.get("outputs"):
        model.runner.load()
        model.describe()
        model.runner.close()
    else:
        model.describe()
    model.ready = True


@serve.ingress()
class Ingress:
    def __init__(self, sources: list[ModelSource], limits: Limits, *handles: Any) -> None:
        models = [ServedModel(source, None, 1, limits.check_ranges) for source in sources]
        self.core = _RemoteCore(models, {s.name: h for s, h in zip(sources, handles, strict=True)}, limits)

    async def __serve_build_asgi_app__(self) -> Any:
        from modelport.serving.app import create_app

        await self.core.load()
        return create_app(self.core)
