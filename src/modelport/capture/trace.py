"""``torch.jit.trace`` → ONNX (the TorchScript exporter).

Inputs reach forward through a small adapter so that names bind to the right parameters whatever
their order. A tracer warning about a tensor turned into a Python value means a branch or loop
count was frozen: that fails the strategy. ``export_mixed`` scripts the submodules that hold control
flow first, so their If/Loop survive the trace.
"""

from __future__ import annotations

import copy
import inspect
import re
from typing import Any

import torch

from modelport.capture import ExportJob
from modelport.capture.exporter_log import recording
from modelport.capture.torchscript_exporter import to_onnx
from modelport.errors import CaptureError

__all__ = ["export", "export_mixed"]

_CONTROL_FLOW = re.compile(r"^\s*(if|for|while)\b.*:", re.MULTILINE)


class _ByName(torch.nn.Module):
    """Positional inputs in declared order → forward's keyword parameters."""

    def __init__(self, module: torch.nn.Module, params: tuple[str, ...]) -> None:
        super().__init__()
        self.module = module
        self.params = params

    def forward(self, *args: torch.Tensor) -> Any:
        return self.module(**dict(zip(self.params, args, strict=True)))


def export(job: ExportJob, module: torch.nn.Module | None = None) -> None:
    module = job.module if module is None else module
    # the adapter must be in eval mode too: the exporter restores the top module's mode on every submodule
    # afterwards, so a training-mode wrapper would flip the user's model into training mode
    module = _ByName(module, job.plan.params).eval() if job.plan.by_name else module
    with recording() as rec:
        to_onnx(job, module, "traced")
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
