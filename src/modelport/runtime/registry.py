"""Backends by name: the names ``--backend`` accepts, the runner each becomes, and its help text.

The CLI takes its choices and help from here, so a runtime is added in one place. On the GPU the
precision is part of the name: without a suffix CUDA and TensorRT compute in true fp32 (TF32 off),
``:tf32`` allows TF32 matrix math and ``:fp16`` fp16 kernels; each precision is compared at its own
tolerance (``TOLERANCES``). Names::

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

import numpy as np

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
    "tolerance_for",
    "TOLERANCES",
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

# Tolerance per precision. fp32 runs the graph as exported, so it is held to the bundle's own
# tolerance. Lower precisions round every intermediate value, and the error an output picks up is
# proportional to the magnitude of the values that were summed into it, not to the element itself:
# an element near zero in an output whose other elements reach 20 gets an error of size 20 * eps.
# So the atol floor is a fraction of the reference output's largest finite magnitude (at least 1),
# and rtol gets a floor too. Each floor rests on a measurement of max abs error / output scale over
# the verification feeds (two seeds, the x100 feed included):
#   bf16: openvino:default on an AVX512-BF16 CPU (bf16 inference) against ort:cpu:
#     all-MiniLM-L6-v2 token_embeddings (|x| up to 6.3) 0.0126 (max abs 0.075 against PyTorch),
#     sentence_embedding 0.0016, cosine to PyTorch >= 0.99992 (0.99994 sentence); the tests'
#     DynamicCNN (inputs up to x100, outputs up to ~30) 0.0048. (openvino:f32 on the same feeds: max
#     abs 1.1e-5.) The floor 3e-2 leaves 2.4x margin.
#   tf32 (CUDA with use_tf32=1, TensorRT's default TF32 flag, hence every ORT TensorRT session): TF32
#     rounds the inputs of each matmul and convolution to 10 mantissa bits and accumulates in fp32.
#     Simulated on the CPU (no GPU here): PyTorch with every matmul / linear / conv / attention input
#     rounded to TF32 (round to nearest even) against plain fp32: MiniLM token_embeddings 1.1e-3,
#     sentence_embedding 2.2e-4, DynamicCNN 5.0e-4 (while 3-8% of DynamicCNN's elements fall outside
#     the fp32 atol 1e-4 / rtol 1e-3, 26% on the x100 feed). The floor 3e-3 leaves 2.7x margin.
#   fp16: simulated on the CPU likewise, the whole PyTorch model in float16 (weights, activations,
#     kernels) against fp32: MiniLM token_embeddings 1.9e-3, sentence_embedding 4.3e-4, DynamicCNN
#     5.5e-4. TensorRT fp16 engines keep some layers in fp32, so they round less than this. The
#     floor 5e-3 leaves 2.7x margin.
#   "default" is whatever the device picks (bf16 on this CPU, f16 on GPUs and ARM): bf16's floor.
# Re-measure tf32 and fp16 on a GPU when one is at hand (issue 17).
TOLERANCES: dict[str, tuple[float, float]] = {  # precision -> (atol per unit of output scale, rtol)
    "fp32": (0.0, 0.0),
    "tf32": (3e-3, 5e-3),
    "fp16": (5e-3, 1e-2),
    "bf16": (3e-2, 2e-2),
    "default": (3e-2, 2e-2),
}


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


def tolerance_for(
    precision: str | Runner, atol: float, rtol: float, reference: np.ndarray | None = None
) -> tuple[float, float]:
    """(atol, rtol) to compare a runner of this precision with, given the bundle's fp32 tolerance and
    the reference output (its largest finite magnitude scales the low-precision atol floor)."""
    key = precision.precision if isinstance(precision, Runner) else precision
    if key not in TOLERANCES:
        raise ValueError(f"no tolerance known for precision {key!r}; add it to TOLERANCES with a measurement")
    per_unit, floor_rtol = TOLERANCES[key]
    scale = 1.0
    if reference is not None and np.issubdtype(np.asarray(reference).dtype, np.number):
        finite = np.abs(np.asarray(reference, np.float64))
        finite = finite[np.isfinite(finite)]
        scale = max(1.0, float(finite.max())) if finite.size else 1.0
    return max(atol, per_unit * scale), max(rtol, floor_rtol)


def _check_options(cls: type, options: dict[str, Any], taken: set[str], backend: str) -> None:
    accepted = [p for p in inspect.signature(cls).parameters if p not in ("path", "bundle")]
    for key in options:
        if key not in accepted or key in taken:
            free = [p for p in accepted if p not in taken]
            raise UsageError(f"option {key!r} does not apply to backend {backend}", f"its options: {', '.join(free)}")


def _parse_ort(variant: str) -> BackendName:
    """``tensorrt,cuda,cpu:fp16`` → providers and precision. tf32 needs a CUDA or TensorRT provider to mean
    anything, fp16 the TensorRT provider (ONNX Runtime's CUDA provider has no fp16 switch)."""
    providers, _, suffix = variant.rpartition(":")
    if suffix.lower() not in ORT_PRECISIONS:
        providers, suffix = variant, "fp32"
    precision = suffix.lower()
    full = prov.parse_providers(providers or "cpu")
    gpu = [p for p in full if p in ("CUDAExecutionProvider", "TensorrtExecutionProvider")]
    if precision == "tf32" and not gpu:
        raise UsageError(f"tf32 applies to the CUDA and TensorRT providers, not {providers or 'cpu'}",
                         "use ort:cuda:tf32 or ort:tensorrt,cuda,cpu:tf32, or drop :tf32")  # fmt: skip
    if precision == "fp16" and "TensorrtExecutionProvider" not in full:
        raise UsageError("fp16 applies to the TensorRT provider only", "use ort:tensorrt,cuda,cpu:fp16")
    canonical = "ort:" + ",".join(prov.short_name(p) for p in full) + ("" if precision == "fp32" else f":{precision}")
    return BackendName("ort", ",".join(full), canonical, precision)


def _unknown(name: str, detail: str) -> UsageError:
    choices = list(NAMES) + list(FAMILIES)
    close = difflib.get_close_matches(name.strip().lower(), choices, n=1, cutoff=0.5)
    return UsageError(
        f"unknown backend {name!r}" + (f" ({detail})" if detail else ""),
        f"valid backends: {', '.join(NAMES)}" + (f" (did you mean {close[0]!r}?)" if close else ""),
    )
