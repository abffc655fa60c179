"""The HTTP/REST front end of the Open Inference Protocol (v2), as an ASGI app: FastAPI for the routes that
answer from memory, and the infer route in plain ASGI, since FastAPI's layers (routing, its middleware
stack, endpoint dispatch) cost more per request than decoding, checking and answering a small one.

Every error is ``{"error": "..."}`` with the status the protocol gives it: 400 a bad tensor or request
(whatever decoding it raised), 401 a missing token, 404 an unknown model, route or version, 413 a body
over the limit, 503 not ready or a full queue; 500 only when the model itself failed. Under ``/v1/`` (the
OpenAI-compatible routes of a generation bundle, ``openai_api.py``) errors are OpenAI's body instead.
Triton's generate extension is ``generate_api.py``.

A request refused before its body was read (401, 413) has the rest of its body read and dropped first, up
to ``DRAIN_BYTES`` or ``DRAIN_S``: closing a connection with unread data makes the kernel reset it, and
the client would see "connection reset" instead of the answer. A body larger still gets the answer sent
and the connection closed; whether the client reads it first is then up to its TCP stack.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

from modelport.errors import first_line
from modelport.serving.core import Core, server_version
from modelport.serving.generate_api import add_generate_routes
from modelport.serving.openai_api import add_openai_routes, openai_error
from modelport.serving.protocol import HEADER_LENGTH, ClientError, decode_http, encode_http

__all__ = ["create_app"]

log = logging.getLogger("modelport.serving")
# uvicorn hands the path percent-decoded; a name or version never holds a slash (models match exactly)
_INFER = re.compile(r"/v2/models/([^/]+)(?:/versions/([^/]+))?/infer")
DRAIN_BYTES = 256 * 2**20  # the most of a refused body read (and dropped) so that the client hears why
DRAIN_S = 10.0


def create_app(core: Core) -> Any:
    """The ASGI app: ``_Guard`` first (token, size, access log, the infer route), FastAPI for the rest."""
    app = FastAPI(title="modelport", docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(ClientError)
    async def client_error(request: Request, exc: ClientError) -> Response:
        return _error(exc.status, exc.message, request.url.path, exc.headers)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        return _error(exc.status_code, str(exc.detail), request.url.path)

    @app.exception_handler(Exception)
    async def bug(request: Request, exc: Exception) -> Response:  # ours: the protocol's body, the traceback logged
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return _error(500, f"{type(exc).__name__}: {first_line(exc)}", request.url.path)

    @app.get("/v2")
    async def server_metadata() -> dict[str, Any]:
        extensions = ["binary_tensor_data"] + (["generate"] if core.generators else [])
        return {"name": "modelport", "version": server_version(), "extensions": extensions}

    @app.get("/v2/health/live")
    async def live() -> Response:
        return Response(status_code=200)

    @app.get("/v2/health/ready")
    async def ready() -> Response:
        return Response(status_code=200 if core.ready else 503)

    @app.get("/v2/models/{name}")
    @app.get("/v2/models/{name}/versions/{version}")
    async def model_metadata(name: str, version: str | None = None) -> dict[str, Any]:
        return core.ready_model(name, version).metadata()

    @app.get("/v2/models/{name}/ready")
    @app.get("/v2/models/{name}/versions/{version}/ready")
    async def model_ready(name: str, version: str | None = None) -> Response:
        model = core.model(name, version)
        return Response(status_code=200 if model.ready and not core.stopping else 503)

    @app.get("/metrics")
    async def metrics() -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST

        return Response(core.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    add_openai_routes(app, core.generators)
    add_generate_routes(app, core)
    return _Guard(app, core)


class _Guard:
    """Token and size checks before any route runs, the access log line, and the infer route: plain ASGI,
    since Starlette's ``BaseHTTPMiddleware`` costs a task and a stream copy per request."""

    def __init__(self, app: Any, core: Core) -> None:
        self.app = app
        self.core = core

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        path = scope["path"]
        status = 0

        async def send_seen(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        length = headers.get("content-length", "")
        limit = self.core.limits.max_request_bytes
        refusal = None
        if not path.startswith("/v2/health") and not self.core.authorized(headers.get("authorization")):
            refusal = _error(401, "missing or wrong bearer token (send Authorization: Bearer TOKEN)", path)
        elif length.isdigit() and int(length) > limit:
            refusal = _error(413, _too_big(int(length), limit), path)
        infer = _INFER.fullmatch(path)
        if refusal is not None:
            announced = int(length) if length.isdigit() else 0
            if announced <= DRAIN_BYTES and headers.get("expect", "").lower() != "100-continue":
                await _drain(receive)  # (a client that expects 100-continue sends nothing until told)
            await refusal(scope, receive, send_seen)
        elif infer is not None:
            await self._infer(scope, receive, send_seen, headers, *infer.groups())
        else:
            await self.app(scope, receive, send_seen)
        if log.isEnabledFor(logging.INFO):
            client = scope.get("client")
            log.info(json.dumps({
                "method": scope["method"], "path": path, "status": status,
                "ms": round((time.perf_counter() - start) * 1e3, 3), "client": client[0] if client else None,
            }))  # fmt: skip

    async def _infer(
        self, scope: dict[str, Any], receive: Any, send: Any, headers: dict[str, str], name: str, version: str | None
    ) -> None:
        core = self.core
        try:
            if scope["method"] != "POST":
                raise ClientError(405, "Method Not Allowed")
            model = core.ready_model(name, version)
            body = await _read(receive, core.limits.max_request_bytes)
            if body is None:
                return  # the client went away: nobody to answer
            parsed = _decode(body, headers.get(HEADER_LENGTH.lower()))
            outputs, order = await core.infer(model, parsed)
            content, header_length = encode_http(model.name, model.version, parsed, outputs, order)
        except ClientError as exc:
            await _error(exc.status, exc.message)(scope, receive, send)
            return
        except Exception as exc:  # a bug of ours: still the protocol's error body, and the traceback in the log
            log.exception("infer on %s failed", name)
            await _error(500, f"{type(exc).__name__}: {exc}")(scope, receive, send)
            return
        if header_length is None:
            response = Response(content, media_type="application/json")
        else:
            response = Response(
                content, media_type="application/octet-stream", headers={HEADER_LENGTH: str(header_length)}
            )
        await response(scope, receive, send)


async def _read(receive: Any, limit: int) -> bytes | None:
    """The body (None if the client disconnected), refused (413) as soon as it passes ``limit`` even when no
    Content-Length announced it."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            if message.get("more_body", False):
                await _drain(receive)
            raise ClientError(413, _too_big(size, limit))
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _decode(body: bytes, header_length: str | None) -> Any:
    """The request, or a 400 for whatever a hostile body makes decoding raise: it is the client's mistake."""
    try:
        return decode_http(body, header_length)
    except ClientError:
        raise
    except Exception as exc:
        raise ClientError(400, f"the request cannot be read: {type(exc).__name__}: {first_line(exc)[:200]}") from None


async def _drain(receive: Any) -> None:
    """Read and drop what is left of the request body, up to ``DRAIN_BYTES`` or ``DRAIN_S`` seconds."""

    async def drop() -> None:
        size = 0
        while size <= DRAIN_BYTES:
            message = await receive()
            if message["type"] == "http.disconnect" or not message.get("more_body", False):
                return
            size += len(message.get("body", b""))

    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(drop(), DRAIN_S)


def _too_big(size: int, limit: int) -> str:
    return f"the request has {size} bytes, over the limit of {limit} (--max-request-bytes)"


def _error(status: int, message: str, path: str = "", headers: dict[str, str] | None = None) -> JSONResponse:
    if path.startswith("/v1/"):
        return openai_error(status, message, headers)
    return JSONResponse({"error": message}, status_code=status, headers=headers)
