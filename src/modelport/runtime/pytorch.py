"""PyTorch runners: the bundle's source model eager, through TorchScript, or through torch.compile.

They answer the question a benchmark asks next to ONNX Runtime (was exporting worth it?) and give
the reference the export was verified against. The model comes from the source the manifest records
(``bundle.source``) or an explicit ``model=``; inputs bind to ``forward`` exactly as at export
(``calling.plan_call``) and outputs are named with the bundle's ONNX output names, in order.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch

from modelport.bundle import Bundle
from modelport.errors import SourceError, UsageError, first_line
from modelport.forward import CallPlan, plan_call, run_eager
from modelport.runtime.base import Runner, Target, TensorInfo, check_options, infos_from_manifest, infos_from_signature
from modelport.sources import LoadedModel, load_model
from modelport.sources.objects import as_loaded
from modelport.sources.recorded import trusted_source
from modelport.spec import Signature

__all__ = ["TorchRunner", "MODES"]

MODES = ("torch", "torchscript", "torch-compile")


class TorchRunner(Runner):
    @classmethod
    def for_backend(cls, backend: Any, target: Target, options: dict[str, Any]) -> TorchRunner:
        args = dict(mode=backend.family, threads=target.threads)
        check_options(cls, options, set(args), backend.canonical)
        return cls(target.bundle, **args, **options)  # type: ignore[arg-type]

    def __init__(
        self,
        bundle: Bundle | None = None,
        mode: str = "torch",
        threads: int | None = None,
        *,
        model: str | LoadedModel | None = None,
        signature: Signature | None = None,
        output_names: list[str] | None = None,
        warmup: int = 0,
        compile_options: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if mode not in MODES:
            raise UsageError(f"unknown PyTorch mode {mode!r}", f"choose one of: {', '.join(MODES)}")
        self.bundle = bundle
        self.mode = mode
        self.name = mode
        self.threads = threads
        self.model = model
        self.signature = signature or (bundle.signature if bundle is not None else None)
        if self.signature is None:
            raise UsageError("the torch runners need the model's signature", "pass a bundle or signature=")
        manifest_outputs = bundle.manifest.get("outputs", []) if bundle is not None else []
        self.output_names = output_names or [o["name"] for o in manifest_outputs] or None
        self._manifest_outputs = manifest_outputs
        self.warmup = warmup
        self.compile_options = compile_options or {}
        self.module: Any = None
        self.how = ""
        self._plan: CallPlan | None = None

    def _load(self) -> None:
        loaded = self._source()
        sig = self.signature
        assert sig is not None
        self._plan = plan_call(loaded.module, sig, loaded.positional)
        if self.threads:
            torch.set_num_threads(self.threads)  # process-wide: PyTorch has no per-module setting
        module = loaded.module
        self.how = "eager"
        if self.mode == "torchscript":
            module, self.how = _torchscript(module, self._plan, sig)
        elif self.mode == "torch-compile":
            module, self.how = torch.compile(module, **self.compile_options), "torch.compile (compiles on first run)"
        self.module = module

    def _source(self) -> LoadedModel:
        if self.model is not None:
            return as_loaded(self.model)  # the user's own choice
        ref = self.bundle.source if self.bundle is not None else None
        if not ref or self.bundle is None:
            raise UsageError("the bundle does not record its source model", "pass model=MODEL (--model MODEL)")
        trusted_source(self.bundle.path, ref, self.bundle.manifest["source"].get("sha256"))  # or refused
        return load_model(ref)

    def inputs(self) -> list[TensorInfo]:
        assert self.signature is not None
        return infos_from_signature(self.signature)

    def outputs(self) -> list[TensorInfo]:
        return infos_from_manifest(self._manifest_outputs)

    def _infer(self, feed: dict[str, np.ndarray], timeout: float | None) -> dict[str, np.ndarray]:
        assert self._plan is not None and self.signature is not None
        named = run_eager(self.module, self._plan, feed, self.signature)
        names = self.output_names or [n for n, _ in named]
        if len(names) != len(named):
            raise SourceError(
                f"{self.name} returned {len(named)} outputs, the bundle has {len(names)} ({', '.join(names)})",
                "the source model changed since export; re-export the bundle",
            )
        return {name: value for name, (_, value) in zip(names, named, strict=True)}

    def _close(self) -> None:
        self.module = None

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info.update(torch=torch.__version__, how=self.how, threads=torch.get_num_threads())
        return info


def _torchscript(module: Any, plan: CallPlan, sig: Signature) -> tuple[Any, str]:
    """Trace at the example sizes (what users deploy as TorchScript), scripting when tracing fails."""
    if isinstance(module, torch.jit.ScriptModule):
        return module, "already TorchScript"
    from modelport.feeds import make_feed

    example = make_feed(sig, sig.example_sizes(), np.random.default_rng(0)).arrays
    args, kwargs = plan.split([torch.from_numpy(example[s.name]) for s in sig.inputs])
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # tracing warns about every Python bool it bakes in; parity at other sizes is the real check
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            traced = torch.jit.trace(
                module, args or None, example_kwarg_inputs=kwargs or None, strict=False, check_trace=False
            )
        return traced, "torch.jit.trace"
    except Exception as trace_exc:
        try:
            return torch.jit.script(module), "torch.jit.script (tracing failed)"
        except Exception as script_exc:
            raise SourceError(
                f"cannot make TorchScript of the model: tracing failed ({first_line(trace_exc)}), "
                f"scripting failed ({first_line(script_exc)})",
                "use the torch or torch-compile backend",
            ) from script_exc
