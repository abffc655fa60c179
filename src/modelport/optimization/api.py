"""``modelport.optimize``: the fastest candidate that stays within the user's accuracy budget, written as a
bundle whose manifest records how it was made, what it was measured against, and how to run it.

The written bundle's ``model.onnx`` is the chosen candidate's graph, ``held-out.npz`` the held-out feeds
(up to 64 MiB of them) that ``verify`` re-checks it on; the manifest's last
``optimizations`` entry names the backend (and threads) that ``run``, ``load``, ``bench`` and ``verify``
use by default, the budget and the accuracy on the held-out feeds per output, every candidate's
accuracy and speed, and the drift ranking of those that broke the budget.
"""

from __future__ import annotations

import copy
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from modelport import bundle as bundles
from modelport.benchmark.shapes import shape_grid
from modelport.benchmark.timing import BenchConfig
from modelport.bundle import MODEL_FILE, Bundle
from modelport.deadline import DEFAULT_VERIFY_TIMEOUT
from modelport.errors import ModelportError, ParityError, UsageError
from modelport.exporting import as_bundle
from modelport.feeds import write_feed_set
from modelport.machine import physical_cores
from modelport.optimization.candidates import PRECISIONS, plan
from modelport.optimization.candidates import names as candidate_names
from modelport.optimization.data import DEFAULT_SEQ, load_data
from modelport.optimization.search import MAX_EXCLUSIONS, SEARCH_SECONDS, SearchResult, search, stage_rows
from modelport.options import check_threads, check_timeout
from modelport.runtime.base import Runner
from modelport.runtime.providers import cuda_usable
from modelport.runtime.registry import create
from modelport.sources.objects import as_loaded
from modelport.sources.recorded import trusted_source
from modelport.verification.budget import DEFAULT_BUDGET, Budget

__all__ = ["optimize", "OptimizeResult"]

Progress = Callable[[str, float], None]
HELD_OUT_FILE = "held-out.npz"  # the held-out feeds, so that `verify` re-checks on the data that judged
HELD_OUT_BYTES = 64 * 2**20
Reference = Callable[[Sequence[dict[str, np.ndarray]]], list[dict[str, np.ndarray]]]


@dataclass
class OptimizeResult:
    bundle: Bundle | None  # None when nothing stayed within the budget (then optimize raised)
    search: SearchResult

    def to_json(self) -> dict[str, Any]:
        entry = optimization_entry(self.search)
        return {"ok": self.bundle is not None, "bundle": str(self.bundle.path) if self.bundle else None, **entry}


