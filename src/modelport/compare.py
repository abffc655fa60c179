"""Compare one output with its reference (PyTorch, ONNX's reference evaluator, an original file's test data).
Pure numpy; returns data, the caller decides."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

__all__ = ["OutputDiff", "compare", "cosine"]


@dataclass
class OutputDiff:
    name: str
    expected_shape: list[int]
    actual_shape: list[int]
    expected_dtype: str
    actual_dtype: str
    max_abs: float
    max_rel: float
    passed: bool
    why: str = ""
    atol: float = 0.0  # the tolerance this output was held to (0 and 0: compared exactly)
    rtol: float = 0.0
    scale: float = 0.0  # the reference's largest finite magnitude in this output

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def compare(name: str, expected: np.ndarray, actual: np.ndarray, atol: float, rtol: float) -> OutputDiff:
    with np.errstate(all="ignore"):  # inf and NaN are compared on purpose below; numpy need not warn
        return _compare(name, np.asarray(expected), np.asarray(actual), atol, rtol)


def _compare(name: str, expected: np.ndarray, actual: np.ndarray, atol: float, rtol: float) -> OutputDiff:
    diff = OutputDiff(
        name,
        list(expected.shape),
        list(actual.shape),
        str(expected.dtype),
        str(actual.dtype),
        float("nan"),
        float("nan"),
        False,
        atol=float(atol) if np.issubdtype(expected.dtype, np.floating) else 0.0,
        rtol=float(rtol) if np.issubdtype(expected.dtype, np.floating) else 0.0,
    )
    if expected.shape != actual.shape:
        diff.why = f"shape {tuple(actual.shape)} instead of {tuple(expected.shape)}"
        return diff
    if expected.dtype != actual.dtype:
        diff.why = f"dtype {actual.dtype} instead of {expected.dtype}"
        return diff
    if expected.size == 0:
        diff.max_abs = diff.max_rel = 0.0
        diff.passed = True
        return diff
    if not np.issubdtype(expected.dtype, np.number) and expected.dtype != np.bool_:  # strings: equal or not
        diff.passed = bool(np.array_equal(expected, actual))
        diff.max_abs = diff.max_rel = 0.0 if diff.passed else float("inf")
        diff.why = "" if diff.passed else "values differ"
        return diff
    exp = expected.astype(np.float64)
    act = actual.astype(np.float64)
    finite_exp = np.abs(exp[np.isfinite(exp)])
    diff.scale = float(finite_exp.max()) if finite_exp.size else 0.0
    finite = np.isfinite(exp) & np.isfinite(act)
    special_match = (exp == act) | (np.isnan(exp) & np.isnan(act))  # same inf, or NaN on both sides
    gap = np.abs(np.where(finite, act, 0.0) - np.where(finite, exp, 0.0))
    abs_err = np.where(finite, gap, np.where(special_match, 0.0, np.inf))
    magnitude = np.abs(np.where(finite, exp, 0.0))
    # relative error only where the value is not itself within atol of zero: there atol governs, and a
    # ratio to a near-zero number is noise that would alarm for nothing
    rel_err = np.where((abs_err == 0) | (magnitude < atol), 0.0, abs_err / np.maximum(magnitude, 1e-300))
    diff.max_abs = float(abs_err.max())
    diff.max_rel = float(rel_err.max())
    exact = not np.issubdtype(expected.dtype, np.floating)
    tolerance = 0.0 if exact else atol + rtol * magnitude
    ok = bool(np.all(abs_err <= tolerance))
    diff.passed = ok
    if not ok:
        if np.isinf(diff.max_abs):
            diff.why = "NaN or inf where the reference has a different value"
        else:
            where = np.unravel_index(int(np.argmax(abs_err - tolerance)), abs_err.shape)
            diff.why = (
                f"max abs diff {diff.max_abs:.3g} (at {list(map(int, where))}: {act[where]:.6g} "
                f"against the reference's {exp[where]:.6g}) exceeds atol {atol:g} + rtol {rtol:g}"
                if not exact
                else f"{int(np.count_nonzero(abs_err))} values differ from the reference"
            )
    return diff


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    x, y = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    denom = np.linalg.norm(x) * np.linalg.norm(y)
    return float(x @ y / denom) if denom else float(np.array_equal(x, y))
