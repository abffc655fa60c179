"""The models a server holds: each a loaded Runner with its v2 metadata, its feed checks and the batch
dimension its requests may be merged along."""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modelport.bundle import Bundle
from modelport.errors import FeedError, UsageError
from modelport.feeds import check_feed, check_names
from modelport.generation.seq2seq import refuse_seq2seq
from modelport.runtime.base import Runner, TensorInfo, infos_from_manifest, infos_from_signature
from modelport.runtime.ort import OrtRunner
from modelport.runtime.registry import create
from modelport.serving.protocol import ClientError, to_datatype
from modelport.spec import DEFAULT_MAX

__all__ = ["ModelSource", "ServedModel", "parse_source", "parse_sources", "batch_axis", "BatchAxis"]

VERSION = "1"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


@dataclass(frozen=True)
class ModelSource:
    name: str
    path: Path


def parse_source(text: str | Path) -> ModelSource:
    """``PATH`` (named after the bundle folder or the file's stem) or ``NAME=PATH``."""
    raw = str(text)
    name, sep, path = raw.partition("=")
    if not sep:
        name, path = "", raw
    target = Path(path)
    name = name or (target.stem if target.suffix == ".onnx" else target.resolve().name)
    if not _NAME.fullmatch(name):
        raise UsageError(
            f"model name {name!r} cannot be served",
            "use letters, digits, '_', '.' and '-' (at most 128, not starting with a symbol): NAME=PATH",
        )
    return ModelSource(name, target)


def parse_sources(models: Sequence[str | Path]) -> list[ModelSource]:
    """Each of ``models`` parsed, refused when two would be served under the same name."""
    sources = [parse_source(m) for m in models]
    names = [s.name for s in sources]
    twice = next((n for n in names if names.count(n) > 1), None)
    if twice is not None:
        raise UsageError(f"two models are named {twice!r}", "name them: NAME=PATH")
    return sources


INLINE_S = 1e-3  # the longest execution that may hold up the event loop


def _seconds(runner: Runner, feed: dict[str, np.ndarray], runs: int = 3) -> float:
    """The fastest of a few runs: one run is at the mercy of the scheduler."""
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        runner.infer(feed)
        best = min(best, time.perf_counter() - start)
    return best


@dataclass(frozen=True)
class BatchAxis:
    symbol: str  # the dimension every input and output has first
    max: int  # the most rows one execution may take: the bound the bundle was verified to


def batch_axis(inputs: list[TensorInfo], outputs: list[TensorInfo], bounds: dict[str, int]) -> BatchAxis | None:
    """The symbol every input and every output has as its first dimension, if there is one, with the most
    rows one execution may take: its verified bound, or ``DEFAULT_MAX`` for a file without one."""
    firsts = {info.shape[0] if info.shape else None for info in [*inputs, *outputs]}
    if len(firsts) != 1:
        return None
    symbol = firsts.pop()
    if not isinstance(symbol, str):
        return None
    return BatchAxis(symbol, bounds.get(symbol, DEFAULT_MAX))


