"""ONNX Runtime execution providers: short names, availability, and what to do when one is missing.

ONNX Runtime is lenient in two ways we are not: a provider this build lacks is only a warning, and a
provider whose libraries fail to load (CUDA, cuDNN, TensorRT) is dropped from the session without a
word. Either way the model then runs on the CPU and a benchmark reports the CPU under a GPU's name.
So a provider that was asked for and is missing is an error (one line: which provider, which exist,
which pip package brings it) unless the caller allows the fallback, which is then recorded as a
warning on the runner.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import io
from collections.abc import Sequence
from pathlib import Path

from modelport.errors import ModelportError, UsageError, import_onnxruntime
from modelport.runtime.base import profile_shapes
from modelport.spec import Signature

__all__ = [
    "SHORT_NAMES",
    "PACKAGES",
    "FALLBACKS",
    "ProviderError",
    "parse_providers",
    "short_name",
    "available_providers",
    "cuda_usable",
    "check_available",
    "check_session",
    "load_gpu_libraries",
    "tensorrt_options",
    "GPU_PROVIDERS",
    "check_precision",
    "precision_of",
]

GPU_PROVIDERS = ("CUDAExecutionProvider", "TensorrtExecutionProvider")
SHORT_NAMES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "dml": "DmlExecutionProvider",
}
_FULL_TO_SHORT = {full: short for short, full in SHORT_NAMES.items()}

# the pip package whose onnxruntime build has the provider (each replaces the plain `onnxruntime`)
PACKAGES = {
    "CUDAExecutionProvider": "onnxruntime-gpu",  # modelport's gpu extra: onnxruntime-gpu[cuda,cudnn] + tensorrt 10
    "TensorrtExecutionProvider": "onnxruntime-gpu",
    "OpenVINOExecutionProvider": "onnxruntime-openvino",
    "DmlExecutionProvider": "onnxruntime-directml",
}
# libraries a provider loads at session creation; missing ones make ONNX Runtime drop it silently
_LIBRARIES = {
    "CUDAExecutionProvider": "CUDA and cuDNN 9 libraries of its CUDA major (pip install 'onnxruntime-gpu[cuda,cudnn]')",
    "TensorrtExecutionProvider": "TensorRT 10 libraries (pip install 'tensorrt>=10,<11') and CUDA/cuDNN",
}
FALLBACKS = ("refuse", "allow")


class ProviderError(ModelportError):
    """A provider that was asked for cannot run here, or nodes left it under a strict placement.

    Exit 2: the model is fine (it answers right wherever it runs); the environment or the flags
    must change."""


def parse_providers(spec: str | Sequence[str]) -> list[str]:
    """``"tensorrt,cuda,cpu"`` or ``["CUDAExecutionProvider", "cpu"]`` → full names in priority order."""
    ort = import_onnxruntime()

    items = [p.strip() for p in spec.split(",")] if isinstance(spec, str) else [str(p).strip() for p in spec]
    known = ort.get_all_providers()
    out: list[str] = []
    for item in items:
        if not item:
            raise UsageError(f"empty provider name in {spec!r}", "write providers as ort:tensorrt,cuda,cpu")
        full = SHORT_NAMES.get(item.lower()) or next((k for k in known if k.lower() == item.lower()), None)
        if full is None:
            choices = list(SHORT_NAMES) + known
            close = difflib.get_close_matches(item, choices, n=1, cutoff=0.5)
            raise UsageError(
                f"unknown ONNX Runtime provider {item!r}",
                f"use {', '.join(SHORT_NAMES)} or a full name such as CUDAExecutionProvider"
                + (f" (did you mean {close[0]!r}?)" if close else ""),
            )
        if full not in out:
            out.append(full)
    return out


def short_name(full: str) -> str:
    return _FULL_TO_SHORT.get(full, full)


def available_providers() -> list[str]:
    ort = import_onnxruntime()

    return list(ort.get_available_providers())


@functools.cache
def cuda_usable() -> bool:
    """Whether ONNX Runtime's CUDA provider runs here: onnxruntime-gpu lists it on machines without a GPU
    or without the CUDA libraries, so a one-node session is made and must keep it."""
    if "CUDAExecutionProvider" not in available_providers():
        return False
    from onnx import TensorProto, helper

    ort = import_onnxruntime()
    load_gpu_libraries(["CUDAExecutionProvider"])
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "probe",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    options = ort.SessionOptions()
    options.log_severity_level = 4  # a failed probe is an answer, not an error to print
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # ONNX Runtime prints its fallback to stdout
            session = ort.InferenceSession(model.SerializeToString(), options, providers=["CUDAExecutionProvider"])
    except Exception:
        return False
    return session.get_providers()[0] == "CUDAExecutionProvider"


def check_available(requested: list[str], fallback: str) -> tuple[list[str], list[str]]:
    """The providers to hand to the session, and warnings for those dropped under ``fallback="allow"``."""
    _check_policy(fallback)
    available = available_providers()
    kept, warnings = [], []
    for provider in requested:
        if provider in available:
            kept.append(provider)
            continue
        if fallback == "refuse":
            raise _unavailable(provider, available)
        warnings.append(f"{provider} is not available here (available: {', '.join(available)}); skipped it")
    if not kept:
        kept = ["CPUExecutionProvider"]
        warnings.append("none of the requested providers is available; running on CPUExecutionProvider")
    return kept, warnings


def check_session(requested: list[str], actual: list[str], fallback: str) -> list[str]:
    """After the session exists: providers ONNX Runtime dropped while creating it (libraries failed to load)."""
    warnings = []
    for provider in requested:
        if provider in actual:
            continue
        needs = _LIBRARIES.get(provider, "its runtime libraries")
        if fallback == "refuse":
            ort = import_onnxruntime()

            raise ProviderError(
                f"ONNX Runtime {ort.__version__} dropped {provider} while creating the session "
                f"(the session got {', '.join(actual)})",
                f"install {needs} matching this onnxruntime build, or allow the fallback (fallback='allow', "
                "--fallback allow) to run on the next provider",
            )
        warnings.append(
            f"ONNX Runtime dropped {provider} while creating the session (needs {needs}); "
            f"running on {', '.join(actual)}"
        )
    return warnings


def load_gpu_libraries(providers: Sequence[str]) -> None:
    """Before a session with the CUDA or TensorRT provider: make the libraries pip installed loadable.

    ``onnxruntime-gpu[cuda,cudnn]`` puts CUDA and cuDNN in site-packages, off the loader's path, and
    ``onnxruntime.preload_dlls()`` is ONNX Runtime's documented way to load them (a no-op where torch or the
    system already did). The tensorrt wheel keeps libnvinfer in site-packages too; importing tensorrt loads
    it, so the provider's own dependency on it resolves to the copy already in the process. What
    preload_dlls prints goes nowhere (it would break --json); a library still missing shows up as a
    dropped provider, which ``check_session`` reports."""
    if not any(p in ("CUDAExecutionProvider", "TensorrtExecutionProvider") for p in providers):
        return
    ort = import_onnxruntime()
    if hasattr(ort, "preload_dlls"):  # onnxruntime >= 1.21
        with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(OSError):
            ort.preload_dlls()
    if "TensorrtExecutionProvider" in providers:
        with contextlib.suppress(ImportError):
            import tensorrt  # noqa: F401


def tensorrt_options(signature: Signature | None, cache: Path, fp16: bool) -> dict[str, str]:
    """TensorRT provider options: one optimization profile spanning each symbol's min/opt/max (without
    it TensorRT rebuilds the engine whenever a new shape arrives) and an engine cache beside the bundle."""
    options = {
        "trt_engine_cache_enable": "True",
        "trt_engine_cache_path": str(cache),
        "trt_timing_cache_enable": "True",
        "trt_timing_cache_path": str(cache),
        "trt_fp16_enable": str(bool(fp16)),
    }
    shapes = profile_shapes(signature) if signature is not None else {}
    for index, key in enumerate(("min", "opt", "max")):
        if shapes:
            text = ",".join(f"{name}:" + "x".join(map(str, s[index])) for name, s in shapes.items())
            options[f"trt_profile_{key}_shapes"] = text
    return options


def check_precision(precision: str, providers: Sequence[str]) -> None:
    """UsageError unless these providers can be asked for ``precision``: tf32 needs a CUDA or TensorRT
    provider to mean anything, fp16 the TensorRT provider (ONNX Runtime's CUDA provider has no fp16 switch)."""
    if precision == "tf32" and not any(p in GPU_PROVIDERS for p in providers):
        short = ",".join(short_name(p) for p in providers)
        raise UsageError(f"tf32 applies to the CUDA and TensorRT providers, not {short}",
                         "use ort:cuda:tf32 or ort:tensorrt,cuda,cpu:tf32, or drop :tf32")  # fmt: skip
    if precision == "fp16" and "TensorrtExecutionProvider" not in providers:
        raise UsageError("fp16 applies to the TensorRT provider only", "use ort:tensorrt,cuda,cpu:fp16")


def precision_of(requested: str, providers: Sequence[str]) -> str:
    """What a session with these providers computes in, given the precision asked for: the TensorRT
    provider cannot be held to fp32 (no TF32 option), so fp32 with it is tf32; without a GPU provider
    everything is fp32 whatever was asked."""
    if "TensorrtExecutionProvider" in providers:
        return "fp16" if requested == "fp16" else "tf32"
    if "CUDAExecutionProvider" in providers and requested != "fp32":
        return "tf32"  # :fp16 is TensorRT's; the CUDA nodes of such a session run with TF32 allowed
    return "fp32"


def _unavailable(provider: str, available: list[str]) -> ProviderError:
    ort = import_onnxruntime()

    package = PACKAGES.get(provider)
    install = (
        f"pip uninstall -y onnxruntime && pip install {package} (it replaces onnxruntime)"
        if package
        else "install an onnxruntime build that includes it"
    )
    return ProviderError(
        f"{provider} is not available in onnxruntime {ort.__version__} here (available: {', '.join(available)})",
        f"{install}, or allow the fallback (fallback='allow', --fallback allow) to skip it",
    )


def _check_policy(fallback: str) -> None:
    if fallback not in FALLBACKS:
        raise UsageError(f"unknown fallback policy {fallback!r}", f"choose one of: {', '.join(FALLBACKS)}")
