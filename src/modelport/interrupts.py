"""Ctrl-C and SIGTERM that cannot be lost.

Python turns SIGINT into ``KeyboardInterrupt`` wherever the main thread is, and a library can swallow it
(measured: an interrupt during torch.export's tracing vanished and the export went on to write its
bundle, exit 0). The CLI installs ``install()``: a signal also sets a flag, and ``check()`` — called
before a bundle is swapped into place and between capture attempts — raises ``KeyboardInterrupt`` again
if one arrived, so an interrupted run never writes a result.
"""

from __future__ import annotations

import signal
import threading
from typing import Any

__all__ = ["install", "check"]

_requested = threading.Event()


def install() -> None:
    """SIGINT and SIGTERM raise ``KeyboardInterrupt`` and are remembered (main thread only, as signals are)."""
    _requested.clear()
    signal.signal(signal.SIGINT, _handler)
    signal.signal(signal.SIGTERM, _handler)


def check() -> None:
    """Raise ``KeyboardInterrupt`` if an interrupt arrived, even one that something swallowed since."""
    if _requested.is_set():
        raise KeyboardInterrupt


def _handler(signum: int, frame: Any) -> None:
    _requested.set()
    raise KeyboardInterrupt
