"""modelport: a PyTorch model in, an ONNX bundle out that was checked against PyTorch — or a refusal
that says why.

The public API (each CLI command is one of these calls)::

    import modelport

    result = modelport.export(net, "out/net", inputs=["x:batch,8"], dims=["batch=1..16"])
    modelport.verify("out/net", model=net)             # ParityError when ONNX disagrees
    with modelport.load("out/net") as model:           # a Runner: call it with numpy arrays or tensors
        outputs = model(x=np.ones((4, 8), np.float32))
    report = modelport.doctor("model.onnx")             # findings, each with its fix

Names are resolved on first use, so ``import modelport`` (and the CLI's ``--help``) stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any

_ERRORS = ("ModelportError", "UsageError", "SourceError", "BundleError", "FeedError", "UnsafeModelError", "ParityError")

__all__ = [
    "export",
    "verify",
    "load",
    "run",
    "doctor",
    "bench",
    "optimize",
    "import_onnx",
    "upgrade",
    "serve",
    "serve_triton",
    "serve_ray",
    "batch",
    "triton_repository",
    "tasks",
    "Bundle",
    "InputSpec",
    "Dim",
    "Signature",
    "ExportResult",
    "ParityReport",
    "OptimizeResult",
    "Runner",
    *_ERRORS,
]

_WHERE = {
    "export": "modelport.exporting",
    "ExportResult": "modelport.exporting",
    "verify": "modelport.verification.bundle",
    "load": "modelport.generation.api",
    "run": "modelport.runtime.run",
    "doctor": "modelport.ingest.doctor",
    "bench": "modelport.benchmark.api",
    "optimize": "modelport.optimization.api",
    "OptimizeResult": "modelport.optimization.api",
    "import_onnx": "modelport.ingest.importing",
    "upgrade": "modelport.ingest.upgrade",
    "serve": "modelport.scale.engines",
    "serve_triton": "modelport.scale.triton_server",
    "serve_ray": "modelport.scale.ray_serve",
    "batch": "modelport.scale.batch",
    "triton_repository": "modelport.scale.triton",
    "tasks": "modelport.sources.hf_tasks",
    "Bundle": "modelport.bundle",
    "InputSpec": "modelport.spec",
    "Dim": "modelport.spec",
    "Signature": "modelport.spec",
    "ParityReport": "modelport.verification.parity",
    "Runner": "modelport.runtime.base",
    **dict.fromkeys(_ERRORS, "modelport.errors"),
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'modelport' has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
