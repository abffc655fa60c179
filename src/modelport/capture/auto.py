"""Run capture strategies in order; keep the first whose ONNX reads back right and verifies."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from types import ModuleType

from modelport.capture import Attempt, ExportJob, dynamo, trace
from modelport.capture.check import check_graph
from modelport.capture.record import recording
from modelport.errors import CaptureError, GraphCheckError, ModelportError, ParityError
from modelport.verify.parity import ParityReport, Reference, check_parity

__all__ = ["STRATEGIES", "EXPORTERS", "CaptureOutcome", "capture"]

STRATEGIES: dict[str, ModuleType] = {dynamo.NAME: dynamo, trace.NAME: trace}
AUTO_ORDER = (dynamo.NAME, trace.NAME)
EXPORTERS = ("auto", *STRATEGIES)

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
    order = AUTO_ORDER if exporter == "auto" else (exporter,)
    outcome = CaptureOutcome(None)
    errors: list[tuple[str, ModelportError]] = []
    for name in order:
        if on_attempt:
            on_attempt(name)
        _clear(job)
        start = time.perf_counter()
        attempt = Attempt(name, "exported")
        try:
            with recording() as rec:
                STRATEGIES[name].export(job)
            attempt.warnings = rec.summary()
            check_graph(job.path, job.signature, job.opset, len(job.output_names))
            verify_start = time.perf_counter()
            report = check_parity(job.path, ref, atol, rtol)
            attempt.verify_seconds = time.perf_counter() - verify_start
            outcome.report = report
            report.raise_if_failed()
        except (CaptureError, GraphCheckError, ParityError) as exc:
            attempt.outcome = _OUTCOME[type(exc)]
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
    """A wrong answer matters most, then a graph that differs from the request, then capture failures."""
    for kind in (ParityError, GraphCheckError):
        for name, exc in errors:
            if isinstance(exc, kind):
                exc.message = f"{name}: {exc.message}"
                return exc
    if len(errors) == 1:
        return errors[0][1]
    reasons = "; ".join(f"{name}: {exc.message}" for name, exc in errors)
    return CaptureError(f"no exporter produced a model — {reasons}", errors[0][1].hint)


def _clear(job: ExportJob) -> None:
    for path in job.path.parent.iterdir():
        if path.name.startswith(job.path.name):
            path.unlink()
