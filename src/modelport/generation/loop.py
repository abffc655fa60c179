"""The decode loop: prompts in, tokens out, one step at a time for a left-padded batch.

``decode(cache, prompts, decoding, ...)`` is a generator: it yields a ``TokenEvent`` as each new token is
chosen and returns one ``Generation`` per prompt. Prompts of different lengths share one batch, left
padded: the mask hides the padding and each row's positions count its own tokens only, so a row gets
the tokens it gets alone (``verify`` checks exactly that). A row that finished keeps stepping with a
pad token until the batch is done; its results stop where it finished.

``Continuation`` is one prompt's side of it (its new tokens, its text, its stop), shared with the
continuous-batching ``scheduler``, where rows come and go between steps.

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
from modelport.generation.layout import DecoderLayout
from modelport.generation.sampling import Decoding, Forcing, next_tokens

__all__ = ["Generation", "TokenEvent", "Continuation", "decode", "batch_feed", "check_prompt", "room_for"]

Detokenize = Callable[[list[int]], str]


@dataclass
class Generation:
    """What one prompt generated: the new tokens only, never the prompt's."""

    token_ids: list[int]
    finish_reason: str  # "stop" (eos or a stop string) | "length" (max_new_tokens or the context) | "abort"
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


def check_prompt(prompt: Sequence[int], layout: DecoderLayout, index: int = 0) -> None:
    """``UsageError`` for a prompt that leaves no room in the model's context for one new token."""
    if len(prompt) >= layout.max_context:
        raise UsageError(
            f"prompt {index} is {len(prompt)} tokens; the model's maximum context is {layout.max_context}",
            f"shorten it to at most {layout.max_context - 1} tokens",
        )


def room_for(prompt: Sequence[int], asked: int | None, layout: DecoderLayout) -> int:
    """The new tokens a server grants: ``asked``, or (None) what the context leaves; ``UsageError`` naming both
    numbers when the prompt and ``asked`` do not fit (a server refuses rather than cutting silently)."""
    room = layout.max_context - len(prompt)
    if asked is None:
        if room < 1:
            raise UsageError(
                f"the prompt is {len(prompt)} tokens; this model's context is {layout.max_context}",
                "shorten the prompt",
            )
        return room
    if len(prompt) + asked > layout.max_context:
        raise UsageError(
            f"the prompt ({len(prompt)} tokens) and max_tokens ({asked}) add up to {len(prompt) + asked}, over "
            f"this model's context of {layout.max_context} tokens",
            "shorten the prompt or lower max_tokens",
        )
    return asked


class Continuation:
    """One prompt's new tokens, its text so far and why it stopped (``done``), token by token."""

    def __init__(
        self,
        prompt: Sequence[int],
        decoding: Decoding,
        layout: DecoderLayout,
        eos_ids: Sequence[int] = (),
        detokenize: Detokenize | None = None,
    ) -> None:
        self.prompt = list(prompt)
        self.decoding = decoding
        # its own room: its positions count its own tokens, whatever the padding of the batch
        self.limit = min(decoding.max_new_tokens, layout.max_context - len(self.prompt))
        self.notices = (
            [
                f"max_new_tokens {decoding.max_new_tokens} cut to {self.limit}: the prompt ({len(self.prompt)} "
                f"tokens) and the new tokens must fit the maximum context of {layout.max_context}"
            ]
            if self.limit < decoding.max_new_tokens
            else []
        )
        self.eos = set() if decoding.ignore_eos else set(eos_ids)
        self.detokenize = detokenize
        self.hold = max((len(s) for s in decoding.stop), default=1) - 1  # a stop string may be starting at the end
        self.rng = np.random.default_rng(decoding.seed)
        self.new: list[int] = []
        self.text = ""
        self.shown = 0  # characters of text already handed out
        self.done: str | None = None
        self.first_at: float | None = None

    @property
    def history(self) -> list[int]:
        return self.prompt + self.new

    def add(self, token: int) -> str:
        """Take the next token; the text it lets out (held back: half a character, a stop string's start)."""
        if self.first_at is None:
            self.first_at = time.perf_counter()
        self.new.append(token)
        if self.detokenize is not None:
            self.text = self.detokenize(self.new)
            cut = _stop_at(self.text, self.decoding.stop, self.shown)
            if cut is not None:
                self.text, self.done = self.text[:cut], "stop"
        if token in self.eos:
            self.done = "stop"
        elif self.done is None and len(self.new) == self.limit:
            self.done = "length"
        ready = len(self.text) if self.done else _safe_end(self.text, self.hold)
        piece = self.text[self.shown : ready] if ready > self.shown else ""
        self.shown = max(self.shown, ready)
        return piece

    def result(self, started: float, ended: float, reason: str | None = None) -> Generation:
        """The ``Generation``: first-token time from ``started``, decode rate up to ``ended``."""
        first = self.first_at if self.first_at is not None else ended
        count = len(self.new)
        rate = (count - 1) / (ended - first) if count > 1 and ended > first else None
        return Generation(
            list(self.new),
            reason or self.done or "length",
            len(self.prompt),
            self.text if self.detokenize is not None else None,
            first - started,
            rate,
            list(self.notices),
        )


def decode(
    cache: StepCache,
    prompts: Sequence[Sequence[int]],
    decoding: Decoding,
    *,
    eos_ids: Sequence[int] = (),
    pad_id: int = 0,
    detokenize: Detokenize | None = None,
    forcing: Forcing | None = None,
    fixed: dict[str, np.ndarray] | None = None,
) -> Generator[TokenEvent, None, list[Generation]]:
    """``forcing``: the model's own token rules (suppressed or forced ids; an encoder-decoder's generation
    config), applied to the logits before ``decoding``'s. ``fixed``: inputs every step reads unchanged (an
    encoder-decoder's cross-attention keys/values and encoder mask), held by the cache for this batch."""
    layout = cache.layout
    longest = max(range(len(prompts)), key=lambda i: len(prompts[i]))
    check_prompt(prompts[longest], layout, longest)
    rows = [Continuation(p, decoding, layout, eos_ids, detokenize) for p in prompts]
    steps = max(r.limit for r in rows)
    rng = np.random.default_rng(decoding.seed)  # one generator for the batch: a seed gives the batch's tokens

    start = time.perf_counter()
    cache.start(len(rows))
    if fixed:
        cache.hold(fixed)
    feed = batch_feed(prompts, pad_id, layout.position_ids)
    mask, positions = feed["attention_mask"], feed["attention_mask"].sum(-1)
    for step in range(steps):
        interrupts.check()
        logits = cache.step(feed)[:, -1, :]
        if forcing is not None:
            logits = forcing.apply(logits, step, steps)
        chosen = next_tokens(logits, [r.history for r in rows], decoding, rng)
        for index, row in enumerate(rows):
            if row.done is None:
                token = int(chosen[index])
                yield TokenEvent(index, token, row.add(token))
        if all(r.done is not None for r in rows):
            break
        step_ids = np.array([[int(c) if r.done is None else pad_id] for c, r in zip(chosen, rows, strict=True)])
        mask = np.concatenate([mask, np.ones((len(rows), 1), np.int64)], axis=1)
        feed = {"input_ids": step_ids.astype(np.int64), "attention_mask": mask}
        if layout.position_ids:
            feed["position_ids"] = positions[:, None].astype(np.int64)
        positions = positions + 1
    end = time.perf_counter()
    first = min((r.first_at for r in rows if r.first_at is not None), default=end)
    results = []
    for row in rows:
        row.first_at = first  # one batch: its first tokens came in one pass
        results.append(row.result(start, end))
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
