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

from modelport.optimization import nncf_nbits, passes

__all__ = ["Context", "Recipe", "RECIPES", "WeightsNBits", "NncfWeightsNBits"]


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
    the layer whose error every token's choice sees — and, with ``edge_bits`` 8, the first and last
    decoder blocks' MatMuls at int8 (the first feeds every later block its error, the last writes what
    the head reads)."""

    name = "weights-nbits"

    def __init__(
        self,
        bits: int,
        block_size: int,
        symmetric: bool,
        accuracy_level: int = 4,
        head_bits: int | None = None,
        edge_bits: int | None = None,
    ) -> None:
        self.bits, self.block_size, self.symmetric = bits, block_size, symmetric
        self.accuracy_level, self.head_bits, self.edge_bits = accuracy_level, head_bits, edge_bits

    def build(self, src: Path, dst: Path, context: Context) -> None:
        options = {"block_size": self.block_size, "symmetric": self.symmetric, "accuracy_level": self.accuracy_level}
        head = passes.lm_head(src) if self.head_bits not in (None, self.bits) else None
        eight = [head] if head and self.head_bits == 8 else []
        if self.edge_bits == 8:
            blocks = passes.decoder_blocks(src)
            eight += blocks[0] + (blocks[-1] if len(blocks) > 1 else [])
        exclude = [*context.exclude, *([head] if head else []), *eight]
        if eight:
            staged = dst.with_name(f".{dst.stem}-body.onnx")
            passes.weights_nbits(src, staged, exclude, bits=self.bits, **options)
            passes.weights_nbits(staged, dst, bits=8, only=eight, **options)
            for stale in (staged, staged.with_name(staged.name + ".data")):
                stale.unlink(missing_ok=True)
        else:
            passes.weights_nbits(src, dst, exclude, bits=self.bits, **options)

    def words(self) -> str:
        kind = "symmetric" if self.symmetric else "asymmetric"
        compute = "int8 compute (accuracy_level 4)" if self.accuracy_level == 4 else "float compute"
        head = {None: "", 8: ", LM head int8", 32: ", LM head float"}.get(self.head_bits, "")
        edges = ", first and last blocks int8" if self.edge_bits == 8 else ""
        return f"int{self.bits} weights (MatMulNBits, blocks of {self.block_size}, {kind}), {compute}{head}{edges}"

    def __repr__(self) -> str:
        return f"<recipe {self.words()}>"


class NncfWeightsNBits(Recipe):
    """NNCF's data-aware int4 weight compression (``nncf_nbits.nncf_weights_nbits``), calibrated on token
    chunks of the user's text: AWQ and/or scale estimation, ``ratio`` of the layers int4 and the rest int8."""

    name = "nncf-weights-nbits"
    calibrated = True

    def __init__(
        self, symmetric: bool, group_size: int, ratio: float = 1.0, awq: bool = False, scale_estimation: bool = False
    ) -> None:
        self.symmetric, self.group_size, self.ratio = symmetric, group_size, ratio
        self.awq, self.scale_estimation = awq, scale_estimation

    def build(self, src: Path, dst: Path, context: Context) -> None:
        if not context.calibration:
            raise ValueError("NNCF's data-aware int4 needs calibration feeds (token chunks of the text)")
        nncf_nbits.nncf_weights_nbits(src, dst, context.calibration, symmetric=self.symmetric,
                                      group_size=self.group_size, ratio=self.ratio, awq=self.awq,
                                      scale_estimation=self.scale_estimation)  # fmt: skip

    def words(self) -> str:
        kind = "symmetric" if self.symmetric else "asymmetric"
        methods = [m for m, on in (("AWQ", self.awq), ("scale estimation", self.scale_estimation)) if on]
        share = f"{self.ratio:.0%} of the layers int4, the rest int8" if self.ratio < 1 else "every block int4"
        how = f", {' + '.join(methods)} on the text" if methods else ""
        return (f"NNCF int4 weights (MatMulNBits, groups of {self.group_size}, {kind}){how}; {share}, "
                "embedding float, LM head int8, int8 compute")  # fmt: skip

    def __repr__(self) -> str:
        return f"<recipe {self.words()}>"


RECIPES: dict[str, Recipe] = {r.name: r for r in (Fp16(), Int8Dynamic(), Int8Static(), NncfInt8Weights(), NncfInt8())}
