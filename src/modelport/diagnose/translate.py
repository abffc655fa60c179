"""ONNX Runtime's errors, rewritten in terms of what the user did and what to change.

The original message stays on the exception's ``__cause__`` (shown with ``--debug``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from modelport.errors import BundleError, FeedError, ModelportError, first_line

__all__ = ["ort_run_error", "ort_load_error"]

_BAD_DIMS = re.compile(r"Got invalid dimensions for input: (\S+) for the following indices(.*?)Please fix", re.S)
_INDEX = re.compile(r"index: (\d+) Got: (\d+) Expected: (\d+)")
_MISSING = re.compile(r"Required inputs \((\[.*?\])\) are missing")
_REQUIRES = re.compile(r"Model requires (\d+) inputs\. Input Feed contains (\d+)")
_DTYPE = re.compile(r"Unexpected input data type\. Actual: \((tensor\(\w+\))\) , expected: \((tensor\(\w+\))\)")
_RANK = re.compile(r"Invalid rank for input: (\S+) Got: (\d+) Expected: (\d+)")
_PARAM = re.compile(r"(^onnx::)|(\.(weight|bias|running_mean|running_var)$)")
_SYMBOL = {0: "batch", 1: "seq", 2: "h", 3: "w"}


def ort_run_error(exc: BaseException, inputs: list[Any], feed: dict[str, np.ndarray], path: Path) -> ModelportError:
    """``exc`` raised by ``InferenceSession.run``; ``inputs`` the session's inputs (``.name``, ``.shape``)."""
    text = " ".join(str(exc).split())
    by_name = {i.name: i for i in inputs}
    if match := _BAD_DIMS.search(str(exc)):
        return _fixed_dims(match[1], _INDEX.findall(match[2]), by_name)
    missing = _missing(text, inputs, feed)
    if missing:
        params = [m for m in missing if _PARAM.search(m)]
        if params:
            return FeedError(
                f"the model wants {len(inputs)} inputs but {len(feed)} were fed: {len(params)} of them are weights "
                f"({', '.join(params[:3])}{', ...' if len(params) > 3 else ''}) — it was exported with "
                "export_params=False",
                "re-export with export_params=True (torch.onnx.export's default) or with modelport export",
            )
        return FeedError(f"no feed for input(s) {', '.join(missing)}", f"add --feed {missing[0]}=FILE.npy")
    if match := _DTYPE.search(text):
        culprit = next((n for n, a in feed.items() if n in by_name and _ort_type(a) == match[1]), None)
        got, want = _numpy_name(match[1][7:-1]), _numpy_name(match[2][7:-1])
        return FeedError(
            f"input {culprit or '?'!r} is {got}, the model expects {want}", f"convert it: array.astype('{want}')"
        )
    if match := _RANK.search(text):
        shape = list(by_name[match[1]].shape) if match[1] in by_name else "?"
        return FeedError(
            f"input {match[1]!r} has rank {match[2]}, the model expects rank {match[3]} ({shape})",
            "reshape the array to the model's dims",
        )
    return FeedError(f"ONNX Runtime failed: {first_line(exc)}", _doctor_hint(path, "to see what the model expects"))


def ort_load_error(exc: BaseException, path: Path) -> ModelportError:
    """``exc`` raised while creating a session. External data problems are named from the model itself
    (ONNX Runtime's wording changes between versions; the model's own locations do not)."""
    text = " ".join(str(exc).split())
    if "external" in text.lower() or ".data" in text:
        finding = _external_data_finding(path)
        if finding is not None:
            return BundleError(finding.message, finding.fix)
    return BundleError(f"ONNX Runtime cannot load {path.name}: {first_line(exc)}", _doctor_hint(path, "for the cause"))


def _doctor_hint(path: Path, why: str) -> str:
    """Point at ``modelport doctor`` only with a path that will still exist: an export's temporary one won't."""
    if ".partial-" in path.parent.name:
        return "the exported graph rejected one of modelport's own verification feeds: rerun with --debug and report it"
    return f"run `modelport doctor {path}` {why}"


def _fixed_dims(name: str, axes: list[tuple[str, str, str]], by_name: dict[str, Any]) -> FeedError:
    shape = list(by_name[name].shape) if name in by_name else []
    bad = {int(axis): (int(got), int(want)) for axis, got, want in axes}
    said = ", ".join(f"axis {a} was fixed to {want} at export, the feed has {got}" for a, (got, want) in bad.items())
    spec = ",".join(
        (_SYMBOL.get(a, f"d{a}") if a in bad else str(d) if isinstance(d, int) else str(d)) for a, d in enumerate(shape)
    )
    bounds = " ".join(f"--dim {_SYMBOL.get(a, f'd{a}')}=1..{max(got, want) * 2}" for a, (got, want) in bad.items())
    return FeedError(
        f"input {name!r}: {said}",
        f"the model was exported without dynamic axes; re-export with them: --input {name}:{spec} {bounds} "
        "(torch.onnx.export: dynamic_shapes=... / dynamic_axes=...)",
    )


def _missing(text: str, inputs: list[Any], feed: dict[str, np.ndarray]) -> list[str]:
    if match := _MISSING.search(text):
        return re.findall(r"'([^']*)'", match[1])
    if _REQUIRES.search(text):
        return [i.name for i in inputs if i.name not in feed]
    return []


def _ort_type(array: np.ndarray) -> str:
    names = {"float32": "float", "float64": "double"}
    return f"tensor({names.get(str(array.dtype), str(array.dtype))})"


def _numpy_name(ort_name: str) -> str:
    return {"float": "float32", "double": "float64"}.get(ort_name, ort_name)


def _external_data_finding(path: Path) -> Any:
    import onnx

    from modelport.diagnose.checks import check_external_data

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # unreadable model: the generic message below says so
        return None
    return next(iter(check_external_data(model, path.parent)), None)
