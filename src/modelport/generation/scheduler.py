"""Continuous batching: one decode step for every running sequence at once; new requests join between steps.

A ``Scheduler`` owns a ``LanguageModel``'s cache and one worker thread. Each turn of its loop:

1. requests cancelled since the last step leave the batch (their slot is free for this turn's admissions);
2. waiting requests are admitted first come, first served, while the batch has room (``max_running``) and
   their prompts fit this turn's prefill budget (``prefill_tokens``; the oldest is always admitted, however
   long, so nothing starves). They are prefilled together as one left-padded batch of their own, their
   first tokens chosen, and their caches merged into the running batch;
3. one decode step runs for every running sequence, each choosing its next token with its own options
   (greedy, or sampling from its own seeded generator); finished sequences leave.

The cache is the graph's own (past and present tensors, concatenated by attention), so the running batch
is kept **left padded**: a joining sequence's cache, or the running batch's, is padded on the left to the
longer of the two and the mask hides the padding (as ``decode`` pads prompts of different lengths, which
``verify`` checks gives each row its own tokens). When sequences leave, the columns no remaining row uses
are cut off, so the batch is never wider than its longest sequence. Slots of a preallocated cache would
save those copies but need a graph that writes its cache in place; the exported graphs concatenate.

Updates reach each request through its ``on_update`` callback, called on the worker thread.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from modelport.errors import ResourceError, UsageError, first_line
from modelport.generation.cache import StepCache
from modelport.generation.loop import Continuation, Generation, batch_feed, check_prompt
from modelport.generation.model import LanguageModel
from modelport.generation.sampling import Decoding, next_tokens

__all__ = ["Scheduler", "Ticket", "Update", "QueueFull"]


class QueueFull(ResourceError):
    """Every slot is taken and the queue is full: try again later."""


@dataclass(frozen=True)
class Update:
    """A request's news: a token and the text it lets out, or (last) its ``result`` or its ``error``."""

    token_id: int | None = None
    text: str = ""
    result: Generation | None = None
    error: str | None = None


class Ticket:
    """One submitted request: ``cancel()`` it; ``on_update`` hears its tokens and its end."""

    def __init__(self, scheduler: Scheduler, continuation: Continuation, on_update: Callable[[Update], None]) -> None:
        self._scheduler = scheduler
        self.continuation = continuation
        self.on_update = on_update
        self.arrived = time.perf_counter()
        self.cancelled = False
        self.ended = False

    def cancel(self) -> None:
        """Leave now if waiting, at the next step if running (a client gone): the result says ``abort``."""
        self._scheduler._cancel(self)

    def _token(self, token: int) -> None:
        self.on_update(Update(token, self.continuation.add(token)))

    def _end(self, reason: str | None = None, error: str | None = None) -> None:
        if not self.ended:
            self.ended = True
            result = self.continuation.result(self.arrived, time.perf_counter(), reason)
            self.on_update(Update(result=result, error=error))


