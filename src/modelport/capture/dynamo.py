"""``torch.export`` → ONNX (the dynamo exporter).

Dynamic dimensions go in as ``dynamic_shapes`` keyed by forward's parameter names, one
``torch.export.Dim`` per symbol so a symbol shared by two inputs is one dimension. ``dynamic_axes``
is never passed here: this exporter applies it by dict order, not by name.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from modelport.calling import forward_params
from modelport.capture import ExportJob
from modelport.errors import CaptureError

__all__ = ["NAME", "export", "dynamic_shapes"]

NAME = "dynamo"
_CALL_SITE = re.compile(r'File "([^"]+)", line (\d+), in \S+\n\s*(.+)')
_DATA_DEPENDENT = (
    "GuardOnDataDependentSymNode",
    "Could not guard on data-dependent",
    "Could not extract specialized integer",
)


def dynamic_shapes(job: ExportJob) -> dict[str, Any] | tuple[Any, ...]:
    import torch

    dims = {name: torch.export.Dim(name, min=d.min, max=d.max) for name, d in job.signature.dims.items()}
    per_input = [
        {axis: dims[d] for axis, d in enumerate(spec.dims) if isinstance(d, str)} or None
        for spec in job.signature.inputs
    ]
    if job.plan.by_name or forward_params(job.module) is not None:
        return dict(zip(job.plan.params, per_input, strict=True))
    return tuple(per_input)  # forward(*args): positions are all there is


def export(job: ExportJob) -> None:
    import torch

    if isinstance(job.module, torch.jit.ScriptModule):
        raise CaptureError("a TorchScript module cannot go through torch.export", "use --exporter trace")
    names = [s.name for s in job.signature.inputs]
    common = dict(
        input_names=names,
        output_names=job.output_names,
        opset_version=job.opset,
        dynamo=True,
        external_data=job.external_data,
        verbose=False,
    )
    try:
        if job.exported_program is not None:
            program = torch.onnx.export(job.exported_program, (), **common)
        else:
            args, kwargs = job.plan.split(job.example)
            program = torch.onnx.export(job.module, args, kwargs=kwargs, dynamic_shapes=dynamic_shapes(job), **common)
        program.save(str(job.path), external_data=job.external_data)
    except CaptureError:
        raise
    except Exception as exc:
        raise explain(exc) from exc


def explain(exc: BaseException) -> CaptureError:
    """Turn torch.export's long report into one line with the place and the fix."""
    text = "\n".join(str(e) for e in _chain(exc))
    site = _CALL_SITE.search(text)
    where = f" at {Path(site.group(1)).name}:{site.group(2)}: {site.group(3).strip()}" if site else ""
    if any(marker in text for marker in _DATA_DEPENDENT):
        return CaptureError(
            f"torch.export cannot follow data-dependent control flow{where}",
            "rewrite the branch with torch.cond (or the loop with torch._higher_order_ops.while_loop), "
            "or try --exporter trace",
        )
    if "Constraints violated" in text or "specialized" in text and "Dim" in text:
        detail = next(
            (ln.strip() for ln in text.splitlines() if "must be specialized" in ln or "specialized to" in ln), ""
        )
        return CaptureError(
            f"the model fixes a dimension declared dynamic{where}" + (f": {detail}" if detail else ""),
            "declare that dimension as a number in --input, or remove the code that fixes its size",
        )
    summary = _summary(text)
    return CaptureError(
        f"torch.export failed{where}: {summary}", "try --exporter trace, or fix the model code named above"
    )


def _chain(exc: BaseException | None) -> list[BaseException]:
    out = []
    while exc is not None and exc not in out:
        out.append(exc)
        exc = exc.__cause__ or exc.__context__
    return out


def _summary(text: str) -> str:
    marker = "## Exception summary"
    if marker in text:
        text = text.split(marker, 1)[1]
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[0][:300] if lines else "unknown error"
