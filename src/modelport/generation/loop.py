"""The decode loop: prompts in, tokens out, one step at a time for a left-padded batch.

``decode(cache, prompts, decoding, ...)`` is a generator: it yields a ``TokenEvent`` as each new token is
chosen and returns one ``Generation`` per prompt. Prompts of different lengths share one batch, left
padded: the mask hides the padding and each row's positions count its own tokens only, so a row gets
the tokens it gets alone (``verify`` checks exactly that). A row that finished keeps stepping with a
pad token until the batch is done; its results stop where it finished.

Stops: an end-of-sequence id, a stop string (the text ends before it), ``max_new_tokens``, or the
model's maximum context (``finish_reason`` "length" with a notice).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from modelport import interrupts
from modelport.errors import UsageError
from modelport.generation.cache import StepCache
from modelport.generation.sampling import Decoding, next_tokens

__all__ = ["Generation", "TokenEvent", "decode", "batch_feed"]

Detokenize = Callable[[list[int]], str]


@dataclass
class Generation:
    """What one prompt generated: the new tokens only, never the prompt's."""

    token_ids: list[int]
    finish_reason: str  # "stop" (eos or a stop string) | "length" (max_new_tokens or the context)
    prompt_tokens: int
    text: str | None = None  # None without a tokenizer
    time_to_first_token_s: float = 0.0
    decode_tokens_per_s: float | None = None  # tokens after the first, per second of decoding
    notices: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["time_to_first_token_s"] = round(self.time_to_first_token_s, 5)
        if self.decode_tokens_per_s is not None:
            out["decode_tokens_per_s"] = round(self.decode_tokens_per_s, 2)
        return out


@dataclass(frozen=True)
class TokenEvent:
    """One new token of prompt ``index``; ``text`` is the text it adds (may be empty mid-character)."""

    index: int
    token_id: int
    text: str


def batch_feed(prompts: Sequence[Sequence[int]], pad_id: int, position_ids: bool) -> dict[str, np.ndarray]:
    """The prompt pass of a left-padded batch: ids, mask (0 over padding), positions counting real tokens."""
    width = max(len(p) for p in prompts)
    ids = np.full((len(prompts), width), pad_id, np.int64)
    mask = np.zeros((len(prompts), width), np.int64)
    for row, prompt in enumerate(prompts):
        ids[row, width - len(prompt) :] = prompt
        mask[row, width - len(prompt) :] = 1
    feed = {"input_ids": ids, "attention_mask": mask}
    if position_ids:
        feed["position_ids"] = np.clip(mask.cumsum(-1) - 1, 0, None)
    return feed


def decode(
    cache: StepCache,
    prompts: Sequence[Sequence[int]],
    decoding: Decoding,
    *,
    eos_ids: Sequence[int] = (),
    pad_id: int = 0,
    detokenize: Detokenize | None = None,
) -> Generator[TokenEvent, None, list[Generation]]:
    layout = cache.layout
    longest = max(range(len(prompts)), key=lambda i: len(prompts[i]))
    if len(prompts[longest]) >= layout.max_context:
        raise UsageError(
            f"prompt {longest} is {len(prompts[longest])} tokens; the model's maximum context is {layout.max_context}",
            f"shorten it to at most {layout.max_context - 1} tokens",
        )
    # each row has its own room: its positions count its own tokens, whatever the padding of the batch
    limits = [min(decoding.max_new_tokens, layout.max_context - len(p)) for p in prompts]
    steps = max(limits)
    notices = [
        [
            f"max_new_tokens {decoding.max_new_tokens} cut to {limit}: the prompt ({len(p)} tokens) and the new tokens "
            f"must fit the maximum context of {layout.max_context}"
        ]
        if limit < decoding.max_new_tokens
        else []
        for p, limit in zip(prompts, limits, strict=True)
    ]
    rng = np.random.default_rng(decoding.seed)
    rows = len(prompts)
    new: list[list[int]] = [[] for _ in range(rows)]
    texts = [""] * rows
    shown = [0] * rows  # characters of texts already yielded
    done: list[str | None] = [None] * rows
    eos = set() if decoding.ignore_eos else set(eos_ids)
    hold = max((len(s) for s in decoding.stop), default=1) - 1  # a stop string may be starting at the end

    start = time.perf_counter()
    first_at = None
    cache.start(rows)
    feed = batch_feed(prompts, pad_id, layout.position_ids)
    mask, positions = feed["attention_mask"], feed["attention_mask"].sum(-1)
    for _ in range(steps):
        interrupts.check()
        logits = cache.step(feed)[:, -1, :]
        history = [list(p) + n for p, n in zip(prompts, new, strict=True)]
        chosen = next_tokens(logits, history, decoding, rng)
        if first_at is None:
            first_at = time.perf_counter()
        for row in range(rows):
            if done[row] is not None:
                continue
            token = int(chosen[row])
            new[row].append(token)
            if detokenize is not None:
                texts[row] = detokenize(new[row])
                cut = _stop_at(texts[row], decoding.stop, shown[row])
                if cut is not None:
                    texts[row], done[row] = texts[row][:cut], "stop"
            if token in eos:
                done[row] = "stop"
            elif done[row] is None and len(new[row]) == limits[row]:
                done[row] = "length"
            ready = len(texts[row]) if done[row] else _safe_end(texts[row], hold)
            piece = texts[row][shown[row] : ready] if ready > shown[row] else ""
            shown[row] = max(shown[row], ready)
            yield TokenEvent(row, token, piece)
        if all(d is not None for d in done):
            break
        step_ids = np.array([[int(chosen[r]) if done[r] is None else pad_id] for r in range(rows)], np.int64)
        mask = np.concatenate([mask, np.ones((rows, 1), np.int64)], axis=1)
        feed = {"input_ids": step_ids, "attention_mask": mask}
        if layout.position_ids:
            feed["position_ids"] = positions[:, None].astype(np.int64)
        positions = positions + 1
    end = time.perf_counter()
    first = (first_at or end) - start
    results = []
    for row in range(rows):
        count = len(new[row])
        rate = (count - 1) / (end - (first_at or end)) if count > 1 and end > (first_at or end) else None
        results.append(
            Generation(
                new[row],
                done[row] or "length",
                len(prompts[row]),
                texts[row] if detokenize is not None else None,
                first,
                rate,
                notices[row],
            )
        )
    return results


def _stop_at(text: str, stops: Sequence[str], shown: int) -> int | None:
    """Where the earliest stop string starts in ``text`` (only text not yet shown can hold a new one)."""
    found = [i for s in stops if (i := text.find(s, max(0, shown - len(s)))) >= 0]
    return min(found) if found else None


def _safe_end(text: str, hold: int) -> int:
    """How much of ``text`` may be shown: not a half-decoded character, not a stop string's possible start."""
    end = len(text) - hold
    while end > 0 and text[end - 1] == "\ufffd":
        end -= 1
    return max(end, 0)
