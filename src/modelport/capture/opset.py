"""Opset: deliver the requested one, or the lowest one that can express the model, and say so.

Three ways a low opset goes wrong: the TorchScript exporter refuses an operator ("added in version
11"), or exports ``Upsample``/``Resize`` that cannot match PyTorch's interpolate (silently wrong
numbers before opset 11), and the dynamo exporter's version conversion fails and leaves opset 18.
Each is turned into "opset raised from A to B: why" in one line, or, with ``strict_opset``, a refusal
that names B.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import onnx

from modelport.capture import ExportJob
from modelport.diagnose.graph import default_opset
from modelport.diagnose.semantics import check_resize
from modelport.errors import CaptureError

__all__ = ["export_at_opset", "needed_opset"]

_ADDED = re.compile(r"operator '([\w:]+)' to ONNX opset version \d+ is not supported\. .*?added in version (\d+)")
_UPSAMPLE = re.compile(r"(?:Unsupported: ONNX export of operator|Couldn't export operator) (?:aten::)?(upsample_\w+)")
RESIZE_OPSET = 11  # Resize with coordinate_transformation_mode (half_pixel, align_corners) arrives in 11


def needed_opset(exc: BaseException) -> tuple[str, int] | None:
    """(operator, lowest opset that has it) when an exporter error says the opset is too low."""
    seen: BaseException | None = exc
    while seen is not None:
        text = " ".join(str(seen).split())
        if match := _ADDED.search(text):
            return match[1], int(match[2])
        if match := _UPSAMPLE.search(text):
            return f"aten::{match[1]}", RESIZE_OPSET
        seen = seen.__cause__
    return None


def export_at_opset(strategy: Callable[[ExportJob], None], job: ExportJob) -> str | None:
    """Run ``strategy``; returns the note when the opset had to be raised (``job.opset`` then holds it)."""
    requested = job.opset
    reasons = []
    for _ in range(4):  # every round raises the opset, so this ends
        try:
            strategy(job)
        except CaptureError as exc:
            need = needed_opset(exc)
            if need is None or need[1] <= job.opset:
                raise
            reasons.append(f"{need[0]} needs opset {need[1]}")
            _raise_to(job, need[1], reasons[-1], requested)
            continue
        model = onnx.load(str(job.path), load_external_data=False)
        stamped = default_opset(model) or job.opset
        if stamped > job.opset:
            lowest = _lowest_convertible(job, stamped)
            reasons.append(f"the ONNX version converter cannot take this graph below opset {lowest}")
            _raise_to(job, lowest, reasons[-1], requested)
            break
        resize = check_resize(model, job.path.parent)
        if resize:
            reasons.append("a linear/cubic Upsample or Resize cannot match PyTorch's interpolate before opset 11")
            _raise_to(job, RESIZE_OPSET, reasons[-1], requested)
            continue
        break
    if job.opset == requested:
        return None
    return f"opset raised from {requested} to {job.opset}: {'; '.join(reasons)} (--strict-opset refuses instead)"


def _raise_to(job: ExportJob, opset: int, reason: str, requested: int) -> None:
    if job.strict_opset:
        raise CaptureError(
            f"--opset {requested} cannot express this model: {reason}",
            f"use --opset {opset} (the lowest that works), or drop --strict-opset to raise it automatically",
        )
    job.opset = opset


def _lowest_convertible(job: ExportJob, stamped: int) -> int:
    """The lowest opset between the requested and the stamped one that the converter reaches; the file is
    rewritten at it."""
    from onnx import version_converter

    model = onnx.load(str(job.path))
    for target in range(job.opset + 1, stamped):
        try:
            converted = version_converter.convert_version(model, target)
            onnx.checker.check_model(converted)
        except Exception:
            continue
        onnx.save(converted, str(job.path), save_as_external_data=job.external_data)
        return target
    return stamped
