"""How the next token is chosen: decoding options and the logits processors, after transformers'.

``Decoding`` holds the options (checked once); ``next_tokens`` applies them in transformers' order —
repetition penalty, then temperature, top-k and top-p — and picks greedily (temperature 0, the
default) or by sampling from one seeded numpy generator, so a seed gives the same tokens every run.
Each processor is a function of a ``[batch, vocab]`` float array, testable alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from modelport.errors import UsageError

__all__ = ["Decoding", "Forcing", "next_tokens", "repetition_penalty", "top_k", "top_p"]


@dataclass(frozen=True)
class Decoding:
    """Options of one ``generate`` call; ``temperature == 0`` is greedy decoding."""

    max_new_tokens: int = 32
    temperature: float = 0.0
    top_k: int = 0  # 0: no top-k filter
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = field(default_factory=tuple)
    ignore_eos: bool = False  # generate max_new_tokens whatever comes (benchmarks, the checks of verify)

    def __post_init__(self) -> None:
        _check(
            isinstance(self.max_new_tokens, int) and self.max_new_tokens >= 1,
            "max_new_tokens",
            self.max_new_tokens,
            "an integer >= 1",
        )
        _check(_finite(self.temperature) and self.temperature >= 0, "temperature", self.temperature, "a number >= 0")
        _check(isinstance(self.top_k, int) and self.top_k >= 0, "top_k", self.top_k, "an integer >= 0")
        _check(_finite(self.top_p) and 0 < self.top_p <= 1, "top_p", self.top_p, "a number in (0, 1]")
        _check(
            _finite(self.repetition_penalty) and self.repetition_penalty > 0,
            "repetition_penalty",
            self.repetition_penalty,
            "a number > 0",
        )
        _check(
            self.seed is None or (isinstance(self.seed, int) and self.seed >= 0), "seed", self.seed, "an integer >= 0"
        )
        _check(all(isinstance(s, str) and s for s in self.stop), "stop", self.stop, "non-empty strings")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


@dataclass(frozen=True)
class Forcing:
    """Token rules a model's generation config sets, whatever the decoding options: transformers'
    ``SuppressTokens`` (never these ids; single-token ``bad_words_ids`` join them), ``SuppressTokensAtBegin``
    (not these as the first new token), ``ForcedBOS`` (this id first), ``ForcedEOS`` (end-of-sequence as the
    last token ``max_new_tokens`` allows) and ``MinLength`` / ``MinNewTokens`` (no ``eos`` id before new
    token ``min_eos_step``). -inf hides a token; a forced one scores 0 and every other -inf, as transformers
    does (of several forced end-of-sequence ids, greedy decoding picks the first)."""

    suppress: tuple[int, ...] = ()
    begin_suppress: tuple[int, ...] = ()
    forced_bos: int | None = None
    forced_eos: tuple[int, ...] = ()
    eos: tuple[int, ...] = ()
    min_eos_step: int = 0

    def __bool__(self) -> bool:
        hide_eos = bool(self.eos) and self.min_eos_step > 0
        return bool(self.suppress or self.begin_suppress or self.forced_bos is not None or self.forced_eos or hide_eos)

    def apply(self, scores: np.ndarray, step: int, steps: int) -> np.ndarray:
        """``scores`` [batch, vocab] at new token ``step`` (0 first) of ``steps``."""
        out = np.array(scores, np.float32)
        if self.suppress:
            out[:, list(self.suppress)] = -np.inf
        if step == 0 and self.begin_suppress:
            out[:, list(self.begin_suppress)] = -np.inf
        if step < self.min_eos_step and self.eos:
            out[:, list(self.eos)] = -np.inf
        forced = [self.forced_bos] if step == 0 and self.forced_bos is not None else None
        if step == steps - 1 and self.forced_eos:
            forced = list(self.forced_eos)
        if forced is not None:
            out[:] = -np.inf
            out[:, forced] = 0.0
        return out


def next_tokens(
    logits: np.ndarray, history: Sequence[Sequence[int]], decoding: Decoding, rng: np.random.Generator
) -> np.ndarray:
    """One token id per row of ``logits`` [batch, vocab]; ``history`` is each row's tokens so far."""
    scores = np.asarray(logits, np.float32)
    if decoding.repetition_penalty != 1.0:
        scores = repetition_penalty(scores, history, decoding.repetition_penalty)
    if decoding.greedy:
        return scores.argmax(axis=-1)
    scores = scores / decoding.temperature
    if decoding.top_k:
        scores = top_k(scores, decoding.top_k)
    if decoding.top_p < 1.0:
        scores = top_p(scores, decoding.top_p)
    probs = np.exp(scores.astype(np.float64) - scores.max(axis=-1, keepdims=True))
    probs /= probs.sum(axis=-1, keepdims=True)
    cumulative = np.cumsum(probs, axis=-1)
    draws = rng.random(len(probs))[:, None] * cumulative[:, -1:]
    return np.minimum((cumulative < draws).sum(axis=-1), probs.shape[-1] - 1)


def repetition_penalty(scores: np.ndarray, history: Sequence[Sequence[int]], penalty: float) -> np.ndarray:
    """transformers' (CTRL's) penalty: a token already seen has a positive score divided by ``penalty``,
    a negative one multiplied by it."""
    out = scores.copy()
    for row, seen in enumerate(history):
        ids = np.unique(np.asarray(seen, np.int64))
        if ids.size:
            picked = out[row, ids]
            out[row, ids] = np.where(picked < 0, picked * penalty, picked / penalty)
    return out


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Scores below each row's k-th highest become -inf."""
    if k >= scores.shape[-1]:
        return scores
    kth = np.partition(scores, -k, axis=-1)[:, -k][:, None]
    return np.where(scores < kth, -np.inf, scores)


def top_p(scores: np.ndarray, p: float) -> np.ndarray:
    """The smallest set of highest-probability tokens whose probabilities add up to at least ``p`` stays;
    the rest become -inf (the top token always stays)."""
    order = np.argsort(-scores, axis=-1, kind="stable")
    ranked = np.take_along_axis(scores, order, axis=-1).astype(np.float64)
    probs = np.exp(ranked - ranked[:, :1])
    probs /= probs.sum(axis=-1, keepdims=True)
    before = np.cumsum(probs, axis=-1) - probs  # probability mass ranked above each token
    drop_ranked = before >= p
    drop = np.zeros_like(drop_ranked)
    np.put_along_axis(drop, order, drop_ranked, axis=-1)
    return np.where(drop, -np.inf, scores)


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check(ok: bool, name: str, value: object, need: str) -> None:
    if not ok:
        flag = "--" + name.replace("_", "-")
        raise UsageError(f"{name} {value!r} is not {need}", f"pass {flag} as {need}")
