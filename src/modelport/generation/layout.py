"""The decoder graph's cache geometry and names (optimum's), as the manifest's ``generation.layout`` holds it."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

__all__ = ["DecoderLayout", "Seq2SeqLayout", "BATCH", "SEQ", "PAST", "TOTAL", "ENCODER_SEQ"]

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


#: the encoder's sequence axis (text tokens, or Whisper's positions after its convolutions)
ENCODER_SEQ = "encoder_sequence_length"


@dataclass(frozen=True)
class Seq2SeqLayout(DecoderLayout):
    """An encoder-decoder's two graphs under optimum's names. The decoder graph (the bundle's ``model.onnx``)
    takes ``input_ids`` (the decoder's tokens), ``encoder_attention_mask`` (text encoders only) and per layer
    ``past_key_values.{i}.decoder.key/.value`` (its own past, growing by a token a step) and
    ``past_key_values.{i}.encoder.key/.value`` (cross-attention keys/values, written once per request by the
    encoder graph as ``present.{i}.encoder.key/.value``) -> ``logits``, ``present.{i}.decoder.key/.value``.
    ``past_names``/``output_names`` are the growing part only, so the step caches serve both kinds."""

    encoder_input: str = "input_ids"  # or "input_features" (Whisper: [batch, mel bins, frames])
    encoder_mask: bool = True  # the decoder reads ``encoder_attention_mask`` (text encoders)
    max_source: int = 512  # encoder positions at most (Whisper: exactly this many)
    mel_bins: int = 0  # Whisper's input_features [batch, mel_bins, frames]
    frames: int = 0
    model_dim: int = 0  # d_model: the width of ``last_hidden_state``

    @property
    def input_names(self) -> list[str]:
        names = ["input_ids"] + (["encoder_attention_mask"] if self.encoder_mask else [])
        for i in range(self.layers):
            names += [
                f"past_key_values.{i}.{part}.{kind}" for part in ("decoder", "encoder") for kind in ("key", "value")
            ]
        return names

    @property
    def past_names(self) -> list[str]:
        return [f"past_key_values.{i}.decoder.{kind}" for i in range(self.layers) for kind in ("key", "value")]

    @property
    def cross_names(self) -> list[str]:
        return [f"past_key_values.{i}.encoder.{kind}" for i in range(self.layers) for kind in ("key", "value")]

    @property
    def output_names(self) -> list[str]:
        return ["logits"] + [f"present.{i}.decoder.{kind}" for i in range(self.layers) for kind in ("key", "value")]

    @property
    def encoder_input_names(self) -> list[str]:
        return ["input_ids", "attention_mask"] if self.encoder_input == "input_ids" else ["input_features"]

    @property
    def encoder_output_names(self) -> list[str]:
        cross = [f"present.{i}.encoder.{kind}" for i in range(self.layers) for kind in ("key", "value")]
        return ["last_hidden_state", *cross]

    def to_json(self) -> dict[str, Any]:
        return {
            **super().to_json(),
            "encoder_input": self.encoder_input,
            "encoder_mask": self.encoder_mask,
            "max_source": self.max_source,
            "mel_bins": self.mel_bins,
            "frames": self.frames,
            "model_dim": self.model_dim,
        }
