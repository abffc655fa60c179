"""``torch.export`` → ONNX (the dynamo exporter).

Dynamic dimensions go in as ``dynamic_shapes`` keyed by forward's parameter names, one
``torch.export.Dim`` per symbol so a symbol shared by two inputs is one dimension. ``dynamic_axes``
is never passed here: this exporter applies it by dict order, not by name.
"""

from __future__ import annotations

import linecache
import re
from pathlib import Path
from typing import Any

from modelport.capture import ExportJob
from modelport.errors import CaptureError, GraphCheckError
from modelport.forward import forward_params
from modelport.onnx_graph import RenameDims

__all__ = ["export_nonstrict", "export_strict", "dynamic_shapes", "explain"]
_FILE_LINE = re.compile(r'File "([^"]+)", line (\d+)')
_DATA_DEPENDENT = (
    "GuardOnDataDependentSymNode",
    "Could not guard on data-dependent",
    "Could not extract specialized integer",
    "Data-dependent branching",
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


def export(job: ExportJob, strict: bool) -> None:
    """torch.export (strict or not) → ExportedProgram → ONNX. Two steps, so the capture mode is ours to pick."""
    import torch

    if isinstance(job.module, torch.jit.ScriptModule):
        raise CaptureError("a TorchScript module cannot go through torch.export", "use --exporter script or trace")
    if strict and job.exported_program is not None:
        raise CaptureError("already captured: the source is an ExportedProgram", "the non-strict attempt used it as is")
    external = job.external_data  # sums every parameter's size: once
    try:
        program = job.exported_program
        if program is None:
            args, kwargs = job.plan.split(job.example)
            program = torch.export.export(job.module, args, kwargs, dynamic_shapes=dynamic_shapes(job), strict=strict)
        onnx_program = torch.onnx.export(
            program,
            (),
            input_names=[s.name for s in job.signature.inputs],
            output_names=job.output_names,
            opset_version=job.opset,
            dynamo=True,
            external_data=external,
            verbose=False,
        )
        RenameDims(job.signature)(onnx_program.model)  # torch.onnx's model is an onnx-ir Model: renamed in place
        onnx_program.save(str(job.path), external_data=external)
    except (CaptureError, GraphCheckError):
        raise
    except Exception as exc:
        raise explain(exc) from exc


def export_nonstrict(job: ExportJob) -> None:
    export(job, strict=False)


def export_strict(job: ExportJob) -> None:
    export(job, strict=True)


def explain(exc: BaseException) -> CaptureError:
    """Turn torch.export's long report into one line with the place in the user's code and the fix."""
    text = "\n".join(str(e) for e in _chain(exc))
    where, source = _user_site(text)
    at = f" at {where}: {source}" if where else ""
    if any(marker in text for marker in _DATA_DEPENDENT):
        loop = source.startswith(("for ", "while ")) or "range(" in source
        example = (
            "the loop with torch._higher_order_ops.while_loop(cond_fn, body_fn, (i, x))"
            if loop
            else "the branch with torch.cond, e.g. `return torch.cond(x.sum() > 0, lambda t: t * 2, "
            "lambda t: t - 1, (x,))`"
        )
        return CaptureError(
            f"torch.export cannot follow data-dependent control flow{at}",
            f"rewrite {example}; or use --exporter script",
        )
    if "Constraints violated" in text:
        detail = next((ln.strip(" -") for ln in text.splitlines() if "Not all values of" in ln), "")
        fix = next((ln.strip() for ln in text.splitlines() if "= Dim(" in ln), "")
        return CaptureError(
            f"the model does not work at every size declared dynamic{at}: {detail}".rstrip(": "),
            (f"narrow the range ({fix}) or " if fix else "") + "use --exporter script to keep the branch on the size",
        )
    return CaptureError(
        f"torch.export failed{at}: {_summary(text)}", "try --exporter script or trace, or fix that code"
    )


def _user_site(text: str) -> tuple[str, str]:
    """The innermost ``File "...", line N`` of the report that lies outside torch and site-packages."""
    sites = [
        (path, int(line))
        for path, line in _FILE_LINE.findall(text)
        if "site-packages" not in path and "/torch/" not in path and not path.startswith("<")
    ]
    if not sites:
        return "", ""
    path, line = sites[-1]
    return f"{Path(path).name}:{line}", linecache.getline(path, line).strip()


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
