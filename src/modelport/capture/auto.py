"""Run capture strategies in order; keep the first whose ONNX reads back right and verifies."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from modelport.capture import Attempt, ExportJob, dynamo, script, trace
from modelport.capture.check import check_graph
from modelport.capture.opset import export_at_opset
from modelport.capture.record import recording
from modelport.errors import CaptureError, GraphCheckError, ModelportError, ParityError
from modelport.verification.parity import ParityReport, Reference, check_parity

__all__ = ["STRATEGIES", "EXPORTERS", "CaptureOutcome", "capture"]

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
    CaptureError: "failed to capture",
    GraphCheckError: "failed graph check",
    ParityError: "failed verification",
}


@dataclass
class CaptureOutcome:
    strategy: str | None
    attempts: list[Attempt] = field(default_factory=list)
    report: ParityReport | None = None  # of the winner, or of the last attempt that got as far as verifying
    error: ModelportError | None = None

    def raise_if_failed(self) -> None:
        if self.error is not None:
            self.error.attempts = self.attempts  # type: ignore[attr-defined]
            raise self.error


def capture(job: ExportJob, ref: Reference, exporter: str, atol: float, rtol: float, on_attempt=None) -> CaptureOutcome:
    order = EXPORTERS[exporter]
    outcome = CaptureOutcome(None)
    if exporter == "auto" and isinstance(job.module, torch.jit.ScriptModule):
        # TorchScript cannot go through torch.export: straight to the TorchScript exporter
        order = tuple(n for n in order if n in ("script", "trace"))
        outcome.attempts = [Attempt(n, "skipped", "the source is TorchScript") for n in EXPORTERS["dynamo"]]
    errors: list[tuple[str, ModelportError]] = []
    requested = job.opset
    for name in order:
        if on_attempt:
            on_attempt(name)
        _clear(job)
        start = time.perf_counter()
        attempt = Attempt(name, "exported")
        job.opset = requested
        try:
            with recording() as rec:
                note = export_at_opset(STRATEGIES[name], job)
            attempt.warnings = rec.summary()
            if note:
                attempt.notes.append(note)
            check_graph(job.path, job.signature, job.opset, len(job.output_names))
            verify_start = time.perf_counter()
            report = check_parity(job.path, ref, atol, rtol)
            attempt.verify_seconds = time.perf_counter() - verify_start
            outcome.report = report
            report.raise_if_failed()
            attempt.notes += report.warnings  # x100 stress feeds that differed slightly and were kept
        except (CaptureError, GraphCheckError, ParityError) as exc:  # a timeout is a ParityError too
            attempt.outcome = next(text for kind, text in _OUTCOME.items() if isinstance(exc, kind))
            attempt.reason = exc.one_line()
            errors.append((name, exc))
        attempt.seconds = time.perf_counter() - start
        outcome.attempts.append(attempt)
        if attempt.outcome == "exported":
            outcome.strategy = name
            return outcome
    outcome.error = _pick_error(errors)
    return outcome


def _pick_error(errors: list[tuple[str, ModelportError]]) -> ModelportError:
    """A wrong answer matters most, then a graph that differs from the request, then capture failures;
    among those, the first that names a place in the user's code."""
    for kind in (ParityError, GraphCheckError):
        for name, exc in errors:
            if isinstance(exc, kind):
                exc.message = f"{name}: {exc.message}"
                return exc
    if len(errors) == 1:
        return errors[0][1]
    name, best = next(((n, e) for n, e in errors if _PLACE.search(e.message)), errors[0])
    others = ", ".join(n for n, _ in errors if n != name)
    return CaptureError(f"no strategy captured the model; {name}: {best.message} (also failed: {others})", best.hint)


def _clear(job: ExportJob) -> None:
    for path in job.path.parent.iterdir():
        if path.name.startswith(job.path.name):
            path.unlink()
