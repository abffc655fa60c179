"""Deadlines for verification: every PyTorch and runtime call made while verifying ends, or is refused.

A model whose loop never ends on some feed (a ``while`` whose condition never turns, often because the
feed left the domain the loop was written for) must not hang an export. Each call gets
``--verify-timeout`` seconds (``DEFAULT_VERIFY_TIMEOUT``); past it the attempt is refused with
``VerifyTimeoutError`` ("... did not finish in N s on feed '...'").

How a call is stopped:

* ONNX Runtime: ``RunOptions.terminate`` set by a watchdog timer (``OrtRunner.infer(feed, timeout=...)``).
  ONNX Runtime checks the flag between nodes, inside Loop bodies too, and the run fails at once.
* PyTorch, and any other runner (``within``): the call runs in a worker thread while the caller waits
  on it with a timeout. At the deadline the worker is told to stop twice over: a flag that a
  pass-through dispatch mode checks before every aten op (this reaches loops inside TorchScript, whose
  interpreter runs without the GIL and never returns to Python), and an asynchronous exception
  (``PyThreadState_SetAsyncExc``) for loops of plain Python that call no op at all. The caller waits a
  short grace for the worker to end, then raises either way, so the export returns about ``timeout``
  after the call began even if one native kernel cannot be interrupted (that thread then runs on in
  the background until the kernel returns, and stops at its next op).

Why not SIGALRM: its handler runs only in the main thread and only between bytecodes, so it cannot stop
a TorchScript loop (measured: the interpreter releases the GIL and the handler never runs), nor anything
called off the main thread. Why not a child process: the model would have to be pickled or the process
forked (unsafe once OpenMP or ONNX Runtime threads exist), and forward's side effects on the model would
stay in the child.

The default, 120 s per call: the slowest single call of the benchmark models is BERT-base at batch 8 x
seq 128, about 1.6 s in PyTorch on 2 EPYC cores (benchmarks/results: 0.2 s at batch 1), so a CI machine 5x
slower still has 15x headroom, and a model 10x bigger still fits; past 120 s a call is taken for a loop
that does not end. A hang costs the export about that once when PyTorch hangs (every strategy shares
PyTorch's answers), or once per strategy whose graph hangs in ONNX Runtime (at most 5).
"""

from __future__ import annotations

import ctypes
import math
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from modelport.errors import ParityError

__all__ = ["DEFAULT_VERIFY_TIMEOUT", "VerifyTimeoutError", "within", "timeout_hint"]

DEFAULT_VERIFY_TIMEOUT = 120.0
GRACE_S = 5.0  # longest wait for a stopped worker before the refusal is raised anyway

T = TypeVar("T")


def timeout_hint() -> str:
    return (
        "raise --verify-timeout (--timeout for run) if the model is only slow at this input; otherwise fix the "
        "loop that does not end "
        "for it (if the model only works for some values, declare them: --input NAME:DIMS:DTYPE:LOW..HIGH)"
    )


class VerifyTimeoutError(ParityError):
    """A call made while verifying did not finish within the deadline (exit 1, like every refusal)."""

    def __init__(self, what: str, seconds: float, label: str) -> None:
        super().__init__(f"{what} did not finish in {seconds:g} s on feed '{label}'", timeout_hint())
        self.what = what
        self.seconds = seconds
        self.label = label


def active(seconds: float | None) -> bool:
    """Whether ``seconds`` is a deadline at all: None, 0, negative or infinite means none."""
    return seconds is not None and seconds > 0 and math.isfinite(seconds)


def within(fn: Callable[[], T], seconds: float | None, what: str, label: str) -> T:
    """``fn()``, or ``VerifyTimeoutError`` once ``seconds`` have passed; ``fn``'s own errors pass through.
    ``what`` names who did not finish ("PyTorch"), ``label`` the feed."""
    if not active(seconds):
        return fn()
    assert seconds is not None
    worker = _Worker(fn)
    worker.start()
    try:
        worker.join(seconds)
    except BaseException:  # Ctrl-C while waiting: stop the worker too
        worker.stop()
        raise
    if worker.is_alive():
        worker.stop()
        worker.join(min(GRACE_S, seconds))
        raise VerifyTimeoutError(what, seconds, label)
    if worker.error is not None:
        raise worker.error
    return worker.result  # type: ignore[return-value]


class _Stop(BaseException):
    """Raised inside the worker to end a call past its deadline; a BaseException, so that the model's
    own ``except Exception`` does not swallow it."""


class _Worker(threading.Thread):
    def __init__(self, fn: Callable[[], Any]) -> None:
        super().__init__(name="modelport-verify", daemon=True)  # daemon: a stuck one never blocks exit
        self.fn = fn
        self.result: Any = None
        self.error: BaseException | None = None
        self.stopping = False

    def run(self) -> None:
        try:
            try:
                with _guard(self):
                    self.result = self.fn()
            except Exception:
                if self.stopping:
                    raise
                # the guard passes every op through, but should some model use what no dispatch mode may, it
                # answers again without it (then only the asynchronous exception can stop it); a model that
                # really fails fails again, with its own error
                self.result = self.fn()
        except BaseException as exc:  # handed to the waiting thread
            self.error = exc

    def stop(self) -> None:
        self.stopping = True  # seen by the guard before the next aten op
        if self.ident is not None and self.is_alive():  # and by plain Python at its next bytecode
            ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(self.ident), ctypes.py_object(_Stop))


class _NoGuard:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _guard(worker: _Worker) -> Any:
    """A dispatch mode that passes every aten op through unchanged, and raises once the worker is told to
    stop. Costs a Python call per op (about 10% on ResNet-50 at 128x128); without torch, nothing."""
    try:
        from torch.utils._python_dispatch import TorchDispatchMode
    except ImportError:  # a runner without torch: the async exception alone
        return _NoGuard()

    class _StopGuard(TorchDispatchMode):
        supports_higher_order_operators = True  # torch.cond, while_loop: passed through like any op

        def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
            if worker.stopping:
                raise _Stop()
            return func(*args, **(kwargs or {}))

    return _StopGuard()