class ServedModel:
    """One model: ``check`` a request's tensors, ``infer`` a feed (from a worker thread), ``metadata``."""

    def __init__(
        self, source: ModelSource, backend: str | None, threads: int | None, check_ranges: bool = True
    ) -> None:
        self.name = source.name
        self.check_ranges = check_ranges
        self.version = VERSION
        target: Bundle | Path = source.path
        if not (source.path.is_file() and source.path.suffix == ".onnx"):
            target = Bundle.open(source.path)
        self.bundle = target if isinstance(target, Bundle) else None
        refuse_seq2seq(self.bundle, "serving")
        self.signature = self.bundle.signature if self.bundle is not None else None  # parsed once, not per request
        self.runner: Runner = create(backend, target, threads=threads, check_ranges=check_ranges)
        if isinstance(self.runner, OrtRunner):
            # ONNX Runtime's pool threads spin after a run, waiting for the next; in a server they take the
            # cores the event loop needs to read the next requests. Spinning stops when a run returns
            # (it still spins between a run's operators, where it pays: MiniLM runs 8% slower without).
            self.runner.session_config.setdefault("session.force_spinning_stop", "1")
        self.ready = False
        self.inputs: list[TensorInfo] = []
        self.outputs: list[TensorInfo] = []
        self.batch: BatchAxis | None = None
        self.inline = False  # executions cheap enough to run on the event loop (see ``load``)

    def load(self, warmup: int = 2) -> None:
        """Load the runtime, read the signature and warm up: a model is ready only after its first runs.
        A model whose largest batch runs in under ``INLINE_S`` (timed after warm-up) runs on the event loop:
        handing it to a thread and back costs more."""
        self.runner.load()
        self.describe()
        feed = self.runner.example_feed()
        self.runner.warm_up(warmup, feed)
        self.inline = _seconds(self.runner, feed) < INLINE_S
        if self.inline and self.batch is not None:  # small models' runs cost a fixed overhead, not per row
            largest = {n: np.resize(a, (self.batch.max, *a.shape[1:])) for n, a in feed.items()}
            self.runner.infer(largest)
            self.inline = _seconds(self.runner, largest) < INLINE_S
        self.ready = True

    def describe(self) -> None:
        """Read the inputs, outputs and batch dimension (from the runtime, which must be loaded, for a bare
        ``.onnx`` or a bundle that lists no outputs)."""
        if self.bundle is not None:
            self.inputs = infos_from_signature(self.bundle.signature)
            self.outputs = infos_from_manifest(self.bundle.manifest.get("outputs", [])) or self.runner.outputs()
        else:
            self.inputs, self.outputs = self.runner.inputs(), self.runner.outputs()
        bounds = {n: d.max for n, d in self.signature.dims.items()} if self.signature is not None else {}
        self.batch = batch_axis(self.inputs, self.outputs, bounds)

    def close(self) -> None:
        self.ready = False
        self.runner.close()

    @property
    def platform(self) -> str:
        return "onnxruntime_onnx" if self.runner.name.startswith("ort") else f"modelport_{self.runner.name}"

    def metadata(self) -> dict[str, Any]:
        def describe(info: TensorInfo) -> dict[str, Any]:
            shape = [d if isinstance(d, int) else -1 for d in info.shape]
            return {"name": info.name, "datatype": to_datatype(info.dtype), "shape": shape}

        return {
            "name": self.name,
            "versions": [self.version],
            "platform": self.platform,
            "inputs": [describe(i) for i in self.inputs],
            "outputs": [describe(o) for o in self.outputs],
        }

    def check(self, feed: dict[str, np.ndarray]) -> int:
        """Refuse a feed that does not fit the model (400, with what to change); the rows it holds along the
        batch dimension (1 when the model has none)."""
        rows = 1
        if self.batch is not None:
            rows = max((a.shape[0] for a in feed.values() if a.ndim), default=1)
            if rows > self.batch.max:
                raise ClientError(
                    400,
                    f"{rows} rows along {self.batch.symbol!r}; this model serves at most {self.batch.max} per "
                    "request (the bound it was verified to): split the request",
                )
        try:
            if self.signature is not None:
                check_feed(self.signature, feed, self.check_ranges)
            else:
                self._check_against_graph(feed)
        except FeedError as exc:
            raise ClientError(400, exc.one_line()) from None
        return rows

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.runner.infer(feed)

    def _check_against_graph(self, feed: dict[str, np.ndarray]) -> None:
        check_names([i.name for i in self.inputs], feed)
        for info in self.inputs:
            array = feed[info.name]
            if str(array.dtype) != info.dtype:
                raise FeedError(
                    f"input {info.name!r} is {to_datatype(str(array.dtype))}, the model expects "
                    f"{to_datatype(info.dtype)}",
                    "send the datatype the model's metadata lists",
                )
            fixed = [(a, d) for a, d in enumerate(info.shape) if isinstance(d, int)]
            if array.ndim != len(info.shape) or any(array.shape[a] != d for a, d in fixed):
                want = [d if isinstance(d, int) else -1 for d in info.shape]
                raise FeedError(
                    f"input {info.name!r} has shape {list(array.shape)}, the model expects {want}",
                    "-1 is any size; match the rest",
                )
