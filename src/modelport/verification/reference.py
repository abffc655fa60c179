"""PyTorch's answers, computed once before any exporter touches the model (exporters can leave it
changed) and shared by every attempt; and the refusal of a model that answers differently to itself.

Every PyTorch call runs under ``--verify-timeout`` (``deadline``). PyTorch answers the first feed twice:
a model that is random in eval mode is refused as such (``NondeterministicModelError``), naming the
random ops or modules it finds, rather than blamed on the runtime.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from modelport.compare import compare
from modelport.deadline import DEFAULT_VERIFY_TIMEOUT, within
from modelport.errors import ParityError
from modelport.feeds import Feed, make_feeds
from modelport.forward import CallPlan, run_eager
from modelport.spec import Signature
from modelport.tolerances import DEFAULT_ATOL, DEFAULT_RTOL

__all__ = ["Reference", "NondeterministicModelError", "Answer"]

_RANDOM_OPS = re.compile(r"dropout|bernoulli|rand|normal|uniform|multinomial|poisson|exponential|geometric|cauchy")
_RANDOM_MODULES = ("Dropout", "Dropout1d", "Dropout2d", "Dropout3d", "AlphaDropout", "FeatureAlphaDropout")

Answer = list[tuple[str, np.ndarray]]


class NondeterministicModelError(ParityError):
    """PyTorch answered the same feed twice, differently: no export can match that."""


class Reference:
    """The feeds and PyTorch's answers to them, computed once, before any exporter touches the model
    (exporters can leave it changed), and shared by every attempt. The first feed is answered twice
    first: a model that disagrees with itself is refused here. Every call runs under ``timeout``
    seconds, which the runtime calls of ``check_runners`` inherit."""

    def __init__(
        self,
        module: Any,
        plan: CallPlan,
        sig: Signature,
        seed: int = 0,
        *,
        timeout: float | None = DEFAULT_VERIFY_TIMEOUT,
        atol: float = DEFAULT_ATOL,
        rtol: float = DEFAULT_RTOL,
    ) -> None:
        self.feeds: list[Feed] = make_feeds(sig, seed)
        self.timeout = timeout
        self.answers: list[Answer] = []
        for index, feed in enumerate(self.feeds):
            answer = run_eager(module, plan, feed.arrays, sig, timeout=timeout, label=feed.label)
            if index == 0:
                again = run_eager(module, plan, feed.arrays, sig, timeout=timeout, label=feed.label)
                _check_deterministic(module, plan, sig, feed, answer, again, atol, rtol, timeout)
            self.answers.append(answer)


def _check_deterministic(
    module: Any,
    plan: CallPlan,
    sig: Signature,
    feed: Feed,
    first: Answer,
    second: Answer,
    atol: float,
    rtol: float,
    timeout: float | None,
) -> None:
    if len(first) == len(second):
        diffs = [compare(name, a, b, atol, rtol) for (name, a), (_, b) in zip(first, second, strict=True)]
        bad = next((d for d in diffs if not d.passed), None)
        if bad is None:
            return
        what = f"output '{bad.name}': " + (f"max diff {bad.max_abs:.3g}" if np.isfinite(bad.max_abs) else bad.why)
    else:
        what = f"{len(first)} outputs, then {len(second)}"
    sources = _random_sources(module, plan, sig, feed, timeout)
    raise NondeterministicModelError(
        f"the model answers differently to the same input (PyTorch vs PyTorch on feed '{feed.label}', {what}); "
        f"it is random in eval mode — {sources}",
        "make forward deterministic in eval mode: F.dropout(x, p, training=self.training) rather than "
        "training=True, no torch.rand*/bernoulli/normal_ outside training, or a seeded torch.Generator in forward",
    )


def _random_sources(module: Any, plan: CallPlan, sig: Signature, feed: Feed, timeout: float | None) -> str:
    """What makes the model random: dropout modules left in training mode, and the random aten ops one
    more call on the feed dispatches."""
    found: list[str] = []
    modules = [
        f"{name or 'the model'} ({type(sub).__name__})"
        for name, sub in getattr(module, "named_modules", lambda: [])()
        if getattr(sub, "training", False) and type(sub).__name__ in _RANDOM_MODULES
    ]
    if modules:
        found.append("dropout left in training mode: " + ", ".join(modules[:5]))
    try:
        from torch.utils._python_dispatch import TorchDispatchMode

        ops: list[str] = []

        class _Record(TorchDispatchMode):
            supports_higher_order_operators = True

            def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
                name = str(getattr(func, "__name__", func))
                if _RANDOM_OPS.search(name) and f"aten.{name}" not in ops:
                    ops.append(f"aten.{name}")
                return func(*args, **(kwargs or {}))

        def run() -> None:
            with _Record():
                run_eager(module, plan, feed.arrays, sig)

        within(run, timeout, "PyTorch", feed.label)
        if ops:
            found.append("random ops in forward: " + ", ".join(ops[:5]))
    except Exception:  # naming the op is a courtesy: the refusal stands without it
        pass
    if not found:
        return "no random op was seen; look for state that changes from call to call (counters, caches, time)"
    return "; ".join(found)
