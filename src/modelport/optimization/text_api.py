"""``modelport.optimize`` on a generation bundle: the fastest weight-only int8/int4 candidate (or runtime, bf16)
whose next-token distributions stay within a ``TextBudget`` of fp32 PyTorch on the user's text.

The written bundle is the chosen candidate's: its ``model.onnx`` (+ external data), the source bundle's
tokenizer and generation config, ``held-out-tokens.json`` (the held-out chunks as token ids, which
``verify`` re-scores against PyTorch) and a manifest whose last ``optimizations`` entry holds the budget,
the search and held-out figures, the data they came from and every candidate's figures.
"""

from __future__ import annotations

import copy
import json
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from modelport import bundle as bundles
from modelport.bundle import Bundle
from modelport.errors import ParityError, UsageError
from modelport.generation.api import load_generator
from modelport.machine import physical_cores
from modelport.optimization.text_data import load_text_data, pytorch_reference
from modelport.optimization.text_search import TextSearch, search_text, text_plan
from modelport.options import check_threads
from modelport.runtime.openvino import cpu_has_bf16
from modelport.verification.generation import reference_model
from modelport.verification.text_quality import TextBudget
from modelport.verification.text_verify import HELD_OUT_TOKENS

__all__ = ["optimize_text", "TextOptimizeResult", "TEXT_PRECISIONS"]

TEXT_PRECISIONS = ("auto", "fp32", "bf16", "int8", "int4")


@dataclass
class TextOptimizeResult:
    bundle: Bundle | None  # None when nothing stayed within the budget (then optimize raised)
    search: TextSearch

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.bundle is not None, "bundle": str(self.bundle.path) if self.bundle else None,
                **text_entry(self.search)}  # fmt: skip


def optimize_text(
    source: Bundle,
    output: str | Path,
    *,
    budget: str | TextBudget | None = None,
    data: Any = None,
    candidates: list[str] | None = None,
    precision: str = "auto",
    threads: int | None = None,
    model: Any = None,
    progress: Callable[[str, float], None] | None = None,
) -> TextOptimizeResult:
    """See ``modelport.optimize``: ``budget`` a ``TextBudget`` or its text (``top1>=0.9,ppl<=1.05,kl<=0.05``,
    the default); ``data`` a text file or a list of strings; ``model`` the fp32 PyTorch reference (default:
    the folder the bundle records). Raises ``ParityError`` (with the figures) when nothing meets the budget."""
    parsed = TextBudget.parse(budget)
    if precision not in TEXT_PRECISIONS:
        raise UsageError(
            f"precision {precision!r} is not one for a generation bundle",
            f"choose one of: {', '.join(TEXT_PRECISIONS)}",
        )
    check_threads(threads)
    if source.optimization is not None:
        raise UsageError(
            f"{source.path} was already optimized ({source.optimization.get('candidate')})",
            "optimize the bundle `modelport export` wrote",
        )
    target = bundles.output_path(output)
    bundles.check_replaceable(target)
    threads = threads or physical_cores()
    say = progress or (lambda _text, _done: None)
    openvino = _has_openvino()
    plan = text_plan(candidates, precision=precision, openvino=openvino, bf16=openvino and cpu_has_bf16())
    if not any(c.eligible for c in plan):
        raise UsageError(f"no candidate has precision {precision}", f"choose one of: {', '.join(TEXT_PRECISIONS)}")
    torch_model = reference_model(source, model, lambda msg: say(msg, 0.0))
    with load_generator(source, "ort:cpu", threads=threads) as lm:
        found = load_text_data(lm, data)
        pad_id = lm.pad_id
    say("fp32 PyTorch on the text (the reference)", 0.0)
    reference = pytorch_reference(torch_model, found, pad_id)
    del torch_model
    with tempfile.TemporaryDirectory(prefix="modelport-optimize-") as tmp:
        result = search_text(source, Path(tmp), plan, parsed, found, reference, threads=threads, say=say)
        if not found.given:
            result.notes.append(
                "judged on built-in sentences, not your text: pass --data (a text file) for figures that mean "
                "something for what you generate"
            )
        if result.chosen is None:
            raise ParityError(
                f"no candidate stays within the budget {parsed.text} on the text",
                "loosen --budget (e.g. ppl<=1.10), pass more representative --data, or keep the fp32 bundle",
                report=TextOptimizeResult(None, result),
            )
        written = _write(result, source, target, found.held_out)
    say("done", 1.0)
    return TextOptimizeResult(written, result)


def _write(result: TextSearch, source: Bundle, target: Path, held_out: list[list[int]]) -> Bundle:
    chosen = result.chosen
    assert chosen is not None and chosen.folder is not None
    staging = bundles.staging_dir(target)
    try:
        for file in chosen.folder.iterdir():
            if file.is_file() and file.name != bundles.MANIFEST:
                shutil.copyfile(file, staging / file.name)
        (staging / HELD_OUT_TOKENS).write_text(json.dumps(held_out))
        manifest = copy.deepcopy(source.manifest)
        entry = {**text_entry(result), "held_out_file": HELD_OUT_TOKENS}
        manifest["optimizations"] = [*manifest.get("optimizations", []), entry]
        manifest["created"] = datetime.now(UTC).isoformat(timespec="seconds")
        return bundles.commit(staging, target, manifest)
    except BaseException:
        bundles.discard(staging)
        raise


def text_entry(result: TextSearch) -> dict[str, Any]:
    c = result.chosen
    return {
        "task": "text-generation",
        "candidate": c.name if c else None,
        "backend": c.backend if c else None,
        "threads": result.threads,
        "precision": c.precision if c else None,
        "steps": c.steps if c else [],
        "runner_options": c.options if c else {},
        "budget": result.budget.text,
        "reference": "fp32 PyTorch (transformers)",
        "data": result.data.describe(),
        "search": c.search.to_json() if c and c.search else None,
        "held_out": c.held_out.to_json() if c and c.held_out else None,
        "decode_tokens_per_s": c.tokens_per_s if c else None,
        "speedup_vs_fp32": result.speedup(c) if c else None,
        "candidates": [{**x.to_json(result.budget), "speedup_vs_fp32": result.speedup(x)} for x in result.candidates],
        "notes": result.notes,
    }


def _has_openvino() -> bool:
    import importlib.util

    return importlib.util.find_spec("openvino") is not None
