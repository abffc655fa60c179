"""``torch.jit.script`` → ONNX (the TorchScript exporter): keeps ``If``/``Loop`` whose condition or
trip count depends on forward's arguments or on tensor values.

The model is scripted inside a small generated adapter: every declared input arrives as a tensor
named after its spec, is converted where forward's annotation asks for a Python ``bool``/``int``/
``float`` (``bool(flag)`` then runs inside the graph, not at export time), and is passed by name.
TorchScript reads source code, so the adapter is written to a temporary file and imported.
"""

from __future__ import annotations

import importlib.util
import inspect
import shutil
import tempfile
from pathlib import Path

import torch

from modelport.capture import ExportJob
from modelport.capture.torchscript_exporter import to_onnx
from modelport.errors import CaptureError, first_line

__all__ = ["export", "adapter_source"]

_SCALARS = {bool: "bool", int: "int", float: "float", "bool": "bool", "int": "int", "float": "float"}


def adapter_source(job: ExportJob) -> str:
    annotations = _annotations(job.module)
    names = [s.name for s in job.signature.inputs]
    args = []
    for name, param in zip(names, job.plan.params, strict=True):
        value = f"in_{name}"
        convert = _SCALARS.get(annotations.get(param))  # type: ignore[arg-type]
        if convert:
            value = f"{convert}({value})"
        args.append(f"{param}={value}" if job.plan.by_name else value)
    signature = ", ".join(f"in_{n}: torch.Tensor" for n in names)
    return (
        "import torch\n\n\n"
        "class ScriptAdapter(torch.nn.Module):\n"
        "    def __init__(self, inner):\n"
        "        super().__init__()\n"
        "        self.inner = inner\n\n"
        f"    def forward(self, {signature}):\n"
        f"        return self.inner({', '.join(args)})\n"
    )


def export(job: ExportJob) -> None:
    folder = Path(tempfile.mkdtemp(prefix="modelport-script-"))
    try:
        to_onnx(job, _script(job, folder), "scripted")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _script(job: ExportJob, folder: Path) -> torch.jit.ScriptModule:
    source = folder / "modelport_script_adapter.py"
    source.write_text(adapter_source(job))
    spec = importlib.util.spec_from_file_location("modelport_script_adapter", source)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    try:
        return torch.jit.script(module.ScriptAdapter(job.module).eval())
    except Exception as exc:
        raise CaptureError(
            f"torch.jit.script cannot compile the model: {first_line(exc)}",
            "TorchScript supports a subset of Python; try --exporter dynamo or trace",
        ) from exc


def _annotations(module: object) -> dict[str, object]:
    try:
        params = inspect.signature(module.forward).parameters  # type: ignore[attr-defined]
    except (TypeError, ValueError, AttributeError):
        return {}
    return {name: p.annotation for name, p in params.items()}
