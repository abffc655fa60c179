"""Backends by name: the names ``--backend`` accepts, the runner each becomes, and its help text.

The CLI takes its choices and help from here, so a runtime is added in one place. On the GPU the
precision is part of the name: without a suffix CUDA and TensorRT compute in true fp32 (TF32 off),
``:tf32`` allows TF32 matrix math and ``:fp16`` fp16 kernels; each precision is compared at its own
tolerance (``modelport.tolerances``). Names::

    ort[:PROVIDERS][:tf32|:fp16]   ONNX Runtime, providers in priority order (ort = ort:cpu)
    openvino[:f32|:bf16|:default]   native OpenVINO on the CPU (openvino = openvino:f32)
    tensorrt[:tf32|:fp16]  native TensorRT engine on the GPU
    torch | torchscript | torch-compile   PyTorch from the bundle's recorded source model
"""

from __future__ import annotations

import difflib
import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelport.bundle import Bundle
from modelport.errors import UsageError
from modelport.options import check_threads
from modelport.runtime import providers as prov
from modelport.runtime.base import Runner

__all__ = [
    "load",
    "create",
    "parse_backend",
    "backend_names",
    "backend_help",
    "BackendName",
    "FAMILIES",
]

FAMILIES: dict[str, str] = {
    "ort": "ONNX Runtime; ort:PROVIDERS in priority order, short (cpu, cuda, tensorrt, openvino, dml) or full "
    "(CUDAExecutionProvider) names, e.g. ort:tensorrt,cuda,cpu; ort alone is ort:cpu; a last :tf32 allows TF32 "
    "on CUDA, :fp16 fp16 TensorRT engines (ort:tensorrt,cuda,cpu:fp16); the TensorRT provider has no fp32 switch, "
    "so it always counts as tf32",
    "openvino": "OpenVINO on the CPU; openvino:f32 (default) computes in fp32, openvino:bf16 in bf16 (CPUs with "
    "AVX512-BF16 or AMX), openvino:default lets the CPU pick (bf16 where it can: faster, less exact)",
    "tensorrt": "a native TensorRT engine on an NVIDIA GPU (gpu extra); tensorrt is true fp32, tensorrt:tf32 allows "
    "TF32, tensorrt:fp16 fp16 kernels",
    "torch": "PyTorch eager, the bundle's source model (the reference the export was checked against)",
    "torchscript": "the source model traced (or scripted) with torch.jit",
    "torch-compile": "the source model through torch.compile (slow first run: it compiles)",
}
NAMES = (
    "ort:cpu", "ort:cuda", "ort:cuda:tf32", "ort:tensorrt", "ort:tensorrt:fp16", "ort:openvino", "ort:dml",
    "openvino:f32", "openvino:bf16", "openvino:default", "tensorrt", "tensorrt:tf32", "tensorrt:fp16", "torch",
    "torchscript", "torch-compile",
)  # fmt: skip
TORCH_BACKENDS = ("torch", "torchscript", "torch-compile")
_VARIANTS = {"openvino": {"": "f32", "f32": "f32", "fp32": "f32", "bf16": "bf16", "default": "default"},
             "tensorrt": {"": "", "fp32": "", "tf32": "tf32", "fp16": "fp16"}}  # fmt: skip
# the precisions an ort backend name may end in (ort:cuda:tf32); fp32 is the default and is not written
ORT_PRECISIONS = ("fp32", "tf32", "fp16")


@dataclass(frozen=True)
class BackendName:
    family: str  # ort | openvino | tensorrt | torch | torchscript | torch-compile
    variant: str  # ort: full provider names joined by ","; openvino: f32|bf16|default; tensorrt: ""|tf32|fp16
    canonical: str  # the name runners report, e.g. "ort:tensorrt,cuda,cpu:fp16", "openvino:f32"
    precision: str = "fp32"  # ort: what the GPU providers may compute in (fp32 | tf32 | fp16)


def parse_backend(name: str) -> BackendName:
    """Validate a backend name and give its canonical form; UsageError with the closest valid name."""
    if not isinstance(name, str):
        raise UsageError(f"a backend name is text, not {type(name).__name__}", 'e.g. backend="ort:cpu"')
    family, _, variant = name.strip().partition(":")
    family = family.lower()
    if family == "ort":
        return _parse_ort(variant)
    if family in _VARIANTS:
        choice = _VARIANTS[family].get(variant.lower())
        if choice is None:
            variants = dict.fromkeys(v for v in _VARIANTS[family].values() if v)
            raise _unknown(name, f"{family} takes :{' or :'.join(variants)}")
        return BackendName(family, choice, f"{family}:{choice}" if choice else family)
    if family in FAMILIES and not variant:
        return BackendName(family, "", family)
    raise _unknown(name, "")


def backend_names() -> list[str]:
    return list(NAMES)


def backend_help() -> str:
    """One line per backend family, for ``--help``."""
    return "\n".join(f"{family}: {text}" for family, text in FAMILIES.items())


