"""Capture: PyTorch module -> ONNX file. One small module per strategy; ``auto`` orders them.

Each strategy exports ``job`` to ``job.path`` or raises ``CaptureError``; ``auto.attempt`` turns one
strategy into an ``Attempt`` (exported, read back and verified, or why not), and ``auto.capture`` keeps
the first that passes, recording why the others lost.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from modelport.errors import ModelportError
from modelport.forward import CallPlan
from modelport.options import DEFAULT_OPSET
from modelport.spec import Signature

__all__ = ["ExportJob", "Attempt", "Outcome"]

EXTERNAL_DATA_BYTES = 2 * 1024**3  # protobuf's limit: only bigger models get model.onnx.data


@dataclass
class ExportJob:
    module: Any
    signature: Signature
    plan: CallPlan
    example: list[Any]  # torch tensors, one per declared input, in declared order
    output_names: list[str]
    path: Path
    opset: int = DEFAULT_OPSET  # the opset being written; capture.opset may raise it
    exported_program: Any = None
    strict_opset: bool = False  # refuse rather than raise the opset

    @property
    def external_data(self) -> bool:
        params = getattr(self.module, "parameters", None)
        if params is None:
            return False
        total = sum(p.numel() * p.element_size() for p in params())
        total += sum(b.numel() * b.element_size() for b in self.module.buffers())
        return total > EXTERNAL_DATA_BYTES


class Outcome(StrEnum):
    """How one strategy ended; the values are what the manifest and ``--json`` say."""

    EXPORTED = "exported"
    SKIPPED = "skipped"
    FAILED_CAPTURE = "failed to capture"
    FAILED_GRAPH_CHECK = "failed graph check"
    FAILED_VERIFICATION = "failed verification"


@dataclass
class Attempt:
    """The result of one capture strategy: returned, never raised (after torch.onnx's capture strategies)."""

    strategy: str
    outcome: Outcome
    reason: str = ""
    seconds: float = 0.0
    verify_seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # decisions the user should hear about (opset raised)
    path: Path | None = None  # the ONNX file it wrote, when it got that far
    report: Any = None  # its ParityReport, when it got as far as verifying
    error: ModelportError | None = None  # why it lost

    def to_json(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy,
            "outcome": str(self.outcome),
            "reason": self.reason,
            "seconds": round(self.seconds, 3),
            "warnings": self.warnings,
            "notes": self.notes,
        }
