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

__all__ = ["Context", "Recipe", "RECIPES", "WeightsNBits"]


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


class WeightsNBits(Recipe):
    """Weight-only ``MatMulNBits`` (``passes.weights_nbits``), for decoders: every MatMul with a constant
    weight at ``bits``, except the LM head when ``head_bits`` says otherwise (8: int8, 32: kept float) —
    the layer whose error every token's choice sees."""

    name = "weights-nbits"

    def __init__(
        self, bits: int, block_size: int, symmetric: bool, accuracy_level: int = 4, head_bits: int | None = None
    ) -> None:
        self.bits, self.block_size, self.symmetric = bits, block_size, symmetric
        self.accuracy_level, self.head_bits = accuracy_level, head_bits

    def build(self, src: Path, dst: Path, context: Context) -> None:
        options = {"block_size": self.block_size, "symmetric": self.symmetric, "accuracy_level": self.accuracy_level}
        head = passes.lm_head(src) if self.head_bits not in (None, self.bits) else None
        exclude = [*context.exclude, *([head] if head else [])]
        if head and self.head_bits == 8:
            staged = dst.with_name(f".{dst.stem}-body.onnx")
            passes.weights_nbits(src, staged, exclude, bits=self.bits, **options)
            passes.weights_nbits(staged, dst, bits=8, only=[head], **options)
            for stale in (staged, staged.with_name(staged.name + ".data")):
                stale.unlink(missing_ok=True)
        else:
            passes.weights_nbits(src, dst, exclude, bits=self.bits, **options)

    def words(self) -> str:
        kind = "symmetric" if self.symmetric else "asymmetric"
        compute = "int8 compute (accuracy_level 4)" if self.accuracy_level == 4 else "float compute"
        head = {None: "", 8: ", LM head int8", 32: ", LM head float"}.get(self.head_bits, "")
        return f"int{self.bits} weights (MatMulNBits, blocks of {self.block_size}, {kind}), {compute}{head}"

    def __repr__(self) -> str:
        return f"<recipe {self.words()}>"


RECIPES: dict[str, Recipe] = {r.name: r for r in (Fp16(), Int8Dynamic(), Int8Static(), NncfInt8Weights(), NncfInt8())}
