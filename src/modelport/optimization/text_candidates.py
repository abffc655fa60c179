"""The candidates ``optimize`` tries on a generation bundle (``text_search`` builds and measures them).

A candidate is a backend (the runtime that generates with it), a recipe (how its ``model.onnx`` is made
from the exported graph; None: the exported graph as it is) and the precision ``--precision`` selects it
by. The recipes: ONNX Runtime's round-to-nearest ``MatMulNBits`` (``WeightsNBits``: int8, int4 in blocks
of 32/128, the LM head or the first and last blocks kept at int8) and NNCF's data-aware int4
(``NncfWeightsNBits``: AWQ, scale estimation, a share of the layers at int8), calibrated on the first
``CALIBRATION_CHUNKS`` token chunks of the search half of the text. Both write ``MatMulNBits``, which
OpenVINO's ONNX reader turns into its own u4 compressed weights, so the same files run on OpenVINO too.

``RUNNER_OPTIONS`` are how a candidate's runtime runs the same file: OpenVINO stateful decoding (the KV
cache in the compiled model's variables instead of tensors fed and fetched every step), and the cache
precision asked of OpenVINO's CPU plugin, and a prefill backend: the prompt pass on OpenVINO (bf16 where
the CPU has it: AMX or AVX512-BF16), the steps after it on ONNX Runtime's int4 kernels
(``cache.PrefillCache``). The chosen candidate's options go into the bundle's manifest, and
``modelport.load`` applies them on that backend.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from modelport.bundle import MODEL_FILE
from modelport.generation.layout import DecoderLayout
from modelport.generation.loop import batch_feed
from modelport.optimization.recipes import NncfWeightsNBits, WeightsNBits

__all__ = ["PLAN", "RUNNER_OPTIONS", "TEXT_CANDIDATES", "TextRecipe", "calibration_feeds", "weight_bytes"]

CALIBRATION_CHUNKS = 4  # search chunks NNCF calibrates on: 512 tokens, enough for AWQ's channel statistics

TextRecipe = WeightsNBits | NncfWeightsNBits
_AWQ = NncfWeightsNBits(False, 128, awq=True)

# name -> (backend, recipe or None for the exported graph, precision)
PLAN: dict[str, tuple[str, TextRecipe | None, str]] = {
    "fp32": ("ort:cpu", None, "fp32"),
    "openvino-fp32": ("openvino:f32", None, "fp32"),
    "openvino-bf16": ("openvino:bf16", None, "bf16"),
    "int8-weights": ("ort:cpu", WeightsNBits(8, 32, True), "int8"),
    "int4-asym-32": ("ort:cpu", WeightsNBits(4, 32, False), "int4"),
    "int4-sym-32": ("ort:cpu", WeightsNBits(4, 32, True), "int4"),
    "int4-asym-128": ("ort:cpu", WeightsNBits(4, 128, False), "int4"),
    "int4-sym-128": ("ort:cpu", WeightsNBits(4, 128, True), "int4"),
    "int4-asym-32-float-compute": ("ort:cpu", WeightsNBits(4, 32, False, accuracy_level=0), "int4"),
    "int4-asym-32-head-int8": ("ort:cpu", WeightsNBits(4, 32, False, head_bits=8), "int4"),
    "int4-asym-32-head-fp32": ("ort:cpu", WeightsNBits(4, 32, False, head_bits=32), "int4"),
    "int4-asym-32-edges-int8": ("ort:cpu", WeightsNBits(4, 32, False, head_bits=8, edge_bits=8), "int4"),
    "openvino-int4-sym-128": ("openvino:f32", WeightsNBits(4, 128, True), "int4"),
    "nncf-int4-asym-128-awq": ("ort:cpu", _AWQ, "int4"),
    "nncf-int4-asym-128-awq-se": ("ort:cpu", NncfWeightsNBits(False, 128, awq=True, scale_estimation=True), "int4"),
    "nncf-int4-asym-128-awq-ratio-0.8": ("ort:cpu", NncfWeightsNBits(False, 128, 0.8, awq=True), "int4"),
    "openvino-nncf-int4-asym-128-awq": ("openvino:f32", _AWQ, "int4"),
    "openvino-fp32-stateful": ("openvino:f32", None, "fp32"),
    "openvino-int4-sym-128-stateful": ("openvino:f32", WeightsNBits(4, 128, True), "int4"),
    "openvino-int4-sym-128-stateful-kv-u8": ("openvino:f32", WeightsNBits(4, 128, True), "int4"),
    "int4-sym-128-prefill-openvino-bf16": ("ort:cpu", WeightsNBits(4, 128, True), "int4"),
    "int4-sym-128-prefill-openvino-f32": ("ort:cpu", WeightsNBits(4, 128, True), "int4"),
}
_STATE = {"stateful": True}
RUNNER_OPTIONS: dict[str, dict[str, object]] = {
    "openvino-fp32-stateful": _STATE,
    "openvino-int4-sym-128-stateful": _STATE,
    "openvino-int4-sym-128-stateful-kv-u8": {**_STATE, "kv_cache_precision": "u8"},
    "int4-sym-128-prefill-openvino-bf16": {"prefill": "openvino:bf16"},
    "int4-sym-128-prefill-openvino-f32": {"prefill": "openvino:f32"},
}
TEXT_CANDIDATES = tuple(PLAN)


def calibration_feeds(layout: DecoderLayout, chunks: list[list[int]], pad_id: int) -> list[dict[str, np.ndarray]]:
    """A prompt pass per token chunk, as the decoder graph takes it: ids, mask, positions (where the
    layout has them) and an empty cache (``[1, kv_heads, 0, head_dim]`` per past tensor)."""
    empty = np.zeros((1, layout.kv_heads, 0, layout.head_dim), np.dtype(layout.kv_dtype))
    return [
        {**batch_feed([chunk], pad_id, layout.position_ids), **{name: empty for name in layout.past_names}}
        for chunk in chunks
    ]


def weight_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.iterdir() if f.name.startswith(MODEL_FILE))
