"""Capture: PyTorch module -> ONNX file. One small module per strategy; ``auto`` orders them.

Each strategy exports ``job`` to ``job.path`` or raises ``CaptureError``; ``auto.capture`` reads
the graph back, verifies it and keeps the first that passes, recording why the others lost.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelport.calling import CallPlan
from modelport.spec import Signature

__all__ = ["ExportJob", "Attempt"]

DEFAULT_OPSET = 18
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


@dataclass
class Attempt:
    strategy: str
    outcome: str  # exported | skipped | failed to capture | failed graph check | failed verification
    reason: str = ""
    seconds: float = 0.0
    verify_seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # decisions the user should hear about (opset raised)

    def to_json(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy,
            "outcome": self.outcome,
            "reason": self.reason,
            "seconds": round(self.seconds, 3),
            "warnings": self.warnings,
            "notes": self.notes,
        }
