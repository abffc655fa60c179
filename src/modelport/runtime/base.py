"""The Runner every runtime implements (after Polygraphy's runners): the base class owns the shared work.

``load()`` times the subclass's ``_load()``, marks the runner loaded and warms it up; ``infer(feed)``
refuses a runner used before ``load()``, turns tensors and scalars into arrays, checks the feed once
(names with the closest match; with a signature also dtype, rank, fixed sizes, shared symbols and the
declared bounds and value ranges),
runs ``_infer`` under an optional deadline and records the first run (cold start = load + first run);
``close()`` calls ``_close()`` once. Subclasses implement ``_load``, ``_infer``, ``_close``, ``inputs``
and ``outputs``; nothing heavy happens in ``__init__``.

Optional capabilities are protocols a caller tests for: ``Placement`` (where each node ran: ONNX
Runtime).

Every runner keeps ``warnings`` (what it had to accept, e.g. a dropped provider) and ``timings``
(``load_s``, ``first_run_s``, ``cold_start_s``), both shown by ``describe()``, because a benchmark that
hides a fallback or a slow first run reports a runtime the user will not get.
"""

from __future__ import annotations

import inspect
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from modelport.deadline import VerifyTimeoutError, active, within
from modelport.errors import FeedError, UsageError
from modelport.feeds import as_arrays, check_feed, check_names, make_feed

if TYPE_CHECKING:
    from modelport.bundle import Bundle
    from modelport.spec import Signature

__all__ = [
    "Runner",
    "Target",
    "TensorInfo",
    "Placement",
    "cache_folder",
    "infos_from_signature",
    "infos_from_manifest",
    "profile_shapes",
    "check_options",
]


RANGES_OFF = "range checks off: feeds outside the declared sizes and value ranges run unchecked"


@dataclass(frozen=True)
class Target:
    """What a runner is asked to run, as ``registry.create`` resolved it: the ONNX file, the bundle it
    belongs to (None for a bare file), what the bundle declares, and the settings every runtime shares."""

    model_path: Path
    bundle: Bundle | None
    signature: Signature | None
    output_names: list[str] | None
    threads: int | None
    optimization: str = "all"
    fallback: str = "refuse"


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int | str | None, ...]  # ints are fixed sizes, strings named symbols, None unknown
    dtype: str  # numpy dtype name: "float32", "int64", "bool"...


