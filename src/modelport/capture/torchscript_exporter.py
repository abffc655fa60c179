"""The TorchScript ONNX exporter (``dynamo=False``), shared by the trace and script strategies."""

from __future__ import annotations

import re

import torch

from modelport.capture import ExportJob
from modelport.errors import CaptureError, first_line

__all__ = ["to_onnx", "dynamic_axes"]

_UNSUPPORTED = re.compile(r"(?:Exporting the operator '|Couldn't export operator )([\w:.]+)")


def dynamic_axes(job: ExportJob) -> dict[str, dict[int, str]]:
    """From the spec, checked against ``input_names``: a wrong key is otherwise a warning and a static model."""
    axes = {
        spec.name: {axis: d for axis, d in enumerate(spec.dims) if isinstance(d, str)} for spec in job.signature.inputs
    }
    axes = {name: a for name, a in axes.items() if a}
    names = [s.name for s in job.signature.inputs]
    stray = [k for k in axes if k not in names]
    if stray:
        raise CaptureError(f"dynamic_axes names {stray} which are not inputs {names}", "this is a modelport bug")
    return axes


def to_onnx(job: ExportJob, model: torch.nn.Module, what: str) -> None:
    try:
        torch.onnx.export(
            model,
            tuple(job.example),
            str(job.path),
            dynamo=False,
            input_names=[s.name for s in job.signature.inputs],
            output_names=job.output_names,
            opset_version=job.opset,
            dynamic_axes=dynamic_axes(job),
            do_constant_folding=True,
        )
    except CaptureError:
        raise
    except Exception as exc:
        missing = _UNSUPPORTED.search(" ".join(str(exc).split()))
        if missing and "added in version" not in str(exc):
            raise CaptureError(
                f"the TorchScript exporter has no ONNX translation for {missing[1]} (at opset {job.opset} or any)",
                "use --exporter dynamo (it decomposes the op), or register one with "
                "torch.onnx.register_custom_op_symbolic",
            ) from exc
        raise CaptureError(
            f"the TorchScript exporter failed on the {what} model: {first_line(exc)}",
            "try another --exporter, or a different --opset",
        ) from exc
