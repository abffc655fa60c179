"""Checks for the numbers a user passes (opset, threads, timeouts), shared by the API and the CLI;
tolerances have their own module, ``modelport.tolerances``.

Each raises ``UsageError`` (exit 2) naming the value and the range that is accepted, before any work
starts: ``--opset 999`` would fail deep inside an exporter.
"""

from __future__ import annotations

import math
import os

import onnx

from modelport.errors import UsageError

__all__ = [
    "check_opset",
    "check_threads",
    "check_timeout",
    "max_opset",
    "MIN_OPSET",
    "DEFAULT_OPSET",
]

DEFAULT_OPSET = 18
MIN_OPSET = 7  # ONNX Runtime supports nothing older
_EXPORTER_MAX_OPSET = 23  # torch.onnx's newest (torch/onnx/_constants.py ONNX_MAX_OPSET in torch 2.13)


def max_opset() -> int:
    return min(onnx.defs.onnx_opset_version(), _EXPORTER_MAX_OPSET)


def check_opset(opset: int) -> None:
    if not isinstance(opset, int) or isinstance(opset, bool) or not MIN_OPSET <= opset <= max_opset():
        raise UsageError(
            f"--opset {opset!r} is outside what the installed exporters and ONNX support",
            f"choose an opset from {MIN_OPSET} to {max_opset()} (default {DEFAULT_OPSET})",
        )


def check_threads(threads: int | None) -> None:
    if threads is not None and (not isinstance(threads, int) or isinstance(threads, bool) or threads < 1):
        raise UsageError(f"--threads {threads} is not a thread count", "give --threads 1 or more, or leave it out")
    most = 4 * (os.cpu_count() or 1)
    if threads is not None and threads > most:
        raise UsageError(
            f"--threads {threads} is more than 4x this machine's {os.cpu_count()} CPUs", f"give at most {most}"
        )


def check_timeout(seconds: float, flag: str = "--verify-timeout") -> None:
    """A deadline is a finite number of seconds: 0, negative, NaN or infinite would mean waiting forever."""
    if not (isinstance(seconds, (int, float)) and math.isfinite(seconds) and seconds > 0):
        raise UsageError(f"{flag} {seconds!r} is not a number of seconds > 0", f"e.g. {flag} 120")
