"""Generation on a served bundle: the event loop's side of the continuous-batching ``Scheduler``.

``ServedGenerator`` wraps a generation bundle's runner (the one v2 ``infer`` runs too) in a
``LanguageModel`` and a ``Scheduler`` on its own worker thread; ``submit`` turns a request into a
``Stream`` of the scheduler's updates, delivered on the event loop. The OpenAI-compatible routes and
Triton's generate extension both go through it, and so do the vLLM-named metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from modelport.errors import UsageError
from modelport.generation.loop import Generation, room_for
from modelport.generation.model import LanguageModel
from modelport.generation.sampling import Decoding
from modelport.generation.scheduler import QueueFull, Scheduler, Ticket, Update
from modelport.serving.metrics import GenerationMetrics
from modelport.serving.models import ServedModel
from modelport.serving.protocol import ClientError

if TYPE_CHECKING:
    from fastapi import Request

__all__ = ["ServedGenerator", "Stream", "decoding_from", "answer_when_done", "request_json", "RETRY_AFTER_S"]

RETRY_AFTER_S = 1  # what a 429 tells the client to wait


class Stream:
    """One request's updates as they come (``async for update in stream``); ``cancel()`` frees its slot."""

    def __init__(self, name: str, metrics: GenerationMetrics) -> None:
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[Update] = asyncio.Queue()
        self._name = name
        self._metrics = metrics
        self.ticket: Ticket | None = None
        self.result: Generation | None = None
        self.arrived = time.perf_counter()
        self._last: float | None = None

    def push(self, update: Update) -> None:
        """From the scheduler's thread: count it, hand it to the event loop (gone: the request is cancelled).
        Counted here, not where it is read: a stream whose client left is never read to its end."""
        self._count(update)
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, update)
        except RuntimeError:
            if self.ticket is not None:
                self.ticket.cancelled = True

    def cancel(self) -> None:
        if self.ticket is not None and self.result is None:
            self.ticket.cancel()

    def __aiter__(self) -> Stream:
        return self

    async def __anext__(self) -> Update:
        if self.result is not None:
            raise StopAsyncIteration
        update = await self._queue.get()
        if update.result is not None:
            self.result = update.result
        return update

    async def wait(self) -> Generation:
        """Every update consumed; the result (``ClientError`` 500 if the runtime failed)."""
        async for update in self:
            if update.error is not None:
                raise ClientError(500, f"generation failed: {update.error}")
        assert self.result is not None
        return self.result

    def _count(self, update: Update) -> None:
        now = time.perf_counter()
        name, metrics = self._name, self._metrics
        if update.token_id is not None:
            if self._last is None:
                metrics.time_to_first_token.labels(name).observe(now - self.arrived)
            else:
                metrics.time_per_output_token.labels(name).observe(now - self._last)
            self._last = now
        if update.result is not None:
            result = update.result
            metrics.ended(name, result.prompt_tokens, len(result.token_ids), now - self.arrived,
                          result.finish_reason)  # fmt: skip


