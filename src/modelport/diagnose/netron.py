"""Open a model in Netron (the ``netron`` extra) on localhost, until Ctrl-C."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from modelport.errors import MissingExtraError

__all__ = ["serve_netron"]


def serve_netron(path: Path, port: int, say: Callable[[str], None] = print) -> None:
    try:
        import netron
    except ImportError as exc:
        raise MissingExtraError("--netron", "netron") from exc
    address = netron.serve(str(path), None, ("localhost", port), browse=False)
    host, bound = address if isinstance(address, tuple) else ("localhost", port)
    say(f"Netron is showing {path} at http://{host}:{bound} — press Ctrl-C to stop")
    try:
        netron.wait()
    finally:
        netron.stop(address)
