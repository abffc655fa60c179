"""The OpenAI-compatible API on a served generation bundle: ``GET /v1/models``, ``POST /v1/completions``,
``POST /v1/chat/completions``, whole or streamed as server-sent events (``stream``), as the ``openai``
client, LangChain and chat UIs speak it.

Options: ``max_tokens`` (``max_completion_tokens`` for chat; default 16 for completions, the rest of the
context for chat, as vLLM), ``temperature`` (default 1, as OpenAI's; 0 is greedy, ``modelport generate``'s
default), ``top_p``, ``seed``, ``stop`` (up to 4 strings), ``n`` (1 only), ``stream`` and
``stream_options.include_usage``; vLLM's ``top_k``, ``repetition_penalty`` and ``ignore_eos`` too.
Options this server cannot honour (``logprobs``, ``echo``, ``logit_bias``, penalties, ``n`` > 1, tools)
are refused with 400, never ignored. Errors are OpenAI's body, ``{"error": {"message", "type", "param",
"code"}}``, with its statuses: 400 a bad request, 401 no token, 404 an unknown model, 429 the queue is full
(with ``Retry-After``), 500 the model failed.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from modelport.generation.loop import Generation
from modelport.serving.generation import ServedGenerator, Stream, answer_when_done, decoding_from, request_json
from modelport.serving.protocol import ClientError
from modelport.serving.sse import DONE, EventStream, event

__all__ = ["add_openai_routes", "openai_error"]

_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
          413: "invalid_request_error", 429: "rate_limit_error", 503: "service_unavailable"}  # fmt: skip
# options with a value that changes the answer in a way this server does not implement: refused, never ignored
_UNSUPPORTED = {
    "logprobs": (None, False),
    "top_logprobs": (None, 0),
    "echo": (None, False),
    "logit_bias": (None, {}),
    "presence_penalty": (None, 0, 0.0),
    "frequency_penalty": (None, 0, 0.0),
    "best_of": (None, 1),
    "suffix": (None, ""),
    "tools": (None, []),
    "tool_choice": (None, "none"),
    "response_format": (None, {"type": "text"}),
}


def openai_error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    kind = _TYPES.get(status, "server_error")
    code = {401: "invalid_api_key", 404: "model_not_found"}.get(status)
    body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


def add_openai_routes(app: FastAPI, generators: dict[str, ServedGenerator]) -> None:
    created = int(time.time())

    def card(name: str) -> dict[str, Any]:
        return {"id": name, "object": "model", "created": created, "owned_by": "modelport",
                "max_model_len": generators[name].context}  # fmt: skip

    @app.get("/v1/models")
    async def list_models() -> dict[str, Any]:
        return {"object": "list", "data": [card(n) for n in generators]}

    @app.get("/v1/models/{name}")
    async def one_model(name: str) -> dict[str, Any]:
        _generator(generators, name)
        return card(name)

    @app.post("/v1/completions")
    async def completions(request: Request) -> Response:
        body = await request_json(request)
        gen = _generator(generators, body.get("model"))
        _refuse_unsupported(body)
        prompt = body.get("prompt")
        if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], (str, list)):
            prompt = prompt[0]  # a batch of one
        ids = gen.encode(prompt)
        asked = _max_tokens(body, "max_tokens", 16)
        return await _respond(request, gen, body, ids, asked, chat=False)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        body = await request_json(request)
        gen = _generator(generators, body.get("model"))
        _refuse_unsupported(body)
        ids = gen.encode_chat(body.get("messages"))
        field = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
        asked = _max_tokens(body, field, None)
        return await _respond(request, gen, body, ids, asked, chat=True)


async def _respond(
    request: Request, gen: ServedGenerator, body: dict[str, Any], ids: list[int], asked: int | None, chat: bool
) -> Response:
    decoding = decoding_from(body, gen.max_new_tokens(ids, asked))
    streaming = _flag(body, "stream")
    options = body.get("stream_options") or {}
    if not isinstance(options, dict):
        raise ClientError(400, "stream_options must be an object")
    stream = await gen.submit(ids, decoding)
    answer = _Answer(gen.name, chat)
    if streaming:
        return EventStream(answer.chunks(stream, _flag(options, "include_usage")), stream.cancel)
    result = await answer_when_done(request, stream)
    return JSONResponse(answer.whole(result))


class _Answer:
    """The bodies of one answer: whole, or as stream chunks, in OpenAI's formats."""

    def __init__(self, model: str, chat: bool) -> None:
        self.chat = chat
        self.id = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex
        self.head = {"id": self.id, "created": int(time.time()), "model": model}

    def whole(self, result: Generation) -> dict[str, Any]:
        text = result.text or ""
        if self.chat:
            choice = {"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": None,
                      "finish_reason": result.finish_reason}  # fmt: skip
        else:
            choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": result.finish_reason}
        kind = "chat.completion" if self.chat else "text_completion"
        return {**self.head, "object": kind, "choices": [choice], "usage": _usage(result)}

    def _chunk(self, text: str | None, finish: str | None, role: bool = False) -> bytes:
        if self.chat:
            delta: dict[str, Any] = {"role": "assistant", "content": ""} if role else {}
            if text:
                delta["content"] = text
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            return event({**self.head, "object": "chat.completion.chunk", "choices": [choice]})
        choice = {"index": 0, "text": text or "", "logprobs": None, "finish_reason": finish}
        return event({**self.head, "object": "text_completion", "choices": [choice]})

    async def chunks(self, stream: Stream, include_usage: bool) -> AsyncIterator[bytes]:
        if self.chat:
            yield self._chunk(None, None, role=True)
        async for update in stream:
            if update.error is not None:
                yield event({"error": {"message": f"generation failed: {update.error}", "type": "server_error",
                                       "param": None, "code": None}})  # fmt: skip
                break
            if update.text:
                yield self._chunk(update.text, None)
            if update.result is not None:
                if update.result.finish_reason == "abort":
                    return  # the client is gone
                yield self._chunk(None, update.result.finish_reason)
                if include_usage:
                    kind = "chat.completion.chunk" if self.chat else "text_completion"
                    yield event({**self.head, "object": kind, "choices": [], "usage": _usage(update.result)})
        yield DONE


def _usage(result: Generation) -> dict[str, int]:
    new = len(result.token_ids)
    return {"prompt_tokens": result.prompt_tokens, "completion_tokens": new, "total_tokens": result.prompt_tokens + new}


def _generator(generators: dict[str, ServedGenerator], name: Any) -> ServedGenerator:
    if not isinstance(name, str) or not name:
        raise ClientError(400, "model is required: one of " + (", ".join(generators) or "none"))
    gen = generators.get(name)
    if gen is None:
        served = ", ".join(generators) or "none (no generation bundle is served)"
        raise ClientError(404, f"the model {name!r} does not exist; generation models served: {served}")
    return gen


def _refuse_unsupported(body: dict[str, Any]) -> None:
    for name, harmless in _UNSUPPORTED.items():
        if name in body and body[name] not in harmless:
            raise ClientError(400, f"{name} is not supported by this server; drop it")
    n = body.get("n")
    if n not in (None, 1):
        raise ClientError(400, f"n={n!r}: this server returns one choice per request; send n=1 (or several requests)")


def _max_tokens(body: dict[str, Any], field: str, default: int | None) -> int | None:
    value = body.get(field)
    if value is None:
        return default
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ClientError(400, f"{field} must be an integer >= 1, not {value!r}")
    return value


def _flag(body: dict[str, Any], name: str) -> bool:
    value = body.get(name, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise ClientError(400, f"{name} must be true or false")
    return value
