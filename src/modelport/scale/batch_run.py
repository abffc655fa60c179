"""``batch``'s runners: one ``Worker`` per process (the runner loaded once), here or as Ray Data actors.
A worker answers a chunk of rows as ``(index, outputs or None, error or None)``: rows of one shape run
merged within the bundle's verified bound, and a merged run that fails is retried row by row so only
the rows that fail alone are reported."""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from modelport.bundle import Bundle
from modelport.errors import FeedError, MissingExtraError, ModelportError, first_line
from modelport.feeds import check_feed
from modelport.runtime.base import infos_from_manifest, infos_from_signature
from modelport.runtime.registry import create
from modelport.scale.batch_rows import Row
from modelport.scale.ray_serve import start_ray
from modelport.serving.batching import batch_key, merge, split
from modelport.serving.models import batch_axis

__all__ = ["Settings", "Worker", "run_local", "run_ray"]


TASKS_PER_ACTOR = 4  # blocks of chunks per actor: Ray's cost per task is high next to a chunk's


@dataclass(frozen=True)
class Settings:
    bundle: str
    backend: str | None
    threads: int | None
    outputs: list[str]
    check_ranges: bool = True


class Worker:
    """One runner, loaded once; answers a chunk of rows as (index, outputs or None, error or None)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.bundle = Bundle.open(settings.bundle)
        self.runner = create(
            settings.backend, self.bundle, threads=settings.threads, check_ranges=settings.check_ranges
        ).load()
        inputs = infos_from_signature(self.bundle.signature)
        outputs = infos_from_manifest(self.bundle.manifest.get("outputs", [])) or self.runner.outputs()
        bounds = {n: d.max for n, d in self.bundle.signature.dims.items()}
        axis = batch_axis(inputs, outputs, bounds)
        self.bound = axis.max if axis else 1

    def __call__(self, rows: list[Row]) -> list[tuple[int, dict[str, np.ndarray] | None, str | None]]:
        answers = []
        ready: dict[tuple[Any, ...], list[Row]] = {}
        for row in rows:
            reason = row.error or self._check(row)
            if reason:
                answers.append((row.index, None, reason))
            else:
                assert row.feed is not None
                ready.setdefault(batch_key(row.feed), []).append(row)
        for group in ready.values():
            for start in range(0, len(group), self.bound):
                answers.extend(self._run(group[start : start + self.bound]))
        return answers

    def _check(self, row: Row) -> str | None:
        assert row.feed is not None
        try:
            check_feed(self.bundle.signature, row.feed, self.settings.check_ranges)
        except FeedError as exc:
            return exc.one_line()
        return None

    def _run(self, rows: list[Row]) -> list[tuple[int, dict[str, np.ndarray] | None, str | None]]:
        try:
            outputs = self.runner.infer(merge([r.feed for r in rows]))  # type: ignore[misc]
        except Exception as exc:
            if len(rows) > 1:  # find the rows that fail on their own; the rest still get answers
                return [answer for row in rows for answer in self._run([row])]
            why = exc.one_line() if isinstance(exc, ModelportError) else f"{type(exc).__name__}: {first_line(exc)}"
            return [(rows[0].index, None, why)]
        picked = {n: outputs[n] for n in self.settings.outputs}
        parts = split(picked, [1] * len(rows))
        return [(row.index, {n: a[0] for n, a in part.items()}, None) for row, part in zip(rows, parts, strict=True)]


def run_local(settings: Settings, chunks: list[list[Row]]) -> Iterator[list[Any]]:
    worker = Worker(settings)
    for chunk in chunks:
        yield worker(chunk)


def run_ray(settings: Settings, chunks: list[list[Row]], actors: int, address: str | None) -> Iterator[list[Any]]:
    import importlib.util

    if importlib.util.find_spec("ray") is None or importlib.util.find_spec("ray.data") is None:
        raise MissingExtraError("batch inference on Ray", "ray")
    import ray

    started = not ray.is_initialized()
    if started:
        start_ray(address)
    try:
        yield from _ray_results(settings, chunks, actors)
    finally:
        if started:
            ray.shutdown()


def _ray_results(settings: Settings, chunks: list[list[Row]], actors: int) -> Iterator[list[Any]]:
    import logging

    import ray
    import ray.data

    logging.getLogger("ray.data").setLevel(logging.WARNING)  # after its import, which configures it
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    # the rows go to the object store once; Ray Data moves only chunk numbers in, and answers out as
    # bytes (converting numpy-filled objects to Arrow blocks cost more than running MiniLM on them)
    rows = ray.put(chunks)
    blocks = min(len(chunks), actors * TASKS_PER_ACTOR)
    dataset = ray.data.from_items([{"chunk": i} for i in range(len(chunks))], override_num_blocks=blocks)
    answered = dataset.map_batches(
        _RayWorker,
        fn_constructor_args=(settings, rows),
        batch_size=None,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_cpus=1,
    )
    for part in answered.iter_batches(batch_size=None, batch_format="numpy"):
        yield [
            (int(index), _decode(blob) if not error else None, str(error) or None)
            for index, error, blob in zip(part["row"], part["error"], part["outputs"], strict=True)
        ]


class _RayWorker:
    def __init__(self, settings: Settings, rows: Any) -> None:
        import ray

        self.worker = Worker(settings)
        self.chunks: list[list[Row]] = ray.get(rows)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        answers = [a for i in batch["chunk"] for a in self.worker(self.chunks[int(i)])]
        return {
            "row": np.array([index for index, _, _ in answers], np.int64),
            "error": np.array([error or "" for _, _, error in answers], object),
            "outputs": np.array([_encode(outputs) if outputs else b"" for _, outputs, _ in answers], object),
        }


def _encode(outputs: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **outputs)
    return buffer.getvalue()


def _decode(blob: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(blob), allow_pickle=False) as archive:
        return {name: archive[name] for name in archive.files}
