"""Dynamic batching: requests to one model wait in a bounded queue; one worker takes the oldest and every
queued request whose tensors agree with it on all but the batch dimension, up to the model's batch bound,
waiting at most ``max_delay`` for more (less once a preferred batch size is reached), runs them as one
execution and splits the outputs back row for row.

Each model has one worker thread, so one execution at a time: the runtime's own threads do the parallel
work, and requests arriving meanwhile make the next batch bigger instead of fighting for the cores. A model
whose largest execution takes under a millisecond (``ServedModel.inline``) runs on the event loop instead.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from modelport.serving.metrics import Metrics
from modelport.serving.models import ServedModel
from modelport.serving.protocol import ClientError

__all__ = ["Batcher", "BatchConfig", "batch_key", "merge", "split"]


@dataclass(frozen=True)
class BatchConfig:
    enabled: bool = True
    max_delay_s: float = 0.0  # how long the oldest request waits for company (0: what is queued now)
    max_queue: int = 256  # requests waiting per model; more get 503
    preferred: tuple[int, ...] = ()  # batch sizes worth running at once without waiting out the delay
    max_rows: int | None = None  # rows one execution merges at most (None: the model's verified bound)
    max_sequences: int = 16  # generation: sequences decoded together at most (continuous batching)

    @property
    def sequences(self) -> int:
        """The sequences a generation scheduler runs at once: ``max_sequences``, or one with batching off."""
        return self.max_sequences if self.enabled else 1


def batch_key(feed: dict[str, np.ndarray]) -> tuple[Any, ...]:
    """Feeds with equal keys can be merged: the same names, dtypes and all dims but the first."""
    return tuple((n, a.dtype.str, a.shape[1:]) for n, a in sorted(feed.items()))


def merge(feeds: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """One feed of ``feeds`` (equal keys) stacked along the batch dimension."""
    return feeds[0] if len(feeds) == 1 else {name: np.concatenate([f[name] for f in feeds]) for name in feeds[0]}


def split(outputs: dict[str, np.ndarray], rows: list[int]) -> list[dict[str, np.ndarray]]:
    """The merged execution's outputs back per request, ``rows[i]`` rows each, in order."""
    if len(rows) == 1:
        return [outputs]
    parts, offset = [], 0
    for count in rows:
        parts.append({n: a[offset : offset + count] for n, a in outputs.items()})
        offset += count
    return parts


@dataclass
class _Pending:
    feed: dict[str, np.ndarray]
    rows: int
    key: tuple[Any, ...]
    future: asyncio.Future[dict[str, np.ndarray]]
    queued: float = field(default_factory=time.perf_counter)


class Batcher:
    def __init__(self, model: ServedModel, config: BatchConfig, metrics: Metrics) -> None:
        self.model = model
        self.config = config
        self.metrics = metrics
        self._queue: deque[_Pending] = deque()
        self._wake = asyncio.Event()
        self._pool = ThreadPoolExecutor(1, thread_name_prefix=f"modelport-{model.name}")
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._work())

    async def stop(self) -> None:
        """After the queue is empty (the server stops taking requests first)."""
        while self._queue:
            await asyncio.sleep(0.01)
        if self._task is not None:
            self._task.cancel()
        self._pool.shutdown(wait=True)

    async def infer(self, feed: dict[str, np.ndarray], rows: int) -> dict[str, np.ndarray]:
        if len(self._queue) >= self.config.max_queue:
            raise ClientError(503, f"model {self.model.name!r} has {len(self._queue)} requests queued; retry later")
        loop = asyncio.get_running_loop()
        pending = _Pending(feed, rows, batch_key(feed), loop.create_future())
        self._queue.append(pending)
        self._wake.set()
        return await pending.future

    async def _work(self) -> None:
        while True:
            if not self._queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = await self._gather()
            await self._run(batch)

    async def _gather(self) -> list[_Pending]:
        first = self._queue[0]
        limit = first.rows
        if self.config.enabled and self.model.batch:
            limit = min(self.model.batch.max, self.config.max_rows or self.model.batch.max)
        deadline = first.queued + self.config.max_delay_s
        while self.config.enabled and self.model.batch is not None:
            rows = sum(p.rows for p in self._queue if p.key == first.key)
            if rows >= limit or (self.config.preferred and rows in self.config.preferred):
                break
            left = deadline - time.perf_counter()
            if left <= 0:
                break
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), left)
            except TimeoutError:
                break
        batch, rows = [], 0
        for pending in list(self._queue):
            if pending.key == first.key and (not batch or rows + pending.rows <= limit):
                batch.append(pending)
                rows += pending.rows
                self._queue.remove(pending)
            if rows >= limit:
                break
        return batch

    async def _run(self, batch: list[_Pending]) -> None:
        started = time.perf_counter()
        live = [p for p in batch if not p.future.cancelled()]  # clients that hung up lose nothing to the rest
        if not live:
            return
        loop = asyncio.get_running_loop()
        try:
            feed = merge([p.feed for p in live])
            if self.model.inline:  # a small model: a thread hand-off would cost more than the run
                outputs = self.model.infer(feed)
            else:
                outputs = await loop.run_in_executor(self._pool, self.model.infer, feed)
        except Exception as exc:  # the runtime failed on a feed that passed the checks: every request hears it
            for p in live:
                if not p.future.done():
                    p.future.set_exception(exc)
            return
        compute = time.perf_counter() - started
        self.metrics.executed(self.model, sum(p.rows for p in live), compute)
        for p, part in zip(live, split(outputs, [p.rows for p in live]), strict=True):
            self.metrics.queued(self.model, started - p.queued)
            if not p.future.done():
                p.future.set_result(part)
