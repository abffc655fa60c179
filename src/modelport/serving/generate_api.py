"""Triton's generate extension on a served generation bundle: ``POST /v2/models/{m}[/versions/{v}]/generate``
answers ``{"model_name", "model_version", "text_output", "finish_reason"}``; ``/generate_stream`` sends the
same objects as server-sent events, ``text_output`` holding each new piece of text.

The request is ``{"text_input": ..., "parameters": {...}}``; options may also sit at the top level, as
TensorRT-LLM's examples send them: ``max_tokens`` (default 16, vLLM's), ``temperature`` (default 1),
``top_p``, ``top_k``, ``seed``, ``stop`` (or ``stop_words``), ``repetition_penalty``, ``ignore_eos``.
Errors are Triton's ``{"error": "..."}``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from modelport.serving.core import Core
from modelport.serving.generation import Stream, answer_when_done, decoding_from, request_json
from modelport.serving.protocol import ClientError
from modelport.serving.sse import EventStream, event

__all__ = ["add_generate_routes"]

_OPTIONS = ("max_tokens", "temperature", "top_p", "top_k", "seed", "stop", "stop_words", "repetition_penalty",
            "ignore_eos", "stream")  # fmt: skip


def add_generate_routes(app: FastAPI, core: Core) -> None:
    @app.post("/v2/models/{name}/generate")
    @app.post("/v2/models/{name}/versions/{version}/generate")
    async def generate(request: Request, name: str, version: str | None = None) -> Response:
        model_version, stream = await _start(core, request, name, version)
        result = await answer_when_done(request, stream)
        return JSONResponse({"model_name": name, "model_version": model_version, "text_output": result.text or "",
                             "finish_reason": result.finish_reason})  # fmt: skip

    @app.post("/v2/models/{name}/generate_stream")
    @app.post("/v2/models/{name}/versions/{version}/generate_stream")
    async def generate_stream(request: Request, name: str, version: str | None = None) -> Response:
        model_version, stream = await _start(core, request, name, version)
        return EventStream(_events(name, model_version, stream), stream.cancel)


async def _start(core: Core, request: Request, name: str, version: str | None) -> tuple[str, Stream]:
    model = core.ready_model(name, version)
    gen = core.generators.get(model.name)
    if gen is None:
        raise ClientError(400, f"model {name!r} is not a generation bundle; run it with /v2/models/{name}/infer")
    body = await request_json(request)
    options = body.get("parameters") or {}
    if not isinstance(options, dict):
        raise ClientError(400, "parameters must be an object")
    options = {**{k: body[k] for k in _OPTIONS if k in body}, **options}
    if "stop" not in options and "stop_words" in options:
        options["stop"] = options["stop_words"] or None
    text = body.get("text_input")
    if not isinstance(text, str):
        raise ClientError(400, "text_input is required: the prompt, a string")
    ids = gen.encode(text, "text_input")
    asked = options.get("max_tokens", 16)
    if not isinstance(asked, int) or isinstance(asked, bool) or asked < 1:
        raise ClientError(400, f"max_tokens must be an integer >= 1, not {asked!r}")
    decoding = decoding_from(options, gen.max_new_tokens(ids, asked))
    return model.version, await gen.submit(ids, decoding)


async def _events(name: str, version: str, stream: Stream) -> AsyncIterator[bytes]:
    async for update in stream:
        if update.error is not None:
            yield event({"error": f"generation failed: {update.error}"})
            return
        result = update.result
        if result is not None and result.finish_reason == "abort":
            return
        if update.text or result is not None:
            out: dict[str, Any] = {"model_name": name, "model_version": version, "text_output": update.text}
            if result is not None:
                out["finish_reason"] = result.finish_reason
            yield event(out)
