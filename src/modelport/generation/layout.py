"""The decoder graph's cache geometry and names (optimum's), as the manifest's ``generation.layout`` holds it."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

__all__ = ["DecoderLayout", "BATCH", "SEQ", "PAST", "TOTAL"]

BATCH, SEQ, PAST, TOTAL = "batch_size", "sequence_length", "past_sequence_length", "total_sequence_length"


@dataclass(frozen=True)
class DecoderLayout:
    """What a generation loop needs to know about the graph's cache, read off the config."""

    layers: int
    kv_heads: int
    head_dim: int
    vocab_size: int
    max_context: int
    sliding_window: int | None
    position_ids: bool
    kv_dtype: str = "float32"

    @property
    def input_names(self) -> list[str]:
        base = ["input_ids", "attention_mask"] + (["position_ids"] if self.position_ids else [])
        return base + self.past_names

    @property
    def past_names(self) -> list[str]:
        return [f"past_key_values.{i}.{kind}" for i in range(self.layers) for kind in ("key", "value")]

    @property
    def output_names(self) -> list[str]:
        return ["logits"] + [f"present.{i}.{kind}" for i in range(self.layers) for kind in ("key", "value")]

    def to_json(self) -> dict[str, Any]:
        return {
            "layers": self.layers,
            "kv_heads": self.kv_heads,
            "head_dim": self.head_dim,
            "kv_dtype": self.kv_dtype,
            "vocab_size": self.vocab_size,
            "max_context": self.max_context,
            "sliding_window": self.sliding_window,
            "position_ids": self.position_ids,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DecoderLayout:
        return cls(**{k: data[k] for k in inspect.signature(cls).parameters if k in data})
