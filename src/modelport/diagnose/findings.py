"""A finding: what doctor saw, how bad it is, and the fix."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["Finding", "ERROR", "WARNING", "INFO", "few"]

ERROR, WARNING, INFO = "error", "warning", "info"


@dataclass(frozen=True)
class Finding:
    severity: str  # error: the model fails or answers wrong; warning: likely not what you meant; info: facts
    code: str  # stable identifier, e.g. "static-dims", for scripts and tests
    message: str
    fix: str = ""
    node: str = ""  # node or input the finding is about, when there is one

    def one_line(self) -> str:
        return f"{self.message} — {self.fix}" if self.fix else self.message

    def to_json(self) -> dict[str, Any]:
        return {
            "severity": self.severity,
            "code": self.code,
            "message": self.message,
            "fix": self.fix,
            "node": self.node,
        }


def few(names: list[str], n: int = 3) -> str:
    return ", ".join(names[:n]) + (f" +{len(names) - n} more" if len(names) > n else "")
