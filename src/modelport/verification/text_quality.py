"""How close a compressed language model stays to fp32 PyTorch on the user's text, and the budget it is held to.

Each text is fed whole (teacher forcing: the true tokens, never the model's own), and at every position
the two next-token distributions are compared:

``top1``   the fraction of positions where both pick the same most likely token;
``ppl``    perplexity of the text under the candidate over perplexity under PyTorch (1.0: no loss);
``kl``     mean KL(PyTorch || candidate) per token, in nats: how far the whole distribution moved.

Greedy continuations of a few prompts are compared token by token too (``greedy``: the mean fraction of
new tokens generated before the first that differs) and reported, not budgeted: one early flip of a
near-tie changes everything after it, so it is a symptom to look at rather than a measure to hold.

The defaults (``top1>=0.9,ppl<=1.05,kl<=0.05``): a perplexity 5% above fp32 is where weight quantization
stops being called lossless in practice (llama.cpp's 4-bit K-quants of 7 B models land at +2-5%, 8-bit at
+0.1%); a KL of 0.05 nats is about what those 4-bit files measure against fp16; and nine positions in ten
keeping their first choice is what such a KL leaves of greedy decoding. Small models lose more to the
same quantization than 7 B ones, so a small model meeting these is not given an easy pass.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from modelport.errors import UsageError

__all__ = ["TextBudget", "TextScore", "score_texts", "log_probs", "DEFAULT_TEXT_BUDGET"]

DEFAULT_TEXT_BUDGET = "top1>=0.9,ppl<=1.05,kl<=0.05"
_TERM = re.compile(r"^\s*(top1|ppl|kl)\s*(>=|<=)\s*([0-9.eE+-]+)\s*$")
_WAY = {"top1": ">=", "ppl": "<=", "kl": "<="}


@dataclass(frozen=True)
class TextBudget:
    top1: float = 0.9  # at least
    ppl: float = 1.05  # at most (ratio to fp32)
    kl: float = 0.05  # at most (nats per token)

    @classmethod
    def parse(cls, text: str | TextBudget | None) -> TextBudget:
        """``top1>=0.9,ppl<=1.05,kl<=0.05``; a term left out keeps its default."""
        if isinstance(text, TextBudget):
            return text
        if text is None:
            return cls()
        values: dict[str, float] = {}
        for term in text.split(","):
            match = _TERM.match(term)
            if match is None:
                raise UsageError(
                    f"cannot read the generation budget term {term.strip()!r}",
                    f"write e.g. {DEFAULT_TEXT_BUDGET} (next-token agreement, perplexity ratio, KL in nats)",
                )
            name, way, number = match.groups()
            said = term.strip()
            if way != _WAY[name]:
                raise UsageError(f"budget term {said!r} points the wrong way", f"write {name}{_WAY[name]}{number}")
            value = float(number) if _number(number) else math.nan
            good = {"top1": 0 < value <= 1, "ppl": 1 <= value < math.inf, "kl": 0 <= value < math.inf}[name]
            if not good:
                need = {"top1": "between 0 and 1", "ppl": "a ratio of at least 1", "kl": "a finite number >= 0"}[name]
                raise UsageError(f"budget term {said!r}: the limit must be {need}", f"e.g. {DEFAULT_TEXT_BUDGET}")
            values[name] = value
        return cls(**values)

    @property
    def text(self) -> str:
        return f"top1>={self.top1:g},ppl<={self.ppl:g},kl<={self.kl:g}"


@dataclass
class TextScore:
    top1: float
    ppl: float  # ratio to the reference
    kl: float
    tokens: int  # positions compared
    texts: int
    greedy: float | None = None  # mean fraction of greedy tokens before the first difference

    def misses(self, budget: TextBudget) -> list[str]:
        """What breaks ``budget``, in words (empty: within it)."""
        out = []
        if not self.top1 >= budget.top1:
            out.append(f"top1 {self.top1:.4f} < {budget.top1:g}")
        if not self.ppl <= budget.ppl:
            out.append(f"ppl ratio {self.ppl:.4f} > {budget.ppl:g}")
        if not self.kl <= budget.kl:
            out.append(f"kl {self.kl:.4f} > {budget.kl:g}")
        return out

    def within(self, budget: TextBudget) -> bool:
        return not self.misses(budget)

    def summary(self) -> str:
        greedy = f", greedy {self.greedy:.0%} before the first difference" if self.greedy is not None else ""
        return f"top1 {self.top1:.4f}, ppl x{self.ppl:.4f}, kl {self.kl:.4f} on {self.tokens} tokens{greedy}"

    def to_json(self) -> dict[str, Any]:
        return {
            "top1": _finite(self.top1),
            "ppl_ratio": _finite(self.ppl),
            "kl": _finite(self.kl),
            "tokens": self.tokens,
            "texts": self.texts,
            "greedy": self.greedy,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TextScore:
        nan = math.nan
        return cls(
            _read(data.get("top1"), nan), _read(data.get("ppl_ratio"), nan), _read(data.get("kl"), nan),
            int(data.get("tokens") or 0), int(data.get("texts") or 0), data.get("greedy"),
        )  # fmt: skip


def log_probs(logits: np.ndarray) -> np.ndarray:
    """log-softmax over the last axis, in float64."""
    z = logits.astype(np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def score_texts(
    reference: Sequence[np.ndarray], candidate: Sequence[np.ndarray], texts: Sequence[Sequence[int]]
) -> TextScore:
    """``reference``/``candidate``: per text, the log-probabilities (or logits) at every position
    ``[len(text), vocab]``; position i predicts token i + 1 of ``texts``."""
    agree = positions = 0
    nll_ref = nll_cand = kl = 0.0
    for ref, cand, ids in zip(reference, candidate, texts, strict=True):
        if ref.shape != cand.shape:
            raise ValueError(f"logits of shape {cand.shape} against {ref.shape}")
        p, q = log_probs(ref[:-1]), log_probs(cand[:-1])
        nexts = np.asarray(ids[1:], np.int64)
        if not len(nexts):
            continue
        rows = np.arange(len(nexts))
        agree += int(np.sum(p.argmax(-1) == q.argmax(-1)))
        nll_ref -= float(p[rows, nexts].sum())
        nll_cand -= float(q[rows, nexts].sum())
        kl += float(np.sum(np.exp(p) * (p - q)))
        positions += len(nexts)
    if not positions:
        raise UsageError("the texts give no token to predict (each needs at least two tokens)", "pass longer texts")
    if not math.isfinite(nll_cand):
        return TextScore(agree / positions, math.inf, math.inf, positions, len(texts))
    ppl = math.exp((nll_cand - nll_ref) / positions)
    return TextScore(agree / positions, ppl, max(kl / positions, 0.0), positions, len(texts))


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _read(value: Any, default: float) -> float:
    return float(value) if isinstance(value, (int, float)) else default