class Runner(ABC):
    """One model on one runtime. ``with runner: runner.infer(feed)``, or ``runner(x=array)``."""

    @classmethod
    def for_backend(cls, backend: Any, target: Target, options: dict[str, Any]) -> Runner:
        """This runner for a parsed backend name (``registry.BackendName``) and ``target``, with the
        caller's runner-specific ``options``; what ``registry.create`` calls."""
        raise NotImplementedError(f"{cls.__name__} is not registered as a backend")

    #: registry name this runner was created under, e.g. "ort:cpu", "openvino:f32", "torch"
    name: str = ""
    #: the arithmetic it runs in: "fp32" compares at the bundle's tolerance, others looser
    precision: str = "fp32"
    #: the bundle's signature, when known: feed checks, warm-up feeds and symbolic dims come from it
    signature: Signature | None = None
    #: untimed runs at the end of load()
    warmup: int = 0
    #: refuse feeds with a size outside its declared bounds or a value outside its input's declared range
    #: (``feeds.check_feed``); off, they run (``load()`` records that in ``warnings``)
    check_ranges: bool = True
    #: whether ``_infer`` honours a deadline itself (ONNX Runtime's RunOptions.terminate); otherwise the
    #: base class runs it in a worker thread it can stop (``deadline.within``)
    stops_itself: bool = False

    def __init__(self) -> None:
        self.warnings: list[str] = []
        self.timings: dict[str, float] = {}
        self._loaded = False

    # -- what a runtime implements ---------------------------------------------------------------
    @abstractmethod
    def _load(self) -> None: ...

    @abstractmethod
    def _infer(self, feed: dict[str, Any], timeout: float | None) -> dict[str, np.ndarray]: ...

    @abstractmethod
    def _close(self) -> None: ...

    @abstractmethod
    def inputs(self) -> list[TensorInfo]: ...

    @abstractmethod
    def outputs(self) -> list[TensorInfo]: ...

    # -- the shared work -------------------------------------------------------------------------
    @property
    def loaded(self) -> bool:
        return self._loaded

    def load(self) -> Runner:
        if self._loaded:
            return self
        start = time.perf_counter()
        self._load()
        if not self.check_ranges and RANGES_OFF not in self.warnings:
            self.warnings.append(RANGES_OFF)
        self._loaded = True
        self.timings["load_s"] = time.perf_counter() - start
        if self.warmup:
            self.warm_up(self.warmup)
        return self

    def infer(
        self, feed: dict[str, Any], *, timeout: float | None = None, label: str = "feed"
    ) -> dict[str, np.ndarray]:
        """Outputs by name, in the model's output order. With ``timeout`` (seconds), a call still running
        then is stopped and ``VerifyTimeoutError`` names ``label``, the feed."""
        self.require_loaded()
        feed = as_arrays(feed)
        if self.signature is not None:
            check_feed(self.signature, feed, self.check_ranges)
        else:
            check_names([i.name for i in self.inputs()], feed, complete=False)
        start = time.perf_counter()
        if not active(timeout):
            outputs = self._infer(feed, None)
        elif self.stops_itself:
            try:
                outputs = self._infer(feed, timeout)
            except TimeoutError:
                raise VerifyTimeoutError(self.name, timeout or 0.0, label) from None
        else:
            outputs = within(lambda: self._infer(feed, None), timeout, self.name, label)
        self._record_run(time.perf_counter() - start)
        return outputs

    def __call__(self, feed: dict[str, Any] | None = None, /, **named: Any) -> dict[str, np.ndarray]:
        """``runner({"x": array})`` or ``runner(x=tensor)``: numpy arrays, torch tensors or scalars."""
        if feed is not None and not isinstance(feed, dict):
            names = ", ".join(i.name for i in self.inputs())
            raise FeedError(
                f"inputs go by name, not as a bare {type(feed).__name__}",
                f"call runner({names.split(', ')[0]}=array) or runner({{name: array}}); inputs: {names}",
            )
        return self.infer({**(feed or {}), **named})

    def close(self) -> None:
        if self._loaded:
            self._close()
            self._loaded = False

    def require_loaded(self) -> None:
        if not self._loaded:
            raise RuntimeError(
                f"{type(self).__name__} is not loaded (used before load() or after close()); use `with runner:` or "
                "call load() first"
            )

    def describe(self) -> dict[str, Any]:
        """What the runner really got (providers, device, precision...), for reports and --json."""
        info: dict[str, Any] = {"backend": self.name, "precision": self.precision}
        if self.timings:
            info["timings"] = {k: round(v, 4) for k, v in self.timings.items()}
        if self.warnings:
            info["warnings"] = list(self.warnings)
        return info

    def example_feed(self, seed: int = 0) -> dict[str, np.ndarray]:
        """A feed at the signature's example sizes (or size 1 for unknown dims) for warm-up and profiling."""
        if self.signature is not None:
            sig = self.signature
            return make_feed(sig, sig.example_sizes(), np.random.default_rng(seed)).arrays
        rng = np.random.default_rng(seed)
        feed = {}
        for info in self.inputs():
            shape = tuple(d if isinstance(d, int) else 1 for d in info.shape)
            try:
                dtype = np.dtype(info.dtype)
            except TypeError:  # a sequence, an optional, float8...: nothing numpy can make up
                raise FeedError(
                    f"input {info.name!r} is of type {info.dtype}, for which modelport cannot make an example feed",
                    f"pass it: --feed {info.name}=FILE.npy",
                ) from None
            feed[info.name] = np.asarray((rng.random(shape) * 2).astype(dtype))  # ints 0/1, bools mixed
        return feed

    def warm_up(self, runs: int = 1, feed: dict[str, np.ndarray] | None = None) -> None:
        """Run ``runs`` times so later timings exclude lazy initialisation (the first run is recorded)."""
        feed = feed if feed is not None else self.example_feed()
        for _ in range(runs):
            self.infer(feed)

    def _record_run(self, seconds: float) -> None:
        """The first run's time, and cold start = load + first run."""
        if "first_run_s" not in self.timings:
            self.timings["first_run_s"] = seconds
            self.timings["cold_start_s"] = self.timings.get("load_s", 0.0) + seconds

    def __enter__(self) -> Runner:
        return self.load()

    def __exit__(self, *exc: object) -> None:
        self.close()


@runtime_checkable
class Placement(Protocol):
    """A runner that can say where each node ran (ONNX Runtime, from a profiled run)."""

    def placement(self, feed: dict[str, np.ndarray] | None = None, strict: bool = False) -> Any: ...


def cache_folder(model_path: str | Path) -> Path:
    """``<bundle>/../.modelport-cache/<bundle-name>``: engines and caches live beside the bundle, never
    inside it, since a bundle's files are hashed and copied as a unit. A bare ONNX file gets
    ``<its folder>/.modelport-cache/<stem>``."""
    path = Path(model_path).resolve()
    folder = path.parent
    if (folder / "modelport.json").is_file():
        return folder.parent / ".modelport-cache" / folder.name
    return folder / ".modelport-cache" / path.stem


def infos_from_signature(sig: Signature) -> list[TensorInfo]:
    return [TensorInfo(s.name, tuple(s.dims), s.dtype) for s in sig.inputs]


def infos_from_manifest(outputs: list[dict[str, Any]]) -> list[TensorInfo]:
    """The manifest's ``outputs`` (name, dtype, dims as the graph has them) as TensorInfo."""
    return [TensorInfo(o["name"], tuple(o.get("dims", ())), o.get("dtype", "float32")) for o in outputs]


def profile_shapes(sig: Signature) -> dict[str, tuple[tuple[int, ...], ...]]:
    """(min, opt, max) shape of every input with a symbol: what a TensorRT optimization profile spans."""
    out = {}
    for spec in sig.inputs:
        if spec.symbols:
            picks = [{n: getattr(d, key) or d.min for n, d in sig.dims.items()} for key in ("min", "opt", "max")]
            out[spec.name] = tuple(sig.shape(spec, sizes) for sizes in picks)
    return out


def check_options(cls: type, options: dict[str, Any], taken: set[str], backend: str) -> None:
    """UsageError for an option ``cls`` does not take, or one the backend name already set."""
    accepted = [p for p in inspect.signature(cls).parameters if p not in ("path", "bundle")]
    for key in options:
        if key not in accepted or key in taken:
            free = [p for p in accepted if p not in taken]
            raise UsageError(f"option {key!r} does not apply to backend {backend}", f"its options: {', '.join(free)}")
