"""The text a generation bundle's candidates are judged on, and what fp32 PyTorch says about it.

The user's lines (``--data texts.txt``; built-in sentences without it) are tokenized with the bundle's
tokenizer and packed, in order, into chunks of ``chunk`` tokens, so short lines still give the model
context to predict from. Even chunks are the search half, odd ones the held-out half (at most
``MAX_CHUNKS`` each); the held-out token ids are written into the optimized bundle for ``verify``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from modelport.errors import UsageError
from modelport.generation.model import LanguageModel
from modelport.verification.generation import pytorch_greedy
from modelport.verification.generation_prompts import DEFAULT_TEXTS, read_texts
from modelport.verification.text_verify import pytorch_logits

__all__ = ["TextData", "load_text_data", "Reference", "pytorch_reference", "CHUNK", "MAX_CHUNKS", "GREEDY_NEW"]

CHUNK = 128  # tokens per chunk
MAX_CHUNKS = 16  # per half: 2048 tokens each, the reference logits of both halves in memory at once
GREEDY_PROMPTS = 4  # held-out chunks whose first GREEDY_PROMPT tokens are continued greedily by both
GREEDY_PROMPT = 32
GREEDY_NEW = 16


@dataclass
class TextData:
    search: list[list[int]]
    held_out: list[list[int]]
    source: str  # "texts.txt (120 lines)" or "built-in sentences"
    given: bool  # False: built-in sentences, not the user's text

    def describe(self) -> str:
        tokens = sum(map(len, self.search)) + sum(map(len, self.held_out))
        return f"{self.source}: {tokens} tokens in {len(self.search)} + {len(self.held_out)} chunks (search + held-out)"


def load_text_data(lm: LanguageModel, data: Any, chunk: int = CHUNK) -> TextData:
    """``data``: a text file or a list of strings (tokenized with the bundle's tokenizer), or a list of
    token-id lists (for a bundle without one); None: built-in sentences."""
    chunk = max(2, min(chunk, lm.layout.max_context - 1))
    if _token_lists(data):
        pool = [int(t) for ids in data for t in ids]
        bad = [t for t in pool if not 0 <= t < lm.layout.vocab_size]
        if bad:
            raise UsageError(f"token id {bad[0]} is outside the vocabulary (0..{lm.layout.vocab_size - 1})",
                             "pass ids from the model's own tokenizer")  # fmt: skip
        name, source, given = "token ids", f"token ids given in Python ({len(data)} lists)", True
    else:
        texts, name = read_texts(data)
        given = texts is not None
        lines = list(texts or DEFAULT_TEXTS)
        if not lm.bundle.manifest["generation"].get("tokenizer"):
            raise UsageError(
                f"{lm.bundle.path} carries no tokenizer, so text cannot be turned into tokens to judge it on",
                "pass token ids (data=[[...], ...]), or re-export with the tokenizer saved in the model folder",
            )
        pool = [t for ids in lm.encode(lines) for t in ids]
        source = f"{name} ({len(lines)} lines)" if given else "built-in sentences"
    chunks = [pool[i : i + chunk] for i in range(0, len(pool), chunk)]
    chunks = [c for c in chunks if len(c) >= 2]
    if len(chunks) < 2:
        raise UsageError(
            f"--data {name} gives {len(pool)} tokens: too little to judge a compressed model on",
            f"pass more text: at least {2 * chunk} tokens (a few paragraphs), better {2 * MAX_CHUNKS * chunk}",
        )
    return TextData(chunks[0::2][:MAX_CHUNKS], chunks[1::2][:MAX_CHUNKS], source, given)


def _token_lists(data: Any) -> bool:
    return (
        isinstance(data, (list, tuple))
        and bool(data)
        and all(
            isinstance(d, (list, tuple)) and all(isinstance(t, int) and not isinstance(t, bool) for t in d)
            for d in data
        )
    )


@dataclass
class Reference:
    """fp32 PyTorch on the data: logits at every position of every chunk, and greedy continuations."""

    search: list[np.ndarray]
    held_out: list[np.ndarray]
    prompts: list[list[int]]
    greedy: list[list[int]]


def pytorch_reference(model: Any, data: TextData, pad_id: int) -> Reference:
    prompts = [c[:GREEDY_PROMPT] for c in data.held_out[:GREEDY_PROMPTS]]
    greedy = [pytorch_greedy(model, p, GREEDY_NEW, pad_id).tokens for p in prompts]
    return Reference(pytorch_logits(model, data.search), pytorch_logits(model, data.held_out), prompts, greedy)
