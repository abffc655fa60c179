"""Parity: a runtime's answers against PyTorch eager on the same feeds.

At export the runtime is ONNX Runtime on the CPU with graph optimizations ALL and DISABLED: DISABLED
matters, since ALL can fold a live Dropout or a training-mode BatchNorm into something that looks
right. ``verify --backend`` checks any registered runner the same way. The report is data;
``ParityReport.raise_if_failed`` is the caller's choice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from modelport.calling import CallPlan, run_eager
from modelport.errors import ParityError
from modelport.runtime.base import Runner
from modelport.runtime.ort import OPT_LEVELS, OPTIMIZATIONS, OrtRunner
from modelport.runtime.registry import TOLERANCES, tolerance_for
from modelport.spec import Signature
from modelport.verify.compare import OutputDiff, compare
from modelport.verify.feeds import Feed, make_feeds

__all__ = ["Reference", "FeedResult", "ParityReport", "check_parity", "check_runners", "DEFAULT_ATOL", "DEFAULT_RTOL"]

DEFAULT_ATOL = 1e-4
DEFAULT_RTOL = 1e-3


class Reference:
    """The feeds and PyTorch's answers to them, computed once, before any exporter touches the model
    (exporters can leave it changed), and shared by every attempt."""

    def __init__(self, module: Any, plan: CallPlan, sig: Signature, seed: int = 0) -> None:
        self.feeds: list[Feed] = make_feeds(sig, seed)
        self.answers = [run_eager(module, plan, f.arrays, sig) for f in self.feeds]


@dataclass
class FeedResult:
    feed: str
    sizes: dict[str, int]
    optimization: str
    outputs: list[OutputDiff]
    passed: bool
    why: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "feed": self.feed,
            "sizes": self.sizes,
            "optimization": self.optimization,
            "passed": self.passed,
            "why": self.why,
            "outputs": [o.to_json() for o in self.outputs],
        }


@dataclass
class ParityReport:
    atol: float
    rtol: float
    backend: str = "ort:cpu"
    results: list[FeedResult] = field(default_factory=list)
    precision: str = "fp32"  # below fp32, each output's tolerance is widened (registry.TOLERANCES)

    @property
    def passed(self) -> bool:
        return bool(self.results) and all(r.passed for r in self.results)

    @property
    def first_failure(self) -> FeedResult | None:
        return next((r for r in self.results if not r.passed), None)

    def summary(self) -> str:
        bad = self.first_failure
        if bad is None:
            return f"{len(self.results)} checks passed ({self.tolerance_text()})"
        where = f"optimizations {bad.optimization}" if bad.optimization in OPTIMIZATIONS else bad.optimization
        return f"feed '{bad.feed}' ({where}): {bad.why}"

    def tolerance_text(self) -> str:
        if self.precision == "fp32":
            return f"atol {self.atol:g}, rtol {self.rtol:g}"
        per_unit, rtol = TOLERANCES[self.precision]
        return (
            f"{self.precision} precision: atol {per_unit:g} x each output's largest magnitude, "
            f"rtol {max(rtol, self.rtol):g}"
        )

    def raise_if_failed(self) -> None:
        if not self.passed:
            raise ParityError(
                f"{self.backend} disagrees with PyTorch on {self.summary()}",
                "the export answers wrong at this input; see the parity report (--json), fix the model or "
                "loosen --atol/--rtol only if the difference is acceptable",
                report=self,
            )

    def to_json(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "atol": self.atol,
            "rtol": self.rtol,
            "precision": self.precision,
            "passed": self.passed,
            "summary": self.summary(),
            "results": [r.to_json() for r in self.results],
        }


def check_parity(path: Path, ref: Reference, atol: float = DEFAULT_ATOL, rtol: float = DEFAULT_RTOL) -> ParityReport:
    """The export-time check: ONNX Runtime on the CPU at both optimization levels."""
    return check_runners([OrtRunner(path, optimization=level) for level in OPT_LEVELS], ref, atol, rtol)


def check_runners(
    runners: list[Runner], ref: Reference, atol: float, rtol: float, backend: str = "ort:cpu"
) -> ParityReport:
    """Each runner (loaded here, closed after) against PyTorch's answers. A runner below fp32 is held
    to its precision's tolerance (``registry.tolerance_for``), scaled by each reference output."""
    report = ParityReport(atol, rtol, backend, precision=runners[0].precision)
    for runner in runners:
        with runner:
            setting = getattr(runner, "optimization", None) or runner.name
            for feed, answer in zip(ref.feeds, ref.answers, strict=True):
                report.results.append(_check_feed(runner, feed, answer, setting, atol, rtol))
    return report


def _check_feed(
    runner: Runner, feed: Feed, answer: list[tuple[str, np.ndarray]], setting: str, atol: float, rtol: float
) -> FeedResult:
    got = list(runner.infer(feed.arrays).items())
    if len(got) != len(answer):
        return FeedResult(
            feed.label,
            feed.sizes,
            setting,
            [],
            False,
            f"{len(got)} outputs from {runner.name}, {len(answer)} from PyTorch",
        )
    diffs = [
        compare(name, expected, actual, *tolerance_for(runner, atol, rtol, expected))
        for (name, expected), (_, actual) in zip(answer, got, strict=True)
    ]
    bad = next((d for d in diffs if not d.passed), None)
    return FeedResult(
        feed.label, feed.sizes, setting, diffs, bad is None, f"output '{bad.name}': {bad.why}" if bad else ""
    )
