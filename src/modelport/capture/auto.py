"""Run capture strategies in order; keep the first whose ONNX reads back right and verifies."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from modelport import interrupts
from modelport.capture import Attempt, ExportJob, Outcome, dynamo, script, trace
from modelport.capture.check import check_graph
from modelport.capture.exporter_log import recording
from modelport.capture.opset import export_at_opset
from modelport.errors import CaptureError, GraphCheckError, ModelportError, ParityError, environment_error
from modelport.verification.parity import ParityReport, Reference, check_parity

__all__ = ["STRATEGIES", "EXPORTERS", "CaptureOutcome", "capture", "attempt"]

# name -> capture function, in the order auto tries them
STRATEGIES: dict[str, Callable[[ExportJob], None]] = {
    "dynamo-nonstrict": dynamo.export_nonstrict,
    "dynamo-strict": dynamo.export_strict,
    "script": script.export,
    "trace": trace.export,
    "trace+script": trace.export_mixed,
}
EXPORTERS: dict[str, tuple[str, ...]] = {
    "auto": tuple(STRATEGIES),
    "dynamo": ("dynamo-nonstrict", "dynamo-strict"),
    "script": ("script",),
    "trace": ("trace", "trace+script"),
}

_PLACE = re.compile(r"\.py:\d+")
_OUTCOME = {
    CaptureError: Outcome.FAILED_CAPTURE,
    GraphCheckError: Outcome.FAILED_GRAPH_CHECK,
    ParityError: Outcome.FAILED_VERIFICATION,  # a timeout is a ParityError too
}


@dataclass
class CaptureOutcome:
    strategy: str | None
    attempts: list[Attempt] = field(default_factory=list)
    report: ParityReport | None = None  # of the winner, or of the last attempt that got as far as verifying
    error: ModelportError | None = None

    @property
    def path(self) -> Path | None:
        return next((a.path for a in self.attempts if a.strategy == self.strategy), None)

    def raise_if_failed(self) -> None:
        if self.error is not None:
            self.error.attempts = self.attempts
            raise self.error


def capture(
    job: ExportJob,
    ref: Reference,
    exporter: str,
    atol: float,
    rtol: float,
    on_attempt: Callable[[str], None] | None = None,
) -> CaptureOutcome:
    """Each strategy of ``exporter`` in order, each into a folder of its own beside ``job.path``; the first
    that exports, reads back right and verifies wins."""
    order = EXPORTERS[exporter]
    outcome = CaptureOutcome(None)
    if exporter == "auto" and isinstance(job.module, torch.jit.ScriptModule):
        # TorchScript cannot go through torch.export: straight to the TorchScript exporter
        order = tuple(n for n in order if n in ("script", "trace"))
        outcome.attempts = [Attempt(n, Outcome.SKIPPED, "the source is TorchScript") for n in EXPORTERS["dynamo"]]
    for index, name in enumerate(order):
        if on_attempt:
            on_attempt(name)
        folder = job.path.parent / f".attempt-{index}-{name}"
        folder.mkdir()
        result = attempt(name, replace(job, path=folder / job.path.name), ref, atol, rtol)
        interrupts.check()
        outcome.attempts.append(result)
        outcome.report = result.report or outcome.report
        if result.outcome == Outcome.EXPORTED:
            outcome.strategy = name
            return outcome
    outcome.error = _pick_error(outcome.attempts)
    return outcome


def attempt(name: str, job: ExportJob, ref: Reference, atol: float, rtol: float) -> Attempt:
    """One strategy: export, read the graph back, verify. The expected failures come back in the result."""
    result = Attempt(name, Outcome.EXPORTED, path=job.path)
    start = time.perf_counter()
    try:
        with recording() as rec:
            note = export_at_opset(STRATEGIES[name], job)
        result.warnings = rec.summary()
        result.notes += [note] if note else []
        check_graph(job.path, job.signature, job.opset, len(job.output_names))
        verify_start = time.perf_counter()
        result.report = check_parity(job.path, ref, atol, rtol)
        result.verify_seconds = time.perf_counter() - verify_start
        result.report.raise_if_failed()
        result.notes += result.report.warnings  # x100 stress feeds that differed slightly and were kept
    except (CaptureError, GraphCheckError, ParityError) as exc:
        _raise_environment_cause(exc)
        result.outcome = next(o for kind, o in _OUTCOME.items() if isinstance(exc, kind))
        result.reason = exc.one_line()
        result.error = exc
    result.seconds = time.perf_counter() - start
    return result


def _raise_environment_cause(exc: BaseException) -> None:
    """No space, no memory, no permission under an exporter's error: the machine's answer, not the model's."""
    seen: BaseException | None = exc
    for _ in range(20):
        if seen is None:
            return
        known = environment_error(seen)
        if known is not None:
            raise known from exc
        seen = seen.__cause__ or seen.__context__


def _pick_error(attempts: list[Attempt]) -> ModelportError:
    """A wrong answer matters most, then a graph that differs from the request, then capture failures;
    among those, the first that names a place in the user's code."""
    failed = [(a.strategy, a.error) for a in attempts if a.error is not None]
    for kind in (ParityError, GraphCheckError):
        for name, exc in failed:
            if isinstance(exc, kind):
                exc.message = f"{name}: {exc.message}"
                return exc
    if len(failed) == 1:
        return failed[0][1]
    name, best = next(((n, e) for n, e in failed if _PLACE.search(e.message)), failed[0])
    others = ", ".join(n for n, _ in failed if n != name)
    return CaptureError(f"no strategy captured the model; {name}: {best.message} (also failed: {others})", best.hint)
