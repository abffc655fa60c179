"""The Runner contract every runtime implements (after Polygraphy's runners).

Nothing heavy happens in ``__init__``: libraries are imported and sessions, engines or models are
built in ``load()``. ``infer(feed)`` takes numpy arrays by input name and returns numpy arrays by
output name, in the model's output order. ``close()`` releases what ``load()`` built.

Every runner also keeps ``warnings`` (what it had to accept, e.g. a dropped provider) and
``timings`` (``load_s``, ``first_run_s``, ``cold_start_s``), both shown by ``describe()``, because a
benchmark that hides a fallback or a slow first run reports a runtime the user will not get.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from modelport.spec import Signature

__all__ = ["Runner", "TensorInfo", "cache_folder", "infos_from_signature", "infos_from_manifest", "profile_shapes"]


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int | str | None, ...]  # ints are fixed sizes, strings named symbols, None unknown
    dtype: str  # numpy dtype name: "float32", "int64", "bool"...


class Runner(ABC):
    """One model on one runtime. Use as ``with runner: runner.infer(feed)``."""

    #: registry name this runner was created under, e.g. "ort:cpu", "openvino:f32", "torch"
    name: str = ""
    #: the arithmetic it runs in: "fp32" compares at the bundle's tolerance, others looser
    precision: str = "fp32"
    #: the bundle's signature, when known: warm-up feeds and symbolic dims come from it
    signature: Signature | None = None

    def __init__(self) -> None:
        self.warnings: list[str] = []
        self.timings: dict[str, float] = {}

    @abstractmethod
    def load(self) -> Runner: ...

    @abstractmethod
    def inputs(self) -> list[TensorInfo]: ...

    @abstractmethod
    def outputs(self) -> list[TensorInfo]: ...

    @abstractmethod
    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    @abstractmethod
    def close(self) -> None: ...

    def describe(self) -> dict[str, Any]:
        """What the runner really got (providers, device, precision...), for reports and --json."""
        info: dict[str, Any] = {"backend": self.name, "precision": self.precision}
        if getattr(self, "timings", None):
            info["timings"] = {k: round(v, 4) for k, v in self.timings.items()}
        if getattr(self, "warnings", None):
            info["warnings"] = list(self.warnings)
        return info

    def example_feed(self, seed: int = 0) -> dict[str, np.ndarray]:
        """A feed at the signature's example sizes (or size 1 for unknown dims) for warm-up and profiling."""
        if self.signature is not None:
            from modelport.verify.feeds import make_feed

            sig = self.signature
            return make_feed(sig, sig.example_sizes(), np.random.default_rng(seed)).arrays
        rng = np.random.default_rng(seed)
        feed = {}
        for info in self.inputs():
            shape = tuple(d if isinstance(d, int) else 1 for d in info.shape)
            feed[info.name] = (rng.random(shape) * 2).astype(info.dtype)  # ints become 0/1, bools mixed
        return feed

    def warm_up(self, runs: int = 1, feed: dict[str, np.ndarray] | None = None) -> None:
        """Run ``runs`` times so later timings exclude lazy initialisation (the first run is recorded)."""
        feed = feed if feed is not None else self.example_feed()
        for _ in range(runs):
            self.infer(feed)

    def _record_run(self, seconds: float) -> None:
        """Called by ``infer``: the first run's time, and cold start = load + first run."""
        if "first_run_s" not in self.timings:
            self.timings["first_run_s"] = seconds
            self.timings["cold_start_s"] = self.timings.get("load_s", 0.0) + seconds

    def __enter__(self) -> Runner:
        return self.load()

    def __exit__(self, *exc: object) -> None:
        self.close()


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
