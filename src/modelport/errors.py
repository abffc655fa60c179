"""Errors a user can act on. Every one carries the fix as ``hint``.

Exit codes (the CLI's contract, also in the README)::

    0    success
    1    the model is wrong or unsafe (UnsafeModelError: parity failure, frozen control flow, a hang)
    2    bad usage, bad input or environment (every other ModelportError; click's usage errors; not
         enough memory, no space, a read-only or unreadable path)
    3    an internal bug in modelport (anything else; the one case with a traceback hint and --debug)
    130  interrupted (Ctrl-C or SIGTERM): one line, no bundle

The tree::

    ModelportError                 exit 2 unless a subclass says otherwise
    ├── UsageError                 a flag or spec that cannot be parsed or does not fit the model
    ├── SourceError                the MODEL argument cannot be loaded or called
    ├── BundleError                a bundle directory that is missing, unreadable or altered
    ├── ModelFileError             an ONNX file that is missing, empty, truncated or not ONNX at all
    ├── FeedError                  a feed for ``run`` with the wrong name, shape or dtype
    ├── MissingExtraError          an optional stack that is not installed (names the pip line)
    │   └── MissingOnnxRuntimeError  neither onnxruntime nor onnxruntime-gpu (the cpu / gpu extras)
    ├── ResourceError              the machine cannot do it: not enough memory, no space, no permission
    └── UnsafeModelError           exit 1: the model would answer wrong or cannot be exported safely
        ├── CaptureError           no exporter produced a graph
        ├── GraphCheckError        the graph read back differs from what was asked (static dim, baked input)
        └── ParityError            ONNX Runtime disagrees with PyTorch

Anything that is not a ``ModelportError`` is a bug in modelport.
"""

from __future__ import annotations

import errno
import os
from typing import Any

__all__ = [
    "ModelportError",
    "UsageError",
    "SourceError",
    "BundleError",
    "ModelFileError",
    "FeedError",
    "MissingExtraError",
    "MissingOnnxRuntimeError",
    "import_onnxruntime",
    "ResourceError",
    "UnsafeModelError",
    "CaptureError",
    "GraphCheckError",
    "ParityError",
    "first_line",
    "as_path",
    "environment_error",
    "EXIT_OK",
    "EXIT_UNSAFE",
    "EXIT_USAGE",
    "EXIT_BUG",
    "EXIT_INTERRUPTED",
]


class ModelportError(Exception):
    """Base class: ``str(err)`` says what went wrong, ``err.hint`` what to do about it."""

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.attempts: list[Any] = []  # an export's capture attempts (capture.Attempt), when it got that far

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


class MissingOnnxRuntimeError(MissingExtraError):
    """modelport depends on neither ONNX Runtime wheel: ``onnxruntime`` and ``onnxruntime-gpu`` install the
    same module and overwrite each other, so the ``cpu`` and ``gpu`` extras choose one."""

    def __init__(self) -> None:
        ModelportError.__init__(
            self,
            "ONNX Runtime is not installed (modelport needs onnxruntime or onnxruntime-gpu)",
            "pip install 'modelport[cpu]' (with an NVIDIA GPU: pip install 'modelport[gpu]')",
        )


def import_onnxruntime() -> Any:
    """``import onnxruntime``, or MissingOnnxRuntimeError (one line with the pip command) when it is missing.
    Every use of ONNX Runtime in modelport goes through here."""
    try:
        import onnxruntime
    except ModuleNotFoundError as exc:
        if exc.name != "onnxruntime":  # onnxruntime is there but one of its own imports is not
            raise
        raise MissingOnnxRuntimeError() from None
    return onnxruntime


class ResourceError(ModelportError):
    pass


EXIT_OK = 0
EXIT_UNSAFE = 1
EXIT_USAGE = 2
EXIT_BUG = 3
EXIT_INTERRUPTED = 130


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


def as_path(value: object, what: str) -> os.PathLike[str] | str:
    """``value`` when it is a path (str or os.PathLike); a UsageError naming ``what`` otherwise (None, a list...)."""
    if isinstance(value, (str, os.PathLike)):
        return value
    raise UsageError(f"{what} must be a path, not {type(value).__name__}", f"pass {what} as a str or pathlib.Path")


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first non-empty line of an exception's message: what goes into our one-line errors."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return lines[0][:limit] if lines else type(exc).__name__


_OS_HINTS = {
    errno.ENOSPC: "free some space on that disk, or write somewhere else (-o / --save)",
    errno.EDQUOT: "free some space within your quota, or write somewhere else (-o / --save)",
    errno.EACCES: "choose a path you may write to, or fix its permissions",
    errno.EPERM: "choose a path you may write to, or fix its permissions",
    errno.EROFS: "that file system is read-only: write somewhere else (-o / --save)",
    errno.EISDIR: "that path is a directory: give a file name",
    errno.ENOTDIR: "a part of that path is a file, not a directory: fix the path",
    errno.ENOENT: "check the path",
    errno.ENAMETOOLONG: "use a shorter path",
    errno.EMFILE: "raise the open-file limit (ulimit -n)",
}


def environment_error(exc: BaseException) -> ResourceError | None:
    """The machine said no (memory, disk, permissions): a ResourceError (exit 2), not a bug in modelport."""
    if isinstance(exc, MemoryError):
        return ResourceError(
            "not enough memory" + (f" ({first_line(exc)})" if str(exc) else ""),
            "shrink the largest sizes: lower the MAX of --dim, a fixed size in --input, or the --feed arrays",
        )
    if isinstance(exc, OSError) and exc.errno in _OS_HINTS:
        where = f": {exc.filename}" if exc.filename else ""
        return ResourceError(f"{exc.strerror or os.strerror(exc.errno)}{where}", _OS_HINTS[exc.errno])
    return None
