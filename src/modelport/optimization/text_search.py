"""``optimize`` for a generation bundle: weight-only int8/int4 candidates and runtimes (the table and the
builds in ``text_candidates``), each judged on text against fp32 PyTorch (``verification.text_quality``)
and timed decoding; the fastest within the budget is written as a generation bundle.

Each candidate is built into a bundle folder of its own (the source bundle's tokenizer and manifest, its
own ``model.onnx`` with external data), loaded as a ``LanguageModel`` on its backend, scored on the search
half of the text and on the held-out half, continued greedily from a few prompts, and timed: ``ROUNDS``
generations of ``TIMING_NEW`` tokens from a ``TIMING_PROMPT``-token prompt (end-of-sequence ignored), the
median decode tokens/s and time to first token. Only one candidate is loaded at a time (a >2 GB model is
never held twice). The choice: the fastest whose search figures meet the budget and whose held-out
figures confirm it; every candidate is listed with its figures either way.
"""

from __future__ import annotations

import shutil
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from modelport import bundle as bundles
from modelport.bundle import MODEL_FILE, Bundle
from modelport.errors import ModelportError, UsageError, first_line
from modelport.generation.api import load_generator
from modelport.generation.base import pad_token_id
from modelport.generation.layout import DecoderLayout
from modelport.generation.model import LanguageModel
from modelport.optimization.recipes import Context
from modelport.optimization.text_candidates import (
    CALIBRATION_CHUNKS,
    PLAN,
    RUNNER_OPTIONS,
    TEXT_CANDIDATES,
    TextRecipe,
    calibration_feeds,
    weight_bytes,
)
from modelport.optimization.text_data import GREEDY_NEW, Reference, TextData
from modelport.verification.text_quality import TextBudget, TextScore, score_texts

__all__ = ["TextCandidate", "TextSearch", "text_plan", "search_text", "TEXT_CANDIDATES"]

TIMING_PROMPT = 64
TIMING_NEW = 32
ROUNDS = 3
SAME_SPEED = 0.95  # decode rates within 5% of the fastest are a tie, broken by the time to the first token


@dataclass
class TextCandidate:
    name: str
    backend: str
    precision: str
    steps: list[str]
    recipe: TextRecipe | None = None
    options: dict[str, Any] = field(default_factory=dict)  # how the runtime runs it (RUNNER_OPTIONS)
    skipped: str = ""
    folder: Path | None = None  # its bundle, once built
    build_s: float = 0.0
    weight_bytes: int | None = None
    search: TextScore | None = None
    held_out: TextScore | None = None
    greedy: float | None = None
    tokens_per_s: float | None = None
    ttft_ms: float | None = None
    runs_as: str | None = None  # what the runtime says it computes in (OpenVINO's inference precision)
    error: str = ""
    eligible: bool = True  # False: measured as the baseline only (not among the candidates asked for)

    def verdict(self, budget: TextBudget) -> str:
        """``within``, or why not, in words."""
        if self.skipped:
            return f"skipped: {self.skipped}"
        if self.error:
            return f"failed: {self.error}"
        assert self.search is not None and self.held_out is not None
        if not self.eligible:
            return "baseline (not asked for)"
        misses = self.search.misses(budget)
        if misses:
            return "outside the budget: " + "; ".join(misses)
        held = self.held_out.misses(budget)
        return "outside the budget on held-out text: " + "; ".join(held) if held else "within"

    def to_json(self, budget: TextBudget) -> dict[str, Any]:
        return {
            "name": self.name,
            "backend": self.backend,
            "precision": self.precision,
            "steps": self.steps,
            **({"runner_options": self.options} if self.options else {}),
            "verdict": self.verdict(budget),
            "search": self.search.to_json() if self.search else None,
            "held_out": self.held_out.to_json() if self.held_out else None,
            "greedy": self.greedy,
            "decode_tokens_per_s": _round(self.tokens_per_s),
            "ttft_ms": _round(self.ttft_ms),
            "runs_as": self.runs_as,
            "weight_bytes": self.weight_bytes,
            "build_s": round(self.build_s, 2),
        }


