"""The answers of ONNX's own reference evaluator (``onnx.reference.ReferenceEvaluator``, plain numpy) to
the verification feeds: for a graph nobody exported from PyTorch here, the independent implementation a
runtime is checked against. Used like ``Reference`` by ``check_runners``; every call runs under
``timeout`` seconds (the evaluator is slow on big convolutions)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from modelport.deadline import DEFAULT_VERIFY_TIMEOUT, within
from modelport.errors import ModelportError, first_line
from modelport.feeds import Feed, make_feeds
from modelport.spec import Signature
from modelport.verification.reference import Answer

__all__ = ["OnnxReference", "ReferenceUnavailable"]

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
