"""ONNX's own reference evaluator (``onnx.reference.ReferenceEvaluator``, plain numpy): for a graph nobody
exported from PyTorch here, the independent implementation a runtime is checked against.

``OnnxReference`` holds its answers to the verification feeds, used like ``Reference`` by
``check_runners`` (import, verify); every call runs under ``timeout`` seconds (the evaluator is slow on big
convolutions). ``legacy_ops`` gives it the rules of opset < 7 for old files (upgrade): the evaluator
implements every op as its current version does, but below opset 7 two rules were different, and they are
exactly what a conversion must preserve. The arithmetic and comparison ops broadcast only with
``broadcast=1``, aligning B at ``axis`` (or at the end), not numpy-style; and PRelu's 1-D slope is per
channel (axis 1), as the 2018 exporters meant it ("if slope is of size 1, the value is shared across
different channels").
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from modelport.deadline import DEFAULT_VERIFY_TIMEOUT, within
from modelport.errors import ModelportError, first_line
from modelport.feeds import Feed, make_feeds
from modelport.spec import Signature
from modelport.verification.reference import Answer

__all__ = ["EVALUATOR", "OnnxReference", "ReferenceUnavailable", "legacy_ops"]

EVALUATOR = "ONNX's reference evaluator"


class ReferenceUnavailable(ModelportError):
    """The reference evaluator cannot run this graph (an op it lacks, a domain it does not know)."""


class OnnxReference:
    name = EVALUATOR

    def __init__(
        self, model_path: Path, sig: Signature, seed: int = 0, *, timeout: float | None = DEFAULT_VERIFY_TIMEOUT
    ) -> None:
        from onnx.reference import ReferenceEvaluator

        self.feeds: list[Feed] = make_feeds(sig, seed)
        self.timeout = timeout
        try:
            evaluator = ReferenceEvaluator(str(model_path))
        except Exception as exc:  # it raises NotImplementedError, TypeError, ... for what it lacks
            raise ReferenceUnavailable(f"{EVALUATOR} cannot load the graph: {first_line(exc)[:200]}") from None
        names = list(evaluator.output_names)
        self.answers: list[Answer] = []
        for feed in self.feeds:
            try:
                arrays = within(lambda f=feed: evaluator.run(None, f.arrays), timeout, EVALUATOR, feed.label)
            except ModelportError:
                raise
            except Exception as exc:
                raise ReferenceUnavailable(
                    f"{EVALUATOR} failed on feed {feed.label!r}: {type(exc).__name__}: {first_line(exc)[:200]}"
                ) from None
            self.answers.append([(n, np.asarray(a)) for n, a in zip(names, arrays, strict=True)])


def legacy_ops() -> list[type]:
    """The evaluator's ops with the rules of opset < 7 (module docstring)."""
    from onnx.reference.ops import (
        op_add,
        op_and,
        op_div,
        op_equal,
        op_greater,
        op_less,
        op_mul,
        op_or,
        op_pow,
        op_prelu,
        op_sub,
        op_xor,
    )

    def binary(base: type) -> type:
        def _run(self: Any, a: np.ndarray, b: np.ndarray, **attrs: Any) -> Any:
            broadcast, axis = attrs.pop("broadcast", getattr(self, "broadcast", 0)), attrs.pop("axis", None)
            axis = getattr(self, "axis", None) if axis is None else axis
            if broadcast and 0 < b.ndim <= a.ndim:
                start = a.ndim - b.ndim if axis is None else axis % a.ndim
                if start + b.ndim <= a.ndim:
                    b = b.reshape((1,) * start + b.shape + (1,) * (a.ndim - start - b.ndim))
            return base._run(self, a, b)

        return type(base.__name__, (base,), {"op_domain": "", "_run": _run})

    def _prelu(self: Any, x: np.ndarray, slope: np.ndarray) -> Any:
        if slope.ndim == 1 and slope.size > 1 and x.ndim > 2 and x.shape[1] == slope.size:
            slope = slope.reshape((-1,) + (1,) * (x.ndim - 2))
        return op_prelu.PRelu._run(self, x, slope)

    ops = [op_add.Add, op_sub.Sub, op_mul.Mul, op_div.Div, op_pow.Pow, op_and.And, op_or.Or, op_xor.Xor]
    ops += [op_equal.Equal, op_greater.Greater, op_less.Less]
    return [binary(op) for op in ops] + [type("PRelu", (op_prelu.PRelu,), {"op_domain": "", "_run": _prelu})]