def create(
    name: str | None,
    bundle: Bundle | str | Path,
    *,
    threads: int | None = None,
    optimization: str = "all",
    fallback: str = "refuse",
    check_ranges: bool = True,
    **options: Any,
) -> Runner:
    """A runner for ``bundle`` (a bundle, its directory, or a bare ``.onnx`` file for the ONNX backends)
    on backend ``name`` (None: the bundle's own, ``Bundle.backend``), not yet loaded (use ``with runner:``).
    ``check_ranges=False`` runs feeds outside the bundle's declared sizes and value ranges (noted in the
    runner's warnings) instead of refusing them."""
    if name is None:
        if not isinstance(bundle, Bundle) and not Path(bundle).is_file():
            bundle = Bundle.open(bundle)
        name = bundle.backend if isinstance(bundle, Bundle) else "ort:cpu"
    parsed = parse_backend(name)
    check_threads(threads)
    if fallback not in prov.FALLBACKS:
        raise UsageError(f"unknown fallback policy {fallback!r}", f"choose one of: {', '.join(prov.FALLBACKS)}")
    if parsed.family != "ort" and optimization != "all":
        raise UsageError(f"optimization levels apply to ort backends, not {parsed.canonical}", "drop the option")
    b: Bundle | None = None
    if isinstance(bundle, Bundle) or not Path(bundle).is_file():
        b = bundle if isinstance(bundle, Bundle) else Bundle.open(bundle)
        model_path, signature = b.model_path, b.signature
        output_names = [o["name"] for o in b.manifest.get("outputs", [])] or None
    elif parsed.family in TORCH_BACKENDS:
        raise UsageError(
            f"backend {parsed.canonical} runs a bundle's source model; {bundle} is a bare ONNX file",
            "pass a bundle directory written by `modelport export`, or an ONNX backend (ort, openvino, tensorrt)",
        )
    else:
        model_path, signature, output_names = Path(bundle), None, None
    cls: type[Runner]
    positional: tuple[Any, ...] = (model_path,)
    if parsed.family == "ort":
        from modelport.runtime.ort import OrtRunner

        if options.pop("fp16", False):  # the keyword of old: the same as the :fp16 suffix
            parsed = parse_backend(parsed.canonical.removesuffix(":fp16") + ":fp16")
        cls = OrtRunner
        args: dict[str, Any] = dict(optimization=optimization, threads=threads, providers=parsed.variant.split(","),
                                    precision=parsed.precision, fallback=fallback, signature=signature)  # fmt: skip
    elif parsed.family == "openvino":
        from modelport.runtime.openvino import OpenVINORunner

        cls = OpenVINORunner
        args = dict(precision=parsed.variant, threads=threads, signature=signature, output_names=output_names)
    elif parsed.family == "tensorrt":
        from modelport.runtime.tensorrt import TensorRTRunner

        cls = TensorRTRunner
        args = dict(precision=parsed.variant or "fp32", signature=signature, output_names=output_names)
    else:
        from modelport.runtime.pytorch import TorchRunner

        cls, positional = TorchRunner, (b,)
        args = dict(mode=parsed.family, threads=threads)
    _check_options(cls, options, set(args), parsed.canonical)
    runner = cls(*positional, **args, **options)  # type: ignore[call-arg]
    runner.name = parsed.canonical
    runner.check_ranges = check_ranges
    graph = b.optimization.get("precision") if b is not None and b.optimization else None
    if graph and graph != "fp32" and parsed.family not in TORCH_BACKENDS:
        runner.precision = graph  # an int8 graph runs in int8 whatever the backend's own precision
    return runner


def load(model: Bundle | str | Path, backend: str | None = None, **options: Any) -> Runner:
    """A loaded runner for a bundle (or any ``.onnx`` file) on ``backend`` (default: the bundle's own, ort:cpu
    unless ``modelport optimize`` chose another): call it with numpy arrays or torch
    tensors (``runner(x=array)``) and close it, or use it as ``with modelport.load(path) as runner:``.
    ``options`` are ``create``'s (``threads``, ``fallback``, ``optimization``, a runner's own settings)."""
    return create(backend, model, **options).load()


def _check_options(cls: type, options: dict[str, Any], taken: set[str], backend: str) -> None:
    accepted = [p for p in inspect.signature(cls).parameters if p not in ("path", "bundle")]
    for key in options:
        if key not in accepted or key in taken:
            free = [p for p in accepted if p not in taken]
            raise UsageError(f"option {key!r} does not apply to backend {backend}", f"its options: {', '.join(free)}")


def _parse_ort(variant: str) -> BackendName:
    """``tensorrt,cuda,cpu:fp16`` → providers and precision (``providers.check_precision``)."""
    providers, _, suffix = variant.rpartition(":")
    if suffix.lower() not in ORT_PRECISIONS:
        providers, suffix = variant, "fp32"
    precision = suffix.lower()
    full = prov.parse_providers(providers or "cpu")
    prov.check_precision(precision, full)
    canonical = "ort:" + ",".join(prov.short_name(p) for p in full) + ("" if precision == "fp32" else f":{precision}")
    return BackendName("ort", ",".join(full), canonical, precision)


def _unknown(name: str, detail: str) -> UsageError:
    choices = list(NAMES) + list(FAMILIES)
    close = difflib.get_close_matches(name.strip().lower(), choices, n=1, cutoff=0.5)
    return UsageError(
        f"unknown backend {name!r}" + (f" ({detail})" if detail else ""),
        f"valid backends: {', '.join(NAMES)}" + (f" (did you mean {close[0]!r}?)" if close else ""),
    )
