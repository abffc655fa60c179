"""Backends by name: the names ``--backend`` accepts, the runner each becomes, and its help text.

The CLI takes its choices and help from here. A runtime is one entry of ``REGISTRY`` (its runner class,
the suffixes its names take, the names listed, the help line) and its runner's ``for_backend``, which turns
a parsed name and the bundle into the runner's own arguments. On the GPU the
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
import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelport.bundle import Bundle
from modelport.errors import UsageError
from modelport.options import check_threads
from modelport.runtime import providers as prov
from modelport.runtime.base import Runner, Target

__all__ = [
    "load",
    "create",
    "parse_backend",
    "backend_names",
    "backend_help",
    "BackendName",
    "FAMILIES",
    "Family",
    "REGISTRY",
]


@dataclass(frozen=True)
class Family:
    """One runtime: the runner class (imported on first use, so torch loads only for the torch families),
    the suffixes its names take, the names ``--backend`` lists and the help line."""

    name: str
    runner: str  # "module:Class"
    help: str
    names: tuple[str, ...]
    variants: dict[str, str] | None = None  # suffix -> variant; None: no suffix (ort parses its own)
    source_model: bool = False  # runs the bundle's recorded PyTorch source, not its ONNX file

    def runner_class(self) -> type[Runner]:
        module, _, cls = self.runner.partition(":")
        return getattr(importlib.import_module(module), cls)  # type: ignore[no-any-return]


_TORCH = "modelport.runtime.pytorch:TorchRunner"
REGISTRY: tuple[Family, ...] = (
    Family("ort", "modelport.runtime.ort:OrtRunner",
           "ONNX Runtime; ort:PROVIDERS in priority order, short (cpu, cuda, tensorrt, openvino, dml) or full "
           "(CUDAExecutionProvider) names, e.g. ort:tensorrt,cuda,cpu; ort alone is ort:cpu; a last :tf32 allows "
           "TF32 on CUDA, :fp16 fp16 TensorRT engines (ort:tensorrt,cuda,cpu:fp16); the TensorRT provider has no "
           "fp32 switch, so it always counts as tf32",
           ("ort:cpu", "ort:cuda", "ort:cuda:tf32", "ort:tensorrt", "ort:tensorrt:fp16", "ort:openvino", "ort:dml")),
    Family("openvino", "modelport.runtime.openvino:OpenVINORunner",
           "OpenVINO on the CPU; openvino:f32 (default) computes in fp32, openvino:bf16 in bf16 (CPUs with "
           "AVX512-BF16 or AMX), openvino:default lets the CPU pick (bf16 where it can: faster, less exact)",
           ("openvino:f32", "openvino:bf16", "openvino:default"),
           {"": "f32", "f32": "f32", "fp32": "f32", "bf16": "bf16", "default": "default"}),
    Family("tensorrt", "modelport.runtime.tensorrt:TensorRTRunner",
           "a native TensorRT engine on an NVIDIA GPU (gpu extra); tensorrt is true fp32, tensorrt:tf32 allows "
           "TF32, tensorrt:fp16 fp16 kernels",
           ("tensorrt", "tensorrt:tf32", "tensorrt:fp16"), {"": "", "fp32": "", "tf32": "tf32", "fp16": "fp16"}),
    Family("torch", _TORCH, "PyTorch eager, the bundle's source model (the reference the export was checked "
           "against)", ("torch",), source_model=True),
    Family("torchscript", _TORCH, "the source model traced (or scripted) with torch.jit", ("torchscript",),
           source_model=True),
    Family("torch-compile", _TORCH, "the source model through torch.compile (slow first run: it compiles)",
           ("torch-compile",), source_model=True),
)  # fmt: skip
_BY_NAME = {f.name: f for f in REGISTRY}
FAMILIES: dict[str, str] = {f.name: f.help for f in REGISTRY}
NAMES = tuple(n for f in REGISTRY for n in f.names)
TORCH_BACKENDS = tuple(f.name for f in REGISTRY if f.source_model)
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
    entry = _BY_NAME.get(family)
    if entry is not None and entry.variants is not None:
        choice = entry.variants.get(variant.lower())
        if choice is None:
            variants = dict.fromkeys(v for v in entry.variants.values() if v)
            raise _unknown(name, f"{family} takes :{' or :'.join(variants)}")
        return BackendName(family, choice, f"{family}:{choice}" if choice else family)
    if entry is not None and not variant:
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
    target = Target(model_path, b, signature, output_names, threads, optimization, fallback)
    runner = _BY_NAME[parsed.family].runner_class().for_backend(parsed, target, options)
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
