"""The search: build every candidate, hold each to the budget, time the ones that built, keep the fastest
that stays within the budget on data the search did not look at.

Decisions are made on the calibration feeds only (calibration ranges, which nodes stay in higher
precision); every candidate is then judged on the held-out feeds, and only a candidate within the
budget there can be chosen. A reduced-precision candidate outside the budget on the calibration feeds
gets its most sensitive nodes kept in higher precision and is rebuilt, 1 node, then 2, 4, 8... in
all, up to ``max_exclusions`` nodes or its share of ``search_seconds`` (split evenly among the
reduced-precision candidates still to come). int8 candidates take the nodes in the order of
``sensitivity.int8_sensitivity`` (each node quantized in isolation); fp16 ones by the drift they add
(``drift.rank_nodes``, re-ranked each time). The drift ranking of the first build is kept for the report.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from modelport.benchmark.machine import CpuClock
from modelport.benchmark.timing import BenchConfig, Slot, busy_note, timed_rounds
from modelport.errors import ModelportError, first_line
from modelport.optimization import passes
from modelport.optimization.candidates import Candidate
from modelport.optimization.data import Data
from modelport.optimization.drift import rank_nodes
from modelport.optimization.recipes import Context
from modelport.optimization.sensitivity import int8_sensitivity
from modelport.runtime.base import Runner
from modelport.runtime.registry import create
from modelport.verification.budget import Budget, OutputScore, score_outputs

__all__ = ["SearchResult", "search", "MAX_EXCLUSIONS"]

MAX_EXCLUSIONS = 16
SCREEN_FEEDS = 16  # calibration feeds each rebuild is screened on (all of them calibrate)
SEARCH_SECONDS = 600.0  # shared by the reduced-precision candidates for trading nodes for accuracy
REDUCED = ("int8", "fp16")  # precisions whose candidates may keep nodes in float
Answers = list[dict[str, np.ndarray]]
Progress = Callable[[str, float], None]


@dataclass
class SearchResult:
    budget: Budget
    data: Data
    reference: str  # "PyTorch eager" or "the fp32 ONNX model"
    candidates: list[Candidate]
    threads: int
    eager_p50_ms: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def chosen(self) -> Candidate | None:
        timed = [c for c in self.candidates if c.within and c.p50_ms is not None]
        return min(timed, key=lambda c: c.p50_ms or math.inf, default=None)

    def speedup(self, candidate: Candidate) -> float | None:
        if self.eager_p50_ms is None or candidate.p50_ms is None:
            return None
        return round(self.eager_p50_ms / candidate.p50_ms, 3)


def search(
    model: Path,
    workdir: Path,
    candidates: list[Candidate],
    budget: Budget,
    data: Data,
    reference: Callable[[Sequence[dict[str, np.ndarray]]], Answers],
    reference_name: str,
    *,
    threads: int,
    eager: Runner | None = None,
    transformer: bool = False,
    max_exclusions: int = MAX_EXCLUSIONS,
    search_seconds: float = SEARCH_SECONDS,
    timing: BenchConfig | None = None,
    progress: Progress | None = None,
) -> SearchResult:
    say = progress or (lambda _text, _done: None)
    result = SearchResult(budget, data, reference_name, candidates, threads)
    say("computing the reference answers", 0.0)
    want_screen = reference(data.calibration[:SCREEN_FEEDS])
    deadline = time.monotonic() + search_seconds
    want_held = reference(data.held_out)
    graphs = _Graphs(model, workdir)
    todo = [c for c in candidates if not c.skipped]
    for index, candidate in enumerate(todo):
        say(f"building {candidate.name}", 0.05 + 0.65 * index / max(1, len(todo)))
        builder = _Builder(candidate, graphs, data, budget, threads, transformer)
        reducible_left = sum(1 for c in todo[index:] if c.precision in REDUCED)
        share = max(0.0, deadline - time.monotonic()) / max(1, reducible_left)  # no candidate eats the others' time
        try:
            builder.build_within(want_screen, max_exclusions, time.monotonic() + share)
            candidate.accuracy = score_outputs(budget, want_held, builder.answers(data.held_out))
        except ModelportError as exc:
            candidate.failed = exc.message
        except Exception as exc:  # a pass or runtime that cannot handle this graph: the candidate fails, not the search
            candidate.failed = f"{type(exc).__name__}: {first_line(exc)}"[:300]
    if time.monotonic() > deadline:
        result.notes.append(
            f"the search used its {search_seconds:.0f} s (shared by the reduced-precision candidates) before every "
            "candidate was within the budget or at --max-exclusions; raise --search-seconds for a longer search"
        )
    say("timing the candidates", 0.7)
    _time(result, eager, timing or BenchConfig(min_runs=10, min_seconds=1.5), lambda f: say("timing", 0.7 + 0.3 * f))
    return result


class _Graphs:
    """The float graphs candidates start from, made once: the export with named nodes, and fused."""

    def __init__(self, model: Path, workdir: Path) -> None:
        self.workdir = workdir
        self._model = model
        self._made: dict[str, Path] = {}
        self._order: dict[str, list[str]] = {}

    def get(self, base: str) -> Path:
        if base not in self._made:
            path = self.workdir / f"{base}.onnx"
            if base == "onnx":
                passes.prepare(self._model, path)
            else:
                raw = self.workdir / "fused-raw.onnx"
                passes.ort_offline(self.get("onnx"), raw)
                passes.prepare(raw, path)
            self._made[base] = path
        return self._made[base]

    def quantizable(self, base: str) -> set[str]:
        """The nodes of graph ``base`` that int8 candidates quantize."""
        return {name for name, _ in passes.quantizable_nodes(self.get(base))}

    def sensitivity(self, base: str, feed: dict[str, np.ndarray]) -> list[str]:
        """The quantizable nodes of graph ``base``, most sensitive to int8 first (computed once)."""
        if base not in self._order:
            self._order[base] = int8_sensitivity(self.get(base), feed, self.quantizable(base))
        return self._order[base]


class _Builder:
    def __init__(
        self, candidate: Candidate, graphs: _Graphs, data: Data, budget: Budget, threads: int, transformer: bool
    ) -> None:
        self.c = candidate
        self.graphs = graphs
        self.data = data
        self.budget = budget
        self.threads = threads
        self.transformer = transformer

    def build_within(self, want: Answers, max_exclusions: int, deadline: float) -> None:
        """Build; while outside the budget on the screening feeds, keep the worst nodes in float and rebuild:
        1 node, then 2, 4, 8... in all (re-ranked each time), until within, ``max_exclusions`` or ``deadline``."""
        start = time.perf_counter()
        self._screen(want)
        float_model = self.graphs.get(self.c.base)
        feed = self.data.calibration[0]
        eligible: set[str] | None = None  # None: any node (fp16); int8: the quantizable ones
        if self.c.precision == "int8":
            eligible = self.graphs.quantizable(self.c.base)
        reducible = self.c.precision in REDUCED
        while reducible and not _within(self.c.screen):
            if not self.c.drift or eligible is None:  # the report's ranking; fp16's order of exclusion
                ranked = rank_nodes(float_model, self.c.model, feed, top=None)  # type: ignore[arg-type]
                self.c.drift = self.c.drift or ranked[:10]
            order = [d.node for d in ranked] if eligible is None else self.graphs.sensitivity(self.c.base, feed)
            room = min(max(1, len(self.c.excluded)), max_exclusions - len(self.c.excluded))
            worst = [n for n in order if n not in self.c.excluded and (eligible is None or n in eligible)]
            if room <= 0 or not worst or time.monotonic() > deadline:
                break
            self.c.excluded += worst[:room]
            self._screen(want)
        if eligible is not None and eligible <= set(self.c.excluded) and _within(self.c.screen):
            self.c.failed = "every quantizable node had to stay in float to meet the budget"
        self.c.build_s = time.perf_counter() - start

    def _screen(self, want: Answers) -> None:
        self._build()
        self.c.screen = score_outputs(self.budget, want, self.answers(self.data.calibration[:SCREEN_FEEDS]))

    def _build(self) -> None:
        c = self.c
        src = self.graphs.get(c.base)
        if c.recipe is None:
            c.model = src
            return
        dst = self.graphs.workdir / f"{c.name}.onnx"
        for stale in (dst, dst.with_name(dst.name + ".data")):
            stale.unlink(missing_ok=True)
        context = Context(
            exclude=tuple(c.excluded),
            calibration=self.data.calibration if c.recipe.calibrated else (),
            transformer=self.transformer and c.recipe.transformer,
        )
        c.recipe.build(src, dst, context)
        c.model = dst

    def answers(self, feeds: Sequence[dict[str, np.ndarray]]) -> Answers:
        with create(self.c.backend, self.c.model, threads=self.threads) as runner:  # type: ignore[arg-type]
            return [runner.infer(feed) for feed in feeds]


def _time(result: SearchResult, eager: Runner | None, config: BenchConfig, say: Callable[[float], None]) -> None:
    """Every candidate that built (within the budget or not: the table shows what the budget cost), and
    eager, in interleaved rounds on the first held-out feed."""
    feed = result.data.held_out[0]
    built = [c for c in result.candidates if c.model is not None and not c.failed]
    slots: list[Slot] = []
    owners: dict[str, Candidate] = {}
    try:
        if eager is not None:
            eager.load()
            slots.append(Slot("eager", eager))
        for c in built:
            runner = create(c.backend, c.model, threads=result.threads).load()  # type: ignore[arg-type]
            slots.append(Slot(c.name, runner))
            owners[c.name] = c
        for slot in slots:
            for _ in range(max(1, config.warmup)):
                slot.runner.infer(feed)
        clock = CpuClock().start()
        timed_rounds(slots, feed, config, say)
        if note := busy_note({"while": clock.others()}, result.threads):
            result.notes.append(note)
    finally:
        for slot in slots:
            slot.runner.close()
    for slot in slots:
        p50 = float(np.percentile([t * 1e3 for t in slot.times], 50)) if slot.times else None
        if slot.label == "eager":
            result.eager_p50_ms = p50
        else:
            owners[slot.label].p50_ms = round(p50, 3) if p50 is not None else None


def _within(scores: list[OutputScore]) -> bool:
    return all(o.within for o in scores)


def stage_rows(result: SearchResult) -> list[dict[str, Any]]:
    """Accuracy after each stage on the held-out feeds: the export, the fused graph, the chosen precision."""
    rows = []
    chosen = result.chosen
    for c in result.candidates:
        if c.name in ("onnx-fp32", "fused-fp32") or c is chosen:
            rows.append({"stage": c.name, "accuracy": [o.to_json() for o in c.accuracy]})
    return rows