@dataclass
class TextSearch:
    budget: TextBudget
    data: TextData
    threads: int
    candidates: list[TextCandidate] = field(default_factory=list)
    chosen: TextCandidate | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def baseline(self) -> TextCandidate | None:
        return next((c for c in self.candidates if c.name == "fp32" and c.tokens_per_s), None)

    def speedup(self, candidate: TextCandidate) -> float | None:
        base = self.baseline
        if base is None or not candidate.tokens_per_s or not base.tokens_per_s:
            return None
        return candidate.tokens_per_s / base.tokens_per_s


def text_plan(
    only: list[str] | None = None, *, precision: str = "auto", openvino: bool = True, bf16: bool = True
) -> list[TextCandidate]:
    """The candidates ``only`` names (default: all) of ``precision`` ("auto": any); fp32 on ONNX Runtime is
    always measured, as the baseline the speed-ups are against, and chosen only if it was asked for.
    ``openvino``/``bf16``: whether OpenVINO is installed and this CPU computes in bf16 (else skipped)."""
    unknown = [n for n in only or [] if n not in PLAN]
    if unknown:
        raise UsageError(f"no generation candidate {', '.join(unknown)}", f"choose from: {', '.join(TEXT_CANDIDATES)}")
    out = []
    for name, (backend, recipe, kind) in PLAN.items():
        options = RUNNER_OPTIONS.get(name, {})
        steps = ["as exported"] + ([recipe.words()] if recipe else [])
        steps += ["on OpenVINO"] if backend.startswith("openvino") else []
        steps += ["the KV cache kept in OpenVINO's state"] if options.get("stateful") else []
        steps += [f"asking for a {options['kv_cache_precision']} KV cache"] if "kv_cache_precision" in options else []
        steps += [f"prompt passes on {options['prefill']}"] if "prefill" in options else []
        runtimes = {backend, str(options.get("prefill", backend))}
        skipped = ""
        if any(r.startswith("openvino") for r in runtimes) and not openvino:
            skipped = "OpenVINO is not installed"
        elif "openvino:bf16" in runtimes and not bf16:
            skipped = "this CPU has no bf16 instructions (AVX512-BF16 or AMX): OpenVINO would compute in fp32"
        asked = (only is None or name in only) and precision in ("auto", kind)
        if asked or name == "fp32":
            out.append(TextCandidate(name, backend, kind, steps, recipe, dict(options), skipped, eligible=asked))
    return out


def search_text(
    source: Bundle,
    work: Path,
    candidates: list[TextCandidate],
    budget: TextBudget,
    data: TextData,
    reference: Reference,
    *,
    threads: int,
    say: Callable[[str, float], None],
) -> TextSearch:
    result = TextSearch(budget, data, threads, candidates)
    for index, c in enumerate(candidates):
        if c.skipped:
            continue
        say(f"{c.name}: building", index / len(candidates))
        try:
            build_candidate(c, source, work, data)
            say(f"{c.name}: measuring", (index + 0.5) / len(candidates))
            _measure(c, reference, data, threads)
        except ModelportError as exc:
            c.error = exc.one_line()
        except Exception as exc:  # a quantizer or runtime that cannot handle this graph: the candidate fails
            c.error = f"{type(exc).__name__}: {first_line(exc)}"
        best = _best(candidates, budget)
        for other in candidates:  # only the best so far keeps its files: a big model's candidates add up
            if other is not best and other.folder is not None and other.folder.parent == work:
                shutil.rmtree(other.folder, ignore_errors=True)
                other.folder = None
    result.chosen = _best(candidates, budget)
    if result.chosen is not None and result.chosen.recipe is None and result.chosen.name == "fp32":
        result.notes.append(
            "no compressed candidate was both faster than fp32 and within the budget: the fp32 graph is kept"
        )
    return result


