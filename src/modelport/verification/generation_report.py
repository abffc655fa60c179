"""The result of the generation checks (``verification.generation``): one ``Check`` per check and prompt,
gathered in a ``GenerationReport`` that the CLI renders, ``verify`` returns and the manifest records."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from modelport.errors import ParityError

__all__ = ["Check", "GenerationReport"]


@dataclass
class Check:
    name: str
    prompt: int | None  # index into the report's prompts
    passed: bool
    detail: str
    step: int | None = None  # the first new token where it went wrong (0 = the token after the prompt)
    position: int | None = None  # that token's position in the sequence
    figures: dict[str, Any] = field(default_factory=dict)


@dataclass
class GenerationReport:
    prompt_lengths: list[int]
    new_tokens: int
    logits_tolerance: float
    checks: list[Check] = field(default_factory=list)
    seconds: float = 0.0
    data: str | None = None  # where the prompts came from
    unit: str = "tokens"  # of prompt_lengths ("samples" for a speech model's audio)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    def summary(self) -> str:
        fails = self.failures
        if not fails:
            return (
                f"{len(self.checks)} generation checks passed on {len(self.prompt_lengths)} prompts of "
                f"{min(self.prompt_lengths)}-{max(self.prompt_lengths)} {self.unit}, {self.new_tokens} new tokens each"
            )
        return f"{len(fails)} of {len(self.checks)} generation checks failed; first: {_where(fails[0])}"

    def raise_if_failed(self) -> None:
        if self.failures:
            first = self.failures[0]
            raise ParityError(
                f"the bundle does not generate PyTorch's tokens: {_where(first)}",
                "the graph's cache handling is wrong for this model; re-export it (a bundle edited by hand fails "
                "this way), or report the architecture",
                report=self,
            )

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": "generation",
            "passed": self.passed,
            "prompt_lengths": self.prompt_lengths,
            "new_tokens": self.new_tokens,
            "logits_tolerance": self.logits_tolerance,
            "seconds": round(self.seconds, 3),
            "data": self.data,
            "unit": self.unit,
            "checks": [asdict(c) for c in self.checks],
        }


def _where(check: Check) -> str:
    place = f"check {check.name!r}"
    if check.prompt is not None:
        place += f", prompt {check.prompt}"
    if check.step is not None:
        place += f", step {check.step} (position {check.position})"
    return f"{place}: {check.detail}"
