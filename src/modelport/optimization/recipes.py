"""The recipes that build a reduced-precision candidate's model file from its float graph: one object per
recipe, each saying what it reads besides the graph (the calibration feeds, the transformer flag) and
calling its pass in ``passes``. ``RECIPES`` is the one table: ``candidates.plan`` gives each candidate its
recipe from it, and the search builds a candidate with that recipe alone. A new recipe is one more class
here and its entry in the table.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from modelport.optimization import passes

__all__ = ["Context", "Recipe", "RECIPES"]


@dataclass(frozen=True)
class Context:
    """What a build may read besides its source graph."""

    exclude: tuple[str, ...] = ()  # nodes kept in float (the search's exclusions so far)
    calibration: Sequence[dict[str, np.ndarray]] = ()  # given only to a recipe that is ``calibrated``
    transformer: bool = False  # the model takes token ids (NNCF's transformer preset)


class Recipe(ABC):
    """A pass from a float graph ``src`` to a candidate's model file ``dst``."""

    name: ClassVar[str]  # the candidate's ``recipe``, e.g. "int8-static"
    calibrated: ClassVar[bool] = False  # reads ``Context.calibration``
    transformer: ClassVar[bool] = False  # reads ``Context.transformer``

    @abstractmethod
    def build(self, src: Path, dst: Path, context: Context) -> None: ...

    def __repr__(self) -> str:
        return f"<recipe {self.name}>"


class Fp16(Recipe):
    name = "fp16"

    def build(self, src: Path, dst: Path, context: Context) -> None:
        passes.fp16(src, dst, context.exclude)


class Int8Dynamic(Recipe):
    name = "int8-dynamic"

    def build(self, src: Path, dst: Path, context: Context) -> None:
        passes.int8_dynamic(src, dst, context.exclude)


class Int8Static(Recipe):
    name = "int8-static"
    calibrated = True

    def build(self, src: Path, dst: Path, context: Context) -> None:
        passes.int8_static(src, dst, context.calibration, context.exclude)


class NncfInt8Weights(Recipe):
    name = "nncf-int8-weights"

    def build(self, src: Path, dst: Path, context: Context) -> None:
        passes.nncf_int8_weights(src, dst, context.exclude)


class NncfInt8(Recipe):
    name = "nncf-int8"
    calibrated = True
    transformer = True

    def build(self, src: Path, dst: Path, context: Context) -> None:
        passes.nncf_int8(src, dst, context.calibration, context.exclude, transformer=context.transformer)


RECIPES: dict[str, Recipe] = {r.name: r for r in (Fp16(), Int8Dynamic(), Int8Static(), NncfInt8Weights(), NncfInt8())}
