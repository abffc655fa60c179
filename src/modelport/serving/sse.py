"""Server-sent events as a plain ASGI response, with the client's disconnect seen as it happens.

``EventStream(events, on_disconnect)`` sends each ``bytes`` of ``events`` (already ``data: ...\\n\\n``
framed) as it comes. A task listens for ``http.disconnect`` meanwhile and calls ``on_disconnect`` at
once, so a client that leaves mid-stream frees its sequence's slot at the scheduler's next step rather
than when the next token fails to send.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.responses import Response

__all__ = ["EventStream", "event", "DONE"]

DONE = b"data: [DONE]\n\n"


def event(data: Any) -> bytes:
    """One ``data:`` event of a JSON value."""
    return b"data: " + json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"


class EventStream(Response):
    """A ``Response`` (what a route may return), sent by its own ``__call__``."""

    media_type = "text/event-stream"

    def __init__(self, events: AsyncIterator[bytes], on_disconnect: Callable[[], None]) -> None:
        super().__init__(status_code=200, media_type=self.media_type)
        self.events = events
        self.on_disconnect = on_disconnect

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        gone = asyncio.Event()

        async def listen() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            gone.set()
            self.on_disconnect()

        listener = asyncio.create_task(listen())
        headers = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache"),
                   (b"x-accel-buffering", b"no")]  # fmt: skip
        try:
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            async for chunk in self.events:
                if gone.is_set():
                    break
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            if not gone.is_set():
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:  # the connection broke while sending
            self.on_disconnect()
        finally:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener
            aclose = getattr(self.events, "aclose", None)
            if aclose is not None:
                await aclose()
