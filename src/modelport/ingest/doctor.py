"""``doctor``: everything we can tell about an ONNX file (ours or anyone's) without a PyTorch model,
each finding with its fix. Unreadable files raise ``ModelFileError`` (one line, exit 2); findings of
severity "error" mean the model fails to load or answers wrong.

It composes diagnose's checks with ingest's cure (a proved ``modelport upgrade``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelport.diagnose.checks import GRAPH_CHECKS
from modelport.diagnose.findings import ERROR, WARNING, Finding
from modelport.diagnose.graph import GraphInfo, describe
from modelport.diagnose.open_model import open_onnx
from modelport.diagnose.session_checks import check_session
from modelport.ingest.upgrade import name_the_cure

__all__ = ["doctor", "DoctorReport"]


@dataclass
class DoctorReport:
    path: Path
    graph: GraphInfo
    findings: list[Finding] = field(default_factory=list)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == ERROR]

    @property
    def ok(self) -> bool:
        return not self.errors

    def codes(self) -> list[str]:
        return [f.code for f in self.findings]

    def to_json(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "ok": self.ok,
            "findings": [f.to_json() for f in self.findings],
            "graph": self.graph.to_json(),
        }


def doctor(path: str | Path) -> DoctorReport:
    model_path, model = open_onnx(path)
    report = DoctorReport(model_path, describe(model))
    report.findings += _bundle_findings(Path(path))
    for check in GRAPH_CHECKS:
        report.findings += check(model, model_path.parent)
    known = any(f.severity == ERROR for f in report.findings)
    report.findings += check_session(model_path, model, known)
    report.findings = name_the_cure(model_path, report.findings)
    order = {ERROR: 0, WARNING: 1}
    report.findings.sort(key=lambda f: order.get(f.severity, 2))
    return report


def _bundle_findings(path: Path) -> list[Finding]:
    """A bundle's own promise: its files are the ones it was verified with."""
    from modelport.bundle import MANIFEST, Bundle
    from modelport.errors import BundleError

    if not (path.is_dir() and (path / MANIFEST).is_file()):
        return []
    try:
        Bundle.open(path)
    except BundleError as exc:
        return [Finding(ERROR, "bundle", exc.message, exc.hint or "")]
    return []