def optimize(
    model: Any,
    output: str | Path,
    *,
    budget: str | Budget = DEFAULT_BUDGET,
    precision: str = "auto",
    data: Any = None,
    candidates: list[str] | str | None = None,
    seq: int = DEFAULT_SEQ,
    shape: list[str] | None = None,
    inputs: Any = None,
    dims: Any = None,
    threads: int | None = None,
    max_exclusions: int = MAX_EXCLUSIONS,
    search_seconds: float = SEARCH_SECONDS,
    timing: dict[str, Any] | None = None,
    progress: Progress | None = None,
    on_export: Callable[[str], None] | None = None,
) -> OptimizeResult:
    """Try every candidate (graph fusions, bf16, int8 dynamic/static, NNCF int8; ``precision`` narrows them),
    hold each to ``budget`` on ``data`` (its held-out half), and write the fastest that stays within it to
    ``output``. ``model``: a bundle, or anything ``export`` takes (exported and verified first). ``data``: a
    folder of ``.npz`` feeds, a text file of sentences, or a list of feeds or sentences; None: generated
    feeds at the example sizes or ``shape`` (``["seq=128"]``; real data is better). ``candidates`` names
    the ones to try (default: all ``precision`` allows).
    A generation bundle (``export --task text-generation``) gets the weight-only int8/int4 candidates
    instead, held to a text budget (``top1>=0.9,ppl<=1.05,kl<=0.05`` by default) on ``data`` (a text file or
    a list of strings): see ``optimization.text_api``; ``seq``, ``shape``, ``inputs``, ``dims`` and the
    exclusion search do not apply to it.
    Raises ``ParityError`` when no candidate stays within the budget."""
    only = [n.strip() for n in candidates.split(",")] if isinstance(candidates, str) else candidates
    generation = _generation_bundle(model)
    _refuse_seq2seq(model)
    if generation is not None:
        from modelport.optimization.text_api import optimize_text

        given = {"--seq": seq != DEFAULT_SEQ, "--shape": bool(shape), "--input": bool(inputs), "--dim": bool(dims),
                 "--max-exclusions": max_exclusions != MAX_EXCLUSIONS, "timing": bool(timing),
                 "--search-seconds": search_seconds != SEARCH_SECONDS}  # fmt: skip
        extra = [flag for flag, set_ in given.items() if set_]
        if extra:
            raise UsageError(f"{', '.join(extra)} do not apply to a generation bundle", "drop them")
        return optimize_text(  # type: ignore[return-value]
            generation, output, budget=None if budget == DEFAULT_BUDGET else budget, data=data, candidates=only,
            precision=precision, threads=threads, progress=progress,
        )  # fmt: skip
    parsed = Budget.parse(budget)
    if precision not in PRECISIONS:
        raise UsageError(f"unknown precision {precision!r}", f"choose one of: {', '.join(PRECISIONS)}")
    unknown = [n for n in only or [] if n not in candidate_names()]
    if unknown:
        raise UsageError(f"unknown candidate {unknown[0]!r}", f"candidates: {', '.join(candidate_names())}")
    check_threads(threads)
    if not isinstance(max_exclusions, int) or max_exclusions < 0:
        raise UsageError("max_exclusions is a count of nodes >= 0", "e.g. max_exclusions=16")
    check_timeout(search_seconds, "--search-seconds")
    target = bundles.output_path(output)
    bundles.check_replaceable(target)
    threads = threads or physical_cores()
    say = progress or (lambda _text, _done: None)
    with tempfile.TemporaryDirectory(prefix="modelport-optimize-") as tmp:
        work = Path(tmp)
        source = as_bundle(model, work / "exported", inputs, dims, on_export)
        if source.optimization is not None:
            raise UsageError(
                f"{source.path} was already optimized ({source.optimization.get('candidate')}); its model is no longer "
                "the export every candidate starts from",
                "optimize the bundle `modelport export` wrote",
            )
        sizes = shape_grid(source.signature, shape=shape)[0] if shape else None
        if sizes is not None and data is not None:
            raise UsageError("--shape sizes the generated feeds; --data brings its own", "drop --shape")
        found = load_data(data, source, seq=seq, sizes=sizes)
        notes: list[str] = []
        eager = _eager(source, model, threads, notes)
        reference, reference_name = _reference(source, eager, threads)
        transformer = any(s.dtype == "int64" for s in source.signature.inputs)
        gpu = cuda_usable()
        if gpu and eager is not None:
            notes.append("PyTorch eager runs on the CPU here: the CUDA candidates' speed-up is against CPU eager")
        result = search(
            source.model_path,
            work,
            plan(precision, transformer=transformer, gpu=gpu, only=only),
            parsed,
            found,
            reference,
            reference_name,
            threads=threads,
            eager=eager,
            transformer=transformer,
            max_exclusions=max_exclusions,
            search_seconds=search_seconds,
            timing=BenchConfig(**{"min_runs": 10, "min_seconds": 1.5, **(timing or {})}),
            progress=say,
        )
        result.notes += notes
        if found.generated:
            result.notes.append(
                "measured on generated feeds, not your data: pass --data (a folder of .npz feeds or a text file of "
                "sentences) for an accuracy that means something, above all for int8 calibration"
            )
        chosen = result.chosen
        if chosen is None:
            raise ParityError(
                f"no candidate stays within the budget {parsed.text} on the held-out data",
                "loosen --budget, pass more representative --data, or keep the fp32 bundle",
                report=OptimizeResult(None, result),
            )
        staging = bundles.staging_dir(target)
        try:
            shutil.copyfile(chosen.model, staging / MODEL_FILE)  # type: ignore[arg-type]
            kept = _fitting(found.held_out, HELD_OUT_BYTES)
            write_feed_set(staging / HELD_OUT_FILE, kept)
            manifest = copy.deepcopy(source.manifest)
            entry = {**optimization_entry(result), "held_out_file": HELD_OUT_FILE, "held_out_feeds": len(kept)}
            manifest["optimizations"] = [*manifest.get("optimizations", []), entry]
            manifest["created"] = datetime.now(UTC).isoformat(timespec="seconds")
            written = bundles.commit(staging, target, manifest)
        except BaseException:
            bundles.discard(staging)
            raise
    say("done", 1.0)
    return OptimizeResult(written, result)


