"""``verify`` of a generation bundle written by ``optimize``: its compressed model no longer generates
exactly PyTorch's tokens, so it is held to the text budget it was chosen under instead, re-measured on the
held-out token chunks the bundle carries against fp32 PyTorch (the folder it records, or ``model``)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modelport.bundle import Bundle
from modelport.errors import ParityError, UsageError
from modelport.verification.generation import reference_model
from modelport.verification.text_quality import TextBudget, TextScore, score_texts

__all__ = ["TextVerifyReport", "verify_text", "HELD_OUT_TOKENS", "held_out_tokens", "pytorch_logits"]

HELD_OUT_TOKENS = "held-out-tokens.json"


@dataclass
class TextVerifyReport:
    backend: str
    budget: TextBudget
    score: TextScore
    recorded: TextScore | None  # what optimize measured on the same chunks

    @property
    def passed(self) -> bool:
        return self.score.within(self.budget)

    def summary(self) -> str:
        was = f" (at optimize: {self.recorded.summary()})" if self.recorded else ""
        verdict = "within" if self.passed else "outside: " + "; ".join(self.score.misses(self.budget))
        return f"{self.backend} against fp32 PyTorch on held-out text: {self.score.summary()}{was}; {verdict} " \
               f"the budget {self.budget.text}"  # fmt: skip

    def raise_if_failed(self) -> None:
        if not self.passed:
            raise ParityError(
                f"the bundle is outside its budget {self.budget.text}: {'; '.join(self.score.misses(self.budget))}",
                "re-run modelport optimize on the bundle export wrote",
                report=self,
            )

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.passed,
            "backend": self.backend,
            "budget": self.budget.text,
            "held_out": self.score.to_json(),
            "recorded": self.recorded.to_json() if self.recorded else None,
        }


def verify_text(
    bundle: Bundle, model: Any = None, *, backend: str | None = None, threads: int | None = None, progress: Any = None
) -> TextVerifyReport:
    from modelport.generation.api import load_generator

    say = progress or (lambda _msg: None)
    entry = bundle.optimization or {}
    budget = TextBudget.parse(entry.get("budget"))
    chunks = held_out_tokens(bundle)
    reference = reference_model(bundle, model, say)
    say("fp32 PyTorch on the held-out text")
    want = pytorch_logits(reference, chunks)
    with load_generator(bundle, backend, threads=threads) as lm:
        say(f"{lm.name} on the held-out text")
        got = [lm.logits(c) for c in chunks]
        name = lm.name
    recorded = TextScore.from_json(entry["held_out"]) if isinstance(entry.get("held_out"), dict) else None
    report = TextVerifyReport(name, budget, score_texts(want, got, chunks), recorded)
    report.raise_if_failed()
    return report


def held_out_tokens(bundle: Bundle) -> list[list[int]]:
    """The held-out chunks an optimized generation bundle was judged on (token ids, each checked)."""
    path = Path(bundle.path) / HELD_OUT_TOKENS
    try:
        chunks = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path} cannot be read ({type(exc).__name__})", "re-run modelport optimize") from None
    good = isinstance(chunks, list) and bool(chunks) and all(
        isinstance(c, list) and len(c) >= 2 and all(isinstance(t, int) and not isinstance(t, bool) for t in c)
        for c in chunks
    )  # fmt: skip
    if not good:
        raise UsageError(f"{path} is not a list of token-id lists", "re-run modelport optimize")
    return chunks


def pytorch_logits(model: Any, chunks: Sequence[Sequence[int]]) -> list[np.ndarray]:
    """fp32 PyTorch's logits at every position of each chunk, fed whole."""
    import torch

    out = []
    with torch.no_grad():
        for ids in chunks:
            batch = torch.tensor([list(ids)], dtype=torch.int64)
            out.append(model(input_ids=batch, attention_mask=torch.ones_like(batch)).logits[0].float().numpy())
    return out
