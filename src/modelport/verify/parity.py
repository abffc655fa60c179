"""Parity: ONNX Runtime (graph optimizations ALL and DISABLED) against PyTorch eager.

DISABLED matters: ALL can fold a live Dropout or a training-mode BatchNorm into something that
looks right. The report is data; ``ParityReport.raise_if_failed`` is the caller's choice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from modelport.calling import CallPlan, run_eager
from modelport.errors import ParityError
from modelport.runtime.ort import OPT_LEVELS, OrtRunner
from modelport.spec import Signature
from modelport.verify.compare import OutputDiff, compare
from modelport.verify.feeds import Feed, make_feeds

__all__ = ["Reference", "FeedResult", "ParityReport", "check_parity", "DEFAULT_ATOL", "DEFAULT_RTOL"]

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

    @property
    def passed(self) -> bool:
        return bool(self.results) and all(r.passed for r in self.results)

    @property
    def first_failure(self) -> FeedResult | None:
        return next((r for r in self.results if not r.passed), None)

    def summary(self) -> str:
        bad = self.first_failure
        if bad is None:
            return f"{len(self.results)} checks passed (atol {self.atol:g}, rtol {self.rtol:g})"
        return f"feed '{bad.feed}' (optimizations {bad.optimization}): {bad.why}"

    def raise_if_failed(self) -> None:
        if not self.passed:
            raise ParityError(
                f"ONNX Runtime disagrees with PyTorch on {self.summary()}",
                "the export answers wrong at this input; see the parity report (--json), fix the model or "
                "loosen --atol/--rtol only if the difference is acceptable",
                report=self,
            )

    def to_json(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "atol": self.atol,
            "rtol": self.rtol,
            "passed": self.passed,
            "summary": self.summary(),
            "results": [r.to_json() for r in self.results],
        }


def check_parity(path: Path, ref: Reference, atol: float = DEFAULT_ATOL, rtol: float = DEFAULT_RTOL) -> ParityReport:
    report = ParityReport(atol, rtol)
    for level in OPT_LEVELS:
        with OrtRunner(path, optimization=level) as runner:
            for feed, answer in zip(ref.feeds, ref.answers, strict=True):
                report.results.append(_check_feed(runner, feed, answer, level, atol, rtol))
    return report


def _check_feed(
    runner: OrtRunner, feed: Feed, answer: list[tuple[str, np.ndarray]], level: str, atol: float, rtol: float
) -> FeedResult:
    got = list(runner.infer(feed.arrays).items())
    if len(got) != len(answer):
        return FeedResult(
            feed.label, feed.sizes, level, [], False, f"{len(got)} outputs from ONNX, {len(answer)} from PyTorch"
        )
    diffs = [
        compare(name, expected, actual, atol, rtol) for (name, expected), (_, actual) in zip(answer, got, strict=True)
    ]
    bad = next((d for d in diffs if not d.passed), None)
    return FeedResult(
        feed.label, feed.sizes, level, diffs, bad is None, f"output '{bad.name}': {bad.why}" if bad else ""
    )