def _generation_bundle(model: Any) -> Bundle | None:
    """``model`` opened, when it is a generation bundle."""
    from modelport.generation.model import is_generation

    if isinstance(model, (str, Path)) and Path(model).is_dir() and (Path(model) / bundles.MANIFEST).is_file():
        model = Bundle.open(model)
    return model if isinstance(model, Bundle) and is_generation(model) else None


def _refuse_seq2seq(model: Any) -> None:
    from modelport.generation.seq2seq import refuse_seq2seq

    if isinstance(model, (str, Path)) and Path(model).is_dir() and (Path(model) / bundles.MANIFEST).is_file():
        model = Bundle.open(model)
    refuse_seq2seq(model if isinstance(model, Bundle) else None, "optimize")


def _fitting(feeds: list[dict[str, np.ndarray]], limit: int) -> list[dict[str, np.ndarray]]:
    """The first feeds whose arrays fit in ``limit`` bytes (at least one)."""
    kept, total = [], 0
    for feed in feeds:
        total += sum(a.nbytes for a in feed.values())
        if kept and total > limit:
            break
        kept.append(feed)
    return kept


def optimization_entry(result: SearchResult) -> dict[str, Any]:
    chosen = result.chosen
    return {
        "candidate": chosen.name if chosen else None,
        "backend": chosen.backend if chosen else None,
        "threads": result.threads,
        "precision": chosen.precision if chosen else None,
        "steps": chosen.steps if chosen else [],
        "excluded": chosen.excluded if chosen else [],
        "budget": result.budget.text,
        "reference": result.reference,
        "data": result.data.describe(),
        "accuracy": [o.to_json() for o in chosen.accuracy] if chosen else [],
        "eager_p50_ms": result.eager_p50_ms,
        "speedup_vs_eager": result.speedup(chosen) if chosen else None,
        "stages": stage_rows(result),
        "candidates": [{**c.to_json(), "speedup_vs_eager": result.speedup(c)} for c in result.candidates],
        "notes": result.notes,
    }


def _eager(bundle: Bundle, model: Any, threads: int, notes: list[str]) -> Runner | None:
    """PyTorch eager on the source model: the object or MODEL the user passed, or the bundle's recorded source
    once ``trusted_source`` allows it; None when neither is available (the fp32 ONNX model is the reference)."""
    if isinstance(model, (str, Path)) and str(model).lower().endswith(".onnx"):
        return None  # imported from ONNX: the reference is the fp32 ONNX model
    if isinstance(model, Bundle) or (isinstance(model, (str, Path)) and Path(model).is_dir()):
        if not bundle.source:
            return None
        try:
            trusted_source(bundle.path, bundle.source, bundle.manifest["source"].get("sha256"))
            model = bundle.source
        except ModelportError as exc:
            notes.append(f"the recorded source is not used ({exc.message}); the reference is the fp32 ONNX model")
            return None
    return create("torch", bundle, threads=threads, model=as_loaded(model))


def _reference(bundle: Bundle, eager: Runner | None, threads: int) -> tuple[Reference, str]:
    runner = eager or create("ort:cpu", bundle, threads=threads)
    name = "PyTorch eager" if eager is not None else "the fp32 ONNX model"

    def answers(feeds: Sequence[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
        with runner:
            return [
                runner.infer(feed, timeout=DEFAULT_VERIFY_TIMEOUT, label=f"data feed {i + 1}")
                for i, feed in enumerate(feeds)
            ]

    return answers, name