def _best(candidates: list[TextCandidate], budget: TextBudget) -> TextCandidate | None:
    """The fastest-decoding candidate asked for whose figures are within ``budget``; among those within
    ``SAME_SPEED`` of it (as alike as two timings of one candidate), the quickest to its first token."""
    within = [c for c in candidates if c.eligible and c.tokens_per_s and c.verdict(budget) == "within"]
    if not within:
        return None
    fastest = max(c.tokens_per_s or 0.0 for c in within)
    alike = [c for c in within if (c.tokens_per_s or 0.0) >= SAME_SPEED * fastest]
    return min(alike, key=lambda c: (c.ttft_ms if c.ttft_ms is not None else float("inf"), -(c.tokens_per_s or 0.0)))


def _measure(c: TextCandidate, reference: Reference, data: TextData, threads: int) -> None:
    assert c.folder is not None
    with load_generator(c.folder, c.backend, threads=threads, **c.options) as lm:
        c.search = score_texts(reference.search, [lm.logits(t) for t in data.search], data.search)
        c.held_out = score_texts(reference.held_out, [lm.logits(t) for t in data.held_out], data.held_out)
        ours = [g.token_ids for g in lm.generate(reference.prompts, max_new_tokens=GREEDY_NEW, ignore_eos=True)]
        c.greedy = _agreement(ours, reference.greedy)
        c.held_out.greedy = c.greedy
        c.tokens_per_s, c.ttft_ms = _time(lm, data)
        described = lm.describe()
        c.runs_as = described.get("inference_precision")
        held = described.get("kv_cache_held_as")
        if held and c.options.get("kv_cache_precision"):  # what the runtime really stores, whatever was asked
            c.runs_as = f"{c.runs_as}, KV cache {held}"


def _time(lm: LanguageModel, data: TextData) -> tuple[float, float]:
    pool = [t for chunk in data.search for t in chunk]
    prompt = [pool[i % len(pool)] for i in range(min(TIMING_PROMPT, lm.layout.max_context - TIMING_NEW - 1))]
    lm.generate([prompt], max_new_tokens=4, ignore_eos=True)  # warm-up
    rates, firsts = [], []
    for _ in range(ROUNDS):
        out = lm.generate([prompt], max_new_tokens=TIMING_NEW, ignore_eos=True)[0]
        rates.append(out.decode_tokens_per_s or 0.0)
        firsts.append(out.time_to_first_token_s * 1e3)
    return statistics.median(rates), statistics.median(firsts)


def _agreement(ours: list[list[int]], theirs: list[list[int]]) -> float:
    """The mean fraction of tokens generated before the first that differs."""
    fractions = []
    for a, b in zip(ours, theirs, strict=True):
        same = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
        fractions.append(same / max(len(b), 1))
    return float(np.mean(fractions)) if fractions else 1.0


def _round(value: float | None) -> float | None:
    return round(value, 2) if value is not None else None


def build_candidate(c: TextCandidate, source: Bundle, work: Path, data: TextData) -> None:
    """``c``'s bundle folder under ``work`` (the source's own for the exported graph): the source's
    tokenizer and generation config, its model file built by the recipe, and a manifest listing them."""
    if c.recipe is None:
        c.folder = source.path
        c.weight_bytes = weight_bytes(source.path)
        return
    start = time.perf_counter()
    folder = work / c.name
    folder.mkdir(parents=True)
    for file in source.path.iterdir():  # the tokenizer, generation_config.json: everything but the graph
        if file.is_file() and file.name != bundles.MANIFEST and not file.name.startswith(MODEL_FILE):
            shutil.copyfile(file, folder / file.name)
    context = Context()
    if c.recipe.calibrated:
        info = source.manifest["generation"]
        layout, pad = DecoderLayout.from_json(info["layout"]), pad_token_id(info)
        feeds = calibration_feeds(layout, data.search[:CALIBRATION_CHUNKS], pad)
        context = Context(calibration=feeds)
    c.recipe.build(source.model_path, folder / MODEL_FILE, context)
    manifest = dict(source.manifest)
    manifest["files"] = bundles.file_table(folder)
    bundles.write_manifest(folder, manifest)
    c.folder = folder
    c.build_s = time.perf_counter() - start
    c.weight_bytes = weight_bytes(folder)
