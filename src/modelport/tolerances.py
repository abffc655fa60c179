"""Every tolerance rule in one place: the defaults, the floors per precision, the feed-scaled atol.

Verify, compare, optimize, import and the runners take their (atol, rtol) from here; nothing else
decides how close is close enough.

* ``DEFAULT_ATOL`` / ``DEFAULT_RTOL``: what an fp32 export is held to against PyTorch.
* ``tolerance_for(precision, atol, rtol, reference)``: below fp32 every intermediate value is rounded,
  so the atol floor is a fraction of the reference output's largest finite magnitude (``TOLERANCES``).
* ``feed_atol(atol, expected, stress)``: on the x100 stress feed the atol is multiplied by the output's
  largest magnitude on that feed (at least 1): fp32 kernels that sum in another order differ by a few
  ulps of the *terms* they add, and those terms are ~100x larger there.
* ``slight(max_abs, scale)``: a difference within ``EXCUSABLE_FRACTION`` of the output's scale, the size
  an x100-only kernel difference may have and still be kept (``verification.parity``).
"""

from __future__ import annotations

import math

import numpy as np

from modelport.errors import UsageError

__all__ = [
    "DEFAULT_ATOL",
    "DEFAULT_RTOL",
    "TOLERANCES",
    "EXCUSABLE_FRACTION",
    "check_tolerances",
    "tolerance_for",
    "feed_atol",
    "output_scale",
    "slight",
    "describe",
]

DEFAULT_ATOL = 1e-4
DEFAULT_RTOL = 1e-3
EXCUSABLE_FRACTION = 0.01  # an x100-only difference up to this fraction of the output's scale is kept

# Tolerance per precision. fp32 runs the graph as exported, so it is held to the bundle's own
# tolerance. Lower precisions round every intermediate value, and the error an output picks up is
# proportional to the magnitude of the values that were summed into it, not to the element itself:
# an element near zero in an output whose other elements reach 20 gets an error of size 20 * eps.
# So the atol floor is a fraction of the reference output's largest finite magnitude (at least 1),
# and rtol gets a floor too. Each floor rests on a measurement of max abs error / output scale over
# the verification feeds (two seeds, the x100 feed included):
#   bf16: openvino:default on an AVX512-BF16 CPU (bf16 inference) against ort:cpu:
#     all-MiniLM-L6-v2 token_embeddings (|x| up to 6.3) 0.0126 (max abs 0.075 against PyTorch),
#     sentence_embedding 0.0016, cosine to PyTorch >= 0.99992 (0.99994 sentence); the tests'
#     DynamicCNN (inputs up to x100, outputs up to ~30) 0.0048. (openvino:f32 on the same feeds: max
#     abs 1.1e-5.) The floor 3e-2 leaves 2.4x margin.
#   tf32 (CUDA with use_tf32=1, TensorRT's default TF32 flag, hence every ORT TensorRT session): TF32
#     rounds the inputs of each matmul and convolution to 10 mantissa bits and accumulates in fp32.
#     Simulated on the CPU (no GPU here): PyTorch with every matmul / linear / conv / attention input
#     rounded to TF32 (round to nearest even) against plain fp32: MiniLM token_embeddings 1.1e-3,
#     sentence_embedding 2.2e-4, DynamicCNN 5.0e-4 (while 3-8% of DynamicCNN's elements fall outside
#     the fp32 atol 1e-4 / rtol 1e-3, 26% on the x100 feed). The floor 3e-3 leaves 2.7x margin.
#   fp16: simulated on the CPU likewise, the whole PyTorch model in float16 (weights, activations,
#     kernels) against fp32: MiniLM token_embeddings 1.9e-3, sentence_embedding 4.3e-4, DynamicCNN
#     5.5e-4. TensorRT fp16 engines keep some layers in fp32, so they round less than this. The
#     floor 5e-3 leaves 2.7x margin.
#   "default" is whatever the device picks (bf16 on this CPU, f16 on GPUs and ARM): bf16's floor.
# Re-measure tf32 and fp16 on a GPU when one is at hand (issue 17).
TOLERANCES: dict[str, tuple[float, float]] = {  # precision -> (atol per unit of output scale, rtol)
    "fp32": (0.0, 0.0),
    "tf32": (3e-3, 5e-3),
    "fp16": (5e-3, 1e-2),
    "bf16": (3e-2, 2e-2),
    "default": (3e-2, 2e-2),
}


def check_tolerances(atol: float | None, rtol: float | None) -> None:
    """UsageError for a tolerance that is not a finite number >= 0 (an infinite one accepts anything)."""
    for flag, value in (("--atol", atol), ("--rtol", rtol)):
        if value is not None and not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
            raise UsageError(
                f"{flag} {value!r} is not a finite number >= 0",
                f"give {flag} a number such as 1e-4; an infinite tolerance would accept any answer",
            )


def output_scale(reference: object) -> float:
    """The reference's largest finite magnitude, at least 1 (1 for non-numeric or empty outputs)."""
    array = np.asarray(reference)
    if not np.issubdtype(array.dtype, np.number):
        return 1.0
    finite = np.abs(array.astype(np.float64))
    finite = finite[np.isfinite(finite)]
    return max(1.0, float(finite.max())) if finite.size else 1.0


def tolerance_for(precision: str | object, atol: float, rtol: float, reference: object = None) -> tuple[float, float]:
    """(atol, rtol) to compare an answer computed at ``precision`` (a name, or a runner with a ``precision``)
    with, given the fp32 tolerance and the reference output (its scale sets the low-precision atol floor)."""
    key = precision if isinstance(precision, str) else getattr(precision, "precision", "fp32")
    if key not in TOLERANCES:
        raise ValueError(f"no tolerance known for precision {key!r}; add it to TOLERANCES with a measurement")
    per_unit, floor_rtol = TOLERANCES[key]
    scale = 1.0 if reference is None else output_scale(reference)
    return max(atol, per_unit * scale), max(rtol, floor_rtol)


def feed_atol(atol: float, expected: object, stress: str = "") -> float:
    """``atol``, times the output's scale on the x100 stress feed (module docstring); float outputs only."""
    if stress != "x100" or not np.issubdtype(np.asarray(expected).dtype, np.floating):
        return atol
    return atol * output_scale(expected)


def slight(max_abs: float, scale: float) -> bool:
    """Whether a difference is small enough against its output's scale to be a kernel difference."""
    return math.isfinite(max_abs) and max_abs <= EXCUSABLE_FRACTION * max(1.0, scale)


def describe(precision: str, atol: float, rtol: float) -> str:
    """The tolerance in words, for reports: ``atol 0.0001, rtol 0.001`` or the low-precision rule."""
    if precision == "fp32" or precision not in TOLERANCES:
        return f"atol {atol:g}, rtol {rtol:g}"
    per_unit, floor_rtol = TOLERANCES[precision]
    return f"{precision} precision: atol {per_unit:g} x each output's largest magnitude, rtol {max(rtol, floor_rtol):g}"
