"""What the engines started from here share: a port checked (or picked) before they bind it, and a
blocking wait that ends on SIGTERM/Ctrl-C or when the engine is gone."""

from __future__ import annotations

import signal
import socket
import threading
from collections.abc import Callable

from modelport.errors import ResourceError, UsageError

__all__ = ["port_for", "until_stopped"]


def port_for(host: str, port: int, flag: str) -> int:
    """``port`` once checked free, or any free port for 0 (Triton and Ray Serve take no port 0 themselves)."""
    if not 0 <= port <= 65535:
        raise UsageError(f"{flag} {port} is not a port", "use 1..65535 (0: any free port)")
    try:
        with socket.create_server((host, port)) as probe:
            return probe.getsockname()[1]
    except OSError as exc:
        raise ResourceError(f"cannot listen on {host}:{port} ({exc.strerror or exc})", f"pick another {flag}") from None


def until_stopped(alive: Callable[[], bool] = lambda: True, poll_s: float = 0.5) -> None:
    """Block until SIGTERM or Ctrl-C (caught only on the main thread) or until ``alive()`` turns false."""
    stop = threading.Event()
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, lambda *_: stop.set())
    try:
        while not stop.is_set() and alive():
            stop.wait(poll_s)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
