"""Errors a user can act on. Every one carries the fix as ``hint``.

The tree::

    ModelportError                 exit 2 unless a subclass says otherwise
    ├── UsageError                 a flag or spec that cannot be parsed or does not fit the model
    ├── SourceError                the MODEL argument cannot be loaded or called
    ├── BundleError                a bundle directory that is missing, unreadable or altered
    ├── ModelFileError             an ONNX file that is missing, empty, truncated or not ONNX at all
    ├── FeedError                  a feed for ``run`` with the wrong name, shape or dtype
    ├── MissingExtraError          an optional stack that is not installed (names the pip line)
    └── UnsafeModelError           exit 1: the model would answer wrong or cannot be exported safely
        ├── CaptureError           no exporter produced a graph
        ├── GraphCheckError        the graph read back differs from what was asked (static dim, baked input)
        └── ParityError            ONNX Runtime disagrees with PyTorch

Anything that is not a ``ModelportError`` is a bug in modelport.
"""

from __future__ import annotations

__all__ = [
    "ModelportError",
    "UsageError",
    "SourceError",
    "BundleError",
    "ModelFileError",
    "FeedError",
    "MissingExtraError",
    "UnsafeModelError",
    "CaptureError",
    "GraphCheckError",
    "ParityError",
    "first_line",
]


class ModelportError(Exception):
    """Base class: ``str(err)`` says what went wrong, ``err.hint`` what to do about it."""

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def one_line(self) -> str:
        return f"{self.message} — {self.hint}" if self.hint else self.message

    def __str__(self) -> str:
        return self.one_line()


class UsageError(ModelportError):
    pass


class SourceError(ModelportError):
    pass


class BundleError(ModelportError):
    pass


class ModelFileError(ModelportError):
    pass


class FeedError(ModelportError):
    pass


class MissingExtraError(ModelportError):
    def __init__(self, what: str, extra: str) -> None:
        super().__init__(f"{what} needs the '{extra}' extra", f"pip install 'modelport[{extra}]'")


class UnsafeModelError(ModelportError):
    exit_code = 1


class CaptureError(UnsafeModelError):
    pass


class GraphCheckError(UnsafeModelError):
    pass


class ParityError(UnsafeModelError):
    def __init__(self, message: str, hint: str | None = None, report: object = None) -> None:
        super().__init__(message, hint)
        self.report = report


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first non-empty line of an exception's message: what goes into our one-line errors."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return lines[0][:limit] if lines else type(exc).__name__
