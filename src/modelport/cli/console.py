"""The two consoles every command prints to (results on stdout, progress and errors on stderr) and JSON."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console

__all__ = ["out", "err", "emit_json", "errors_as_json", "wants_json"]

out = Console(markup=False, highlight=False)
err = Console(stderr=True, markup=False, highlight=False)


_json_errors = False


def errors_as_json(on: bool) -> None:
    """Called by each command with its ``--json``: a failure is then printed as JSON on stdout too."""
    global _json_errors
    _json_errors = on


def wants_json() -> bool:
    return _json_errors


def emit_json(payload: dict[str, Any]) -> None:
    print(json.dumps(payload, indent=2, default=_default))


def _default(value: Any) -> Any:
    if hasattr(value, "to_json"):
        return value.to_json()
    return str(value)