class ServedGenerator:
    """A served generation bundle's text side: tokenizer, context checks and the scheduler."""

    def __init__(
        self, model: ServedModel, metrics: GenerationMetrics, max_sequences: int = 16, max_waiting: int = 256
    ) -> None:
        assert model.bundle is not None
        self.name = model.name
        self.lm = LanguageModel(model.bundle, model.runner)
        self.context = self.lm.layout.max_context
        self.metrics = metrics
        self.scheduler = Scheduler(self.lm, max_running=max_sequences, max_waiting=max_waiting)
        metrics.watch(self.name, self.running, self.waiting)

    def running(self) -> int:
        return self.scheduler.running

    def waiting(self) -> int:
        return self.scheduler.waiting

    def start(self) -> None:
        self.scheduler.start()

    def stop(self) -> None:
        self.scheduler.stop()

    # -- prompts -------------------------------------------------------------------------------------
    def encode(self, prompt: Any, field: str = "prompt") -> list[int]:
        """A text or a list of token ids, as ids; 400 for anything else."""
        ids = isinstance(prompt, list) and all(isinstance(t, int) and not isinstance(t, bool) for t in prompt)
        if not (ids or isinstance(prompt, str)):
            raise ClientError(400, f"{field} must be a string or a list of token ids")
        return self._checked(lambda: self.lm.encode([prompt]))[0]

    def encode_chat(self, messages: Any) -> list[int]:
        """The messages through the tokenizer's chat template, ready for the assistant's turn."""
        if not isinstance(messages, list) or not messages:
            raise ClientError(400, "messages must be a non-empty list of {role, content} objects")
        plain = []
        for index, message in enumerate(messages):
            if not isinstance(message, dict) or not isinstance(message.get("role"), str):
                raise ClientError(400, f"messages[{index}] must be an object with a role and a content")
            plain.append({"role": message["role"], "content": _text_of(message.get("content"), index)})
        return self._checked(lambda: self.lm.encode_chat(plain))

    def _checked(self, encode: Any) -> Any:
        try:
            return encode()
        except UsageError as exc:
            raise ClientError(400, exc.one_line()) from None

    # -- requests ------------------------------------------------------------------------------------
    def max_new_tokens(self, prompt: Sequence[int], asked: int | None) -> int:
        """``asked``, or what the context leaves; 400 naming both numbers when they do not fit."""
        return self._checked(lambda: room_for(prompt, asked, self.lm.layout))

    async def submit(self, prompt: Sequence[int], decoding: Decoding) -> Stream:
        """Queue a checked prompt: a ``Stream`` of its updates (429 when the queue is full)."""
        stream = Stream(self.name, self.metrics)
        try:
            stream.ticket = self.scheduler.submit(prompt, decoding, stream.push)
        except QueueFull as exc:
            raise ClientError(429, exc.one_line(), {"Retry-After": str(RETRY_AFTER_S)}) from None
        except UsageError as exc:
            raise ClientError(400, exc.one_line()) from None
        return stream


async def answer_when_done(request: Request, stream: Stream) -> Generation:
    """The stream's result; the request is cancelled if the client goes away first."""

    async def gone() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass
        stream.cancel()

    watcher = asyncio.create_task(gone())
    try:
        return await stream.wait()
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher


async def request_json(request: Request) -> dict[str, Any]:
    """The body as a JSON object; 400 otherwise."""
    import orjson

    try:
        body = orjson.loads(await request.body())
    except orjson.JSONDecodeError as exc:
        raise ClientError(400, f"the body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ClientError(400, "the body must be a JSON object")
    return body


def decoding_from(options: dict[str, Any], max_new_tokens: int, *, temperature: float = 1.0) -> Decoding:
    """Sampling options of a request body (OpenAI's names, and vLLM's ``top_k``, ``repetition_penalty``,
    ``ignore_eos``), checked: 400 with the option's name for a bad value."""
    stop = options.get("stop")
    if stop is None:
        stop = ()
    elif isinstance(stop, str):
        stop = (stop,)
    elif not (isinstance(stop, list) and all(isinstance(s, str) for s in stop)) or len(stop) > 4:
        raise ClientError(400, "stop must be a string or a list of at most 4 strings")
    values = {
        "temperature": _option(options, "temperature", temperature, float),
        "top_p": _option(options, "top_p", 1.0, float),
        "top_k": _option(options, "top_k", 0, int),
        "repetition_penalty": _option(options, "repetition_penalty", 1.0, float),
        "seed": _option(options, "seed", None, int),
        "ignore_eos": _option(options, "ignore_eos", False, bool),
    }
    if values["top_k"] == -1:  # vLLM's "no top-k"
        values["top_k"] = 0
    if values["temperature"] is not None and values["temperature"] > 2:
        raise ClientError(400, f"temperature {values['temperature']} is over 2, the most the API allows")
    try:
        return Decoding(max_new_tokens=max_new_tokens, stop=tuple(s for s in stop if s), **values)
    except UsageError as exc:
        raise ClientError(400, exc.message) from None


_KINDS = {float: "a number", int: "an integer", bool: "a boolean"}


def _option(options: dict[str, Any], name: str, default: Any, kind: type) -> Any:
    value = options.get(name)
    if value is None:
        return default
    if kind is bool:
        ok = isinstance(value, bool)
    else:
        ok = isinstance(value, (int, float) if kind is float else int) and not isinstance(value, bool)
    if not ok:
        raise ClientError(400, f"{name} must be {_KINDS[kind]}")
    return float(value) if kind is float else value


def _text_of(content: Any, index: int) -> str:
    """A message's content: a string, or a list of text parts (OpenAI's content parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise ClientError(400, f"messages[{index}].content: only text parts are supported by this model")
            texts.append(part["text"])
        return "".join(texts)
    raise ClientError(400, f"messages[{index}].content must be a string or a list of text parts")
