"""The Runner contract every runtime implements (after Polygraphy's runners).

Nothing heavy happens in ``__init__``: libraries are imported and sessions, engines or models are
built in ``load()``. ``infer(feed)`` takes numpy arrays by input name and returns numpy arrays by
output name, in the model's output order. ``close()`` releases what ``load()`` built.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Runner", "TensorInfo"]


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
        return {"backend": self.name, "precision": self.precision}

    def __enter__(self) -> Runner:
        return self.load()

    def __exit__(self, *exc: object) -> None:
        self.close()
