"""``torch.jit.trace`` → ONNX (the TorchScript exporter).

Inputs reach forward through a small adapter so that names bind to the right parameters whatever
their order. ``dynamic_axes`` is built from the spec and checked against ``input_names`` before
exporting: a wrong key is otherwise only a warning and a static model. A tracer warning about a
tensor turned into a Python value means a branch or loop count was frozen: that fails the strategy.
"""

from __future__ import annotations

import copy
import inspect
import re
from typing import Any

import torch

from modelport.capture import ExportJob
from modelport.capture.record import recording
from modelport.errors import CaptureError

__all__ = ["export", "export_mixed", "dynamic_axes"]

_CONTROL_FLOW = re.compile(r"^\s*(if|for|while)\b.*:", re.MULTILINE)


class _ByName(torch.nn.Module):
    """Positional inputs in declared order → forward's keyword parameters."""

    def __init__(self, module: torch.nn.Module, params: tuple[str, ...]) -> None:
        super().__init__()
        self.module = module
        self.params = params

    def forward(self, *args: torch.Tensor) -> Any:
        return self.module(**dict(zip(self.params, args, strict=True)))


def dynamic_axes(job: ExportJob) -> dict[str, dict[int, str]]:
    axes = {
        spec.name: {axis: d for axis, d in enumerate(spec.dims) if isinstance(d, str)} for spec in job.signature.inputs
    }
    axes = {name: a for name, a in axes.items() if a}
    names = [s.name for s in job.signature.inputs]
    stray = [k for k in axes if k not in names]
    if stray:  # would be a warning from torch and a silently static model
        raise CaptureError(f"dynamic_axes names {stray} which are not inputs {names}", "this is a modelport bug")
    return axes


def export(job: ExportJob, module: torch.nn.Module | None = None) -> None:
    module = job.module if module is None else module
    # the adapter must be in eval mode too: the exporter restores the top module's mode on every submodule
    # afterwards, so a training-mode wrapper would flip the user's model into training mode
    module = _ByName(module, job.plan.params).eval() if job.plan.by_name else module
    with recording() as rec:
        try:
            torch.onnx.export(
                module,
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
            lines = [ln for ln in str(exc).strip().splitlines() if ln.strip()]
            raise CaptureError(
                f"the TorchScript exporter failed: {lines[0][:300] if lines else type(exc).__name__}",
                "try --exporter dynamo, or a different --opset",
            ) from exc
    frozen = rec.frozen_control_flow()
    if frozen:
        raise CaptureError(
            f"frozen control flow at {frozen[0]}" + (f" (and {len(frozen) - 1} more)" if len(frozen) > 1 else ""),
            "tracing recorded one branch/loop count as a constant; use torch.where/torch.cond, or --exporter dynamo",
        )


def export_mixed(job: ExportJob) -> None:
    """Trace, with every submodule whose forward has control flow scripted first, so its If/Loop survive."""
    if isinstance(job.module, torch.jit.ScriptModule):
        raise CaptureError("the model is TorchScript already", "the trace attempt exported it as it is")
    model = copy.deepcopy(job.module)
    scripted = []
    for name, sub in list(model.named_modules()):
        if not name or any(name.startswith(done + ".") for done in scripted) or not _has_control_flow(sub):
            continue
        try:
            replacement = torch.jit.script(sub)
        except Exception:  # not scriptable: leave it traced, the tracer warning will tell
            continue
        parent_name, _, attr = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, attr, replacement)
        scripted.append(name)
    if not scripted:
        raise CaptureError(
            "no submodule with control flow could be scripted",
            "control flow in the top-level forward needs --exporter script or torch.cond",
        )
    export(job, model)


def _has_control_flow(module: torch.nn.Module) -> bool:
    try:
        return bool(_CONTROL_FLOW.search(inspect.getsource(type(module).forward)))
    except (OSError, TypeError):
        return False
