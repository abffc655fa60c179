"""Record what the exporters say: every warning (torch's own are hidden from libraries otherwise),
the torch / onnxscript log records, and anything they print."""

from __future__ import annotations

import contextlib
import io
import linecache
import logging
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Recording", "recording"]

LOGGERS = ("torch", "onnxscript", "onnx_ir")


@dataclass
class Recording:
    warnings: list[warnings.WarningMessage] = field(default_factory=list)
    logs: list[logging.LogRecord] = field(default_factory=list)
    printed: str = ""

    def frozen_control_flow(self) -> list[str]:
        """``FILE:LINE: source`` for each tracer warning about a tensor turned into a Python value."""
        found = []
        for w in self.warnings:
            if w.category.__name__ == "TracerWarning" and "Converting a tensor to a Python" in str(w.message):
                source = linecache.getline(w.filename, w.lineno).strip()
                place = f"{Path(w.filename).name}:{w.lineno}: {source}"
                if place not in found:
                    found.append(place)
        return found

    def summary(self, limit: int = 10) -> list[str]:
        lines = []
        for w in self.warnings:
            if w.category.__name__ in ("TracerWarning", "UserWarning"):
                lines.append(f"{w.category.__name__}: {str(w.message).splitlines()[0][:200]}")
        lines += [
            f"{r.name}: {r.getMessage().splitlines()[0][:200]}" for r in self.logs if r.levelno >= logging.WARNING
        ]
        return list(dict.fromkeys(lines))[:limit]


class _ListHandler(logging.Handler):
    def __init__(self, records: list[logging.LogRecord]) -> None:
        super().__init__(logging.DEBUG)
        self.records = records

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextlib.contextmanager
def recording() -> Iterator[Recording]:
    rec = Recording()
    handler = _ListHandler(rec.logs)
    # torch attaches handlers to several of its loggers (torch, torch.onnx, ...): quiet them all for the duration
    names = [n for n in logging.root.manager.loggerDict if n.split(".")[0] in LOGGERS]
    loggers = [logging.getLogger(name) for name in {*LOGGERS, *names}]
    saved = [(lg.handlers[:], lg.propagate) for lg in loggers]
    for lg in loggers:
        lg.handlers = [handler] if lg.name in LOGGERS else []
        lg.propagate = lg.name not in LOGGERS
    out = io.StringIO()
    try:
        with (
            warnings.catch_warnings(record=True) as caught,
            contextlib.redirect_stdout(out),
            contextlib.redirect_stderr(out),
        ):
            warnings.simplefilter("always")
            try:
                yield rec
            finally:
                rec.warnings = list(caught)
    finally:
        rec.printed = out.getvalue()
        for lg, (handlers, propagate) in zip(loggers, saved, strict=True):
            lg.handlers = handlers
            lg.propagate = propagate