class Scheduler:
    def __init__(
        self, lm: LanguageModel, *, max_running: int = 16, max_waiting: int = 256, prefill_tokens: int = 2048
    ) -> None:
        self.lm = lm
        self.layout = lm.layout
        self.max_running = max_running
        self.max_waiting = max_waiting
        self.prefill_tokens = prefill_tokens
        self._waiting: deque[Ticket] = deque()
        self._rows: list[Ticket] = []  # the running batch, in cache row order
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._cache: StepCache | None = None
        self._prefill: StepCache | None = None
        self._mask = np.zeros((0, 0), np.int64)  # [rows, cache width]: 0 over each row's left padding
        self._pending = np.zeros(0, np.int64)  # each row's last chosen token, fed at the next step
        self.steps = 0  # decode steps run (a batch of any size counts one)

    # -- from any thread ---------------------------------------------------------------------------
    @property
    def running(self) -> int:
        return len(self._rows)

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def start(self) -> Scheduler:
        self._cache = self.lm.new_cache()
        self._prefill = self.lm.new_cache()
        self._thread = threading.Thread(target=self._loop, name="modelport-scheduler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Finish nothing more: every running and waiting request ends with ``abort``."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def submit(
        self,
        prompt: Sequence[int],
        decoding: Decoding,
        on_update: Callable[[Update], None],
    ) -> Ticket:
        """Queue a prompt (token ids); ``UsageError`` if it leaves no room for a token, ``QueueFull``."""
        check_prompt(prompt, self.layout)
        detokenize = self.lm.detokenize if self.lm.has_tokenizer else None
        if decoding.stop and detokenize is None:
            raise UsageError("stop strings need the bundle's tokenizer, and it has none", "send no stop strings")
        ticket = Ticket(self, Continuation(prompt, decoding, self.layout, self.lm.eos_ids, detokenize), on_update)
        with self._cond:
            if self._stopping:
                raise QueueFull("the server is stopping", "send the request to another replica")
            if len(self._waiting) >= self.max_waiting:
                raise QueueFull(
                    f"{len(self._rows)} sequences are running and {len(self._waiting)} waiting, the most allowed",
                    "retry later, or raise the limit (--max-queue-size)",
                )
            self._waiting.append(ticket)
            self._cond.notify()
        return ticket

    def _cancel(self, ticket: Ticket) -> None:
        with self._cond:
            ticket.cancelled = True
            if ticket in self._waiting:
                self._waiting.remove(ticket)
                ticket._end("abort")

    # -- the worker thread -----------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._stopping and not self._waiting and not self._rows:
                    self._cond.wait()
                if self._stopping:
                    break
                admitted = self._admit()
            try:
                self._leave([i for i, t in enumerate(self._rows) if t.cancelled], "abort")
                if admitted:
                    self._join(admitted)
                if self._rows:
                    self._step()
            except Exception as exc:  # the runtime failed: every request in flight hears why, the batch restarts
                why = f"{type(exc).__name__}: {first_line(exc)}"
                for ticket in [*self._rows, *admitted]:
                    ticket._end("abort", why)
                self._reset()
        for ticket in [*self._rows, *self._waiting]:
            ticket._end("abort")
        self._waiting.clear()
        self._reset()

    def _admit(self) -> list[Ticket]:
        """Waiting requests that join now: first come first served, within the slots and the prefill budget."""
        admitted: list[Ticket] = []
        budget = self.prefill_tokens
        while self._waiting and len(self._rows) - self._cancelled() + len(admitted) < self.max_running:
            ticket = self._waiting[0]
            if ticket.cancelled:
                self._waiting.popleft()._end("abort")
                continue
            cost = len(ticket.continuation.prompt)
            if admitted and cost > budget:
                break
            admitted.append(self._waiting.popleft())
            budget -= cost
        return admitted

    def _cancelled(self) -> int:
        return sum(t.cancelled for t in self._rows)

    def _join(self, admitted: list[Ticket]) -> None:
        """Prefill ``admitted`` as one batch, choose their first tokens, merge the rest into the running batch."""
        assert self._prefill is not None and self._cache is not None
        prompts = [t.continuation.prompt for t in admitted]
        feed = batch_feed(prompts, self.lm.pad_id, self.layout.position_ids)
        self._prefill.start(len(admitted))
        logits = self._prefill.step(feed)[:, -1, :]
        tokens = self._choose(logits, admitted)
        keep = []
        for index, (ticket, token) in enumerate(zip(admitted, tokens, strict=True)):
            ticket._token(int(token))
            if ticket.continuation.done is None and not ticket.cancelled:
                keep.append(index)
            else:
                ticket._end("abort" if ticket.continuation.done is None else None)
        if not keep:
            return
        mask = feed["attention_mask"][keep]
        if not self._rows and len(keep) == len(admitted):  # nothing to merge with: the prefill cache runs on
            self._cache, self._prefill = self._prefill, self._cache
            self._mask = mask
        else:
            old, new = self._cache.arrays(), [a[keep] for a in self._prefill.arrays()]
            if not self._rows:
                old = [a[:0] for a in new]
                self._mask = self._mask[:0, :0]
            width = max(self._mask.shape[1], mask.shape[1])
            merged = [np.concatenate([_pad_left(a, width), _pad_left(b, width)]) for a, b in zip(old, new, strict=True)]
            self._cache.replace(merged)
            self._mask = np.concatenate([_pad_left(self._mask, width, axis=1), _pad_left(mask, width, axis=1)])
        self._rows += [admitted[i] for i in keep]
        self._pending = np.concatenate([self._pending, tokens[keep].astype(np.int64)])

    def _step(self) -> None:
        """One decode step for every running sequence; the finished ones leave."""
        assert self._cache is not None
        rows = len(self._rows)
        self._mask = np.concatenate([self._mask, np.ones((rows, 1), np.int64)], axis=1)
        feed = {"input_ids": self._pending[:, None], "attention_mask": self._mask}
        if self.layout.position_ids:
            feed["position_ids"] = (self._mask.sum(-1) - 1)[:, None]
        logits = self._cache.step(feed)[:, -1, :]
        self.steps += 1
        self._pending = self._choose(logits, self._rows).astype(np.int64)
        for ticket, token in zip(self._rows, self._pending, strict=True):
            ticket._token(int(token))
        self._leave([i for i, t in enumerate(self._rows) if t.continuation.done is not None], None)

    def _choose(self, logits: np.ndarray, tickets: list[Ticket]) -> np.ndarray:
        """Each row's next token with its own options; greedy rows in one argmax."""
        chosen = logits.argmax(axis=-1)
        for row, ticket in enumerate(tickets):
            c = ticket.continuation
            if not c.decoding.greedy or c.decoding.repetition_penalty != 1.0:
                chosen[row] = next_tokens(logits[row : row + 1], [c.history], c.decoding, c.rng)[0]
        return chosen

    def _leave(self, rows: list[int], reason: str | None) -> None:
        """Drop ``rows`` from the batch (ending their requests) and the columns nobody left uses."""
        if not rows:
            return
        assert self._cache is not None
        for row in rows:
            self._rows[row]._end(reason)
        keep = [i for i in range(len(self._rows)) if i not in set(rows)]
        self._rows = [self._rows[i] for i in keep]
        self._pending = self._pending[keep]
        if not keep:
            self._reset()
            return
        mask = self._mask[keep]
        used = np.flatnonzero(mask.any(axis=0))
        cut = int(used[0]) if used.size else mask.shape[1]
        self._mask = mask[:, cut:]
        self._cache.replace([a[keep][:, :, cut:] for a in self._cache.arrays()])

    def _reset(self) -> None:
        self._rows = []
        self._mask = np.zeros((0, 0), np.int64)
        self._pending = np.zeros(0, np.int64)


def _pad_left(array: np.ndarray, width: int, axis: int = 2) -> np.ndarray:
    """``array`` with zeros before its ``axis`` up to ``width`` (a cache along its positions, a mask along 1)."""
    missing = width - array.shape[axis]
    if missing <= 0:
        return array
    pad = [(0, 0)] * array.ndim
    pad[axis] = (missing, 0)
    return np.pad(array, pad)
