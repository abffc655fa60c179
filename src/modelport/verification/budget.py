"""The accuracy budget an optimized model is held to, and the report of one measured against it.

A budget is the user's, per output: ``cos>=0.999`` (cosine similarity of each feed's output to the
reference, the worst feed counts; the default), ``atol=0.01`` (largest absolute difference on any
feed), ``top1>=0.99`` (the fraction of rows, over all feeds, whose argmax on the last axis agrees:
for classifiers). Outputs that are not floating point (ids, masks) must match exactly whatever the
budget. Pure numpy: the caller decides where the answers come from.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from modelport.compare import cosine
from modelport.errors import ParityError, UsageError

__all__ = ["Budget", "OutputScore", "BudgetReport", "score_outputs", "DEFAULT_BUDGET"]

DEFAULT_BUDGET = "cos>=0.999"
_FORMS = re.compile(r"^\s*(cos|cosine|top1|atol)\s*(>=|<=|=)\s*([0-9.eE+-]+)\s*$")
_METRICS = {"cos": ">=", "cosine": ">=", "top1": ">=", "atol": "<="}

Answers = Sequence[dict[str, np.ndarray]]  # per feed: output name -> array


@dataclass(frozen=True)
class Budget:
    metric: str  # cos | top1 | atol
    threshold: float

    @classmethod
    def parse(cls, text: str | Budget) -> Budget:
        if isinstance(text, Budget):
            return text
        match = _FORMS.match(text) if isinstance(text, str) else None
        if match is None:
            raise UsageError(
                f"cannot read the budget {text!r}",
                "write cos>=0.999 (cosine per output, the default), atol=0.01 (largest difference) or "
                "top1>=0.99 (argmax agreement, for classifiers)",
            )
        name, op, number = match.groups()
        metric = "cos" if name == "cosine" else name
        try:
            value = float(number)
        except ValueError:
            value = math.nan
        wanted = _METRICS[name]
        if op not in (wanted, "=") or (metric == "atol" and op == ">="):
            raise UsageError(f"budget {text!r} points the wrong way", f"write {metric}{wanted}{number}")
        limit_ok = 0 < value <= 1 if metric in ("cos", "top1") else 0 <= value < math.inf
        if not limit_ok:
            bounds = "between 0 and 1" if metric != "atol" else "a finite number >= 0"
            raise UsageError(f"budget {text!r}: the limit must be {bounds}", "e.g. cos>=0.999")
        return cls(metric, value)

    @property
    def text(self) -> str:
        return f"{self.metric}{_METRICS[self.metric]}{self.threshold:g}"

    def within(self, value: float) -> bool:
        if math.isnan(value):
            return False
        return value <= self.threshold if self.metric == "atol" else value >= self.threshold

    def measure(self, expected: list[np.ndarray], actual: list[np.ndarray]) -> float:
        """This budget's metric for one output over all feeds (the worst feed; top1 pooled)."""
        if self.metric == "top1":
            agree = rows = 0
            for want, got in zip(expected, actual, strict=True):
                if want.shape != got.shape:
                    return 0.0
                if want.ndim == 0 or want.size == 0:
                    continue
                agree += int(np.sum(np.argmax(want, axis=-1) == np.argmax(got, axis=-1)))
                rows += want.size // want.shape[-1]
            return agree / rows if rows else 1.0
        values = []
        for want, got in zip(expected, actual, strict=True):
            if want.shape != got.shape:
                return math.nan
            if self.metric == "cos":
                values.append(_cosine(want, got))
            else:
                with np.errstate(all="ignore"):
                    gap = np.abs(got.astype(np.float64) - want.astype(np.float64))
                values.append(float(gap.max()) if gap.size else 0.0)
        if any(math.isnan(v) for v in values):
            return math.nan
        return (max if self.metric == "atol" else min)(values, default=1.0 if self.metric == "cos" else 0.0)

    def better(self, a: float, b: float) -> bool:
        """Whether score ``a`` is closer to the reference than ``b``."""
        if math.isnan(b):
            return not math.isnan(a)
        return a < b if self.metric == "atol" else a > b


@dataclass
class OutputScore:
    name: str
    value: float  # the budget's metric; for exact outputs 1.0 (equal) or 0.0
    within: bool
    exact: bool = False  # not floating point: held to equality

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "value": _finite(self.value), "within": self.within, "exact": self.exact}


@dataclass
class BudgetReport:
    """An optimized model's answers against the reference, per output, under the budget."""

    budget: Budget
    backend: str
    reference: str  # "PyTorch eager" or "the fp32 ONNX model"
    data: str  # what the feeds were: "held-out data (12 feeds)", "generated feeds (9)"
    outputs: list[OutputScore] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.outputs) and all(o.within for o in self.outputs)

    def summary(self) -> str:
        scores = ", ".join(f"{o.name} {_show(o, self.budget)}" for o in self.outputs)
        verdict = "within" if self.passed else "OUTSIDE"
        return f"{verdict} budget {self.budget.text} against {self.reference} on {self.data}: {scores}"

    def raise_if_failed(self) -> None:
        if not self.passed:
            bad = next(o for o in self.outputs if not o.within)
            raise ParityError(
                f"{self.backend} breaks the accuracy budget {self.budget.text}: output '{bad.name}' "
                f"{_show(bad, self.budget)} against {self.reference} on {self.data}",
                "re-run `modelport optimize` with your own data (--data) or a looser --budget, or use the fp32 "
                "bundle it was made from",
                report=self,
            )

    def to_json(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "budget": self.budget.text,
            "reference": self.reference,
            "data": self.data,
            "passed": self.passed,
            "summary": self.summary(),
            "warnings": self.warnings,
            "outputs": [o.to_json() for o in self.outputs],
        }


def score_outputs(budget: Budget, expected: Answers, actual: Answers) -> list[OutputScore]:
    """Per output of ``expected`` (feeds in the same order in both), the budget's metric over all feeds."""
    if not expected:
        return []
    scores = []
    for name in expected[0]:
        want = [np.asarray(answer[name]) for answer in expected]
        got = [np.asarray(answer.get(name, np.array(np.nan))) for answer in actual]
        if len(got) != len(want):
            raise ValueError(f"{len(got)} answers for {len(want)} feeds")
        if not np.issubdtype(want[0].dtype, np.floating):
            same = all(w.shape == g.shape and np.array_equal(w, g) for w, g in zip(want, got, strict=True))
            scores.append(OutputScore(name, 1.0 if same else 0.0, same, exact=True))
            continue
        value = budget.measure(want, got)
        scores.append(OutputScore(name, value, budget.within(value)))
    return scores


def _cosine(want: np.ndarray, got: np.ndarray) -> float:
    if want.size == 0:
        return 1.0
    a, b = want.astype(np.float64), got.astype(np.float64)
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        return 1.0 if np.array_equal(a, b, equal_nan=True) else math.nan
    return cosine(a, b)


def _show(score: OutputScore, budget: Budget) -> str:
    if score.exact:
        return "equal" if score.within else "differs (must be equal)"
    return f"{budget.metric} {score.value:.6g}" if not math.isnan(score.value) else f"{budget.metric} NaN"


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None
