"""The prompts the generation checks run on: the user's texts (``--data``), or plain sentences, and always
one long prompt that reaches toward the model's maximum context (past its sliding window, if any)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from modelport.errors import ParityError, UsageError
from modelport.generation.model import LanguageModel

__all__ = ["DEFAULT_TEXTS", "build_prompts", "read_texts"]

LONGEST = 1024  # tokens of the long-context prompt at most, whatever the model's maximum (PyTorch's time)
#: used when the user gives no --data: plain sentences of different lengths
DEFAULT_TEXTS = (
    "The cat slept",
    "She forgot her umbrella, so she waited under the awning until the rain eased.",
    "Interest rates rose again this quarter, putting pressure on homeowners with variable mortgages, and the "
    "bank said it would review its lending rules before the end of the year.",
)
MAX_DATA_PROMPTS = 8


def build_prompts(lm: LanguageModel, texts: Sequence[str] | None, new_tokens: int, seed: int = 0) -> list[list[int]]:
    """Token ids: each text (or random ids of several lengths without a tokenizer), then one long prompt that
    reaches toward the maximum context (and past the sliding window, where there is one)."""
    layout = lm.layout
    room = layout.max_context - new_tokens - 1
    if room < 2:
        raise ParityError(
            f"the model's maximum context ({layout.max_context}) leaves no room for a prompt and {new_tokens} "
            "new tokens",
            "verify with fewer new tokens",
        )
    rng = np.random.default_rng(seed)
    if lm.bundle.manifest["generation"].get("tokenizer"):
        prompts = [p[:room] for p in lm.encode(list(texts or DEFAULT_TEXTS)[:MAX_DATA_PROMPTS])]
    else:
        prompts = [rng.integers(0, layout.vocab_size, n).tolist() for n in (3, 9, 33) if n <= room]
    long = min(room, LONGEST)
    if layout.sliding_window:
        long = min(room, max(long, layout.sliding_window + new_tokens + 8))
    pool = [t for p in prompts for t in p] or [0]
    prompts.append([pool[i % len(pool)] for i in range(long)])
    return prompts


def read_texts(data: Any) -> tuple[list[str] | None, str | None]:
    """Prompts for the checks: a text file (one per line) or a list of strings."""
    if data is None:
        return None, None
    if isinstance(data, (str, Path)):
        path = Path(data)
        if not path.is_file():
            raise UsageError(f"--data {str(data)!r} is not a file", "pass a text file with one prompt per line")
        try:
            lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
        except UnicodeDecodeError:
            raise UsageError(f"--data {path} is not UTF-8 text", "pass a text file with one prompt per line") from None
        texts, name = [line for line in lines if line], path.name
    else:
        texts, name = [str(t) for t in data if str(t).strip()], "prompts given in Python"
    if not texts:
        raise UsageError(f"--data {name} holds no prompt", "put one prompt per line")
    return texts, name
