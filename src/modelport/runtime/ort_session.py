"""Building an ONNX Runtime session, as pure functions of its settings: what ``OrtRunner`` loads with.

``provider_options`` gives each provider its options (the device, TF32 off for fp32 on CUDA, the TensorRT
engine cache and profiles); ``open_session`` builds the ``SessionOptions`` from ``SessionSettings`` and
opens the session from the file path (so external data resolves next to the model), with fallback
during a run disabled: a provider failing mid-run must fail the run, not move it silently to the next.
``cpu_session`` is the bare CPU session of code that reads onnxruntime's own answers and refusals
(``ingest``: does this file load, what does each node compute), for a file or a graph in memory.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx

from modelport.errors import import_onnxruntime
from modelport.runtime import providers as prov
from modelport.spec import Signature

__all__ = ["SessionSettings", "open_session", "provider_options", "cpu_session"]

_LEVELS = {"all": "ORT_ENABLE_ALL", "extended": "ORT_ENABLE_EXTENDED", "basic": "ORT_ENABLE_BASIC",
           "disabled": "ORT_DISABLE_ALL"}  # fmt: skip


@dataclass(frozen=True)
class SessionSettings:
    optimization: str = "all"  # all | extended | basic | disabled
    intra_threads: int = 1
    inter_threads: int | None = None  # set: independent branches run in parallel on this many threads
    config: dict[str, str] = field(default_factory=dict)  # SessionOptions.add_session_config_entry pairs


def provider_options(
    providers: Sequence[str],
    *,
    precision: str = "fp32",
    device_id: int = 0,
    trt_cache: Path | None = None,
    signature: Signature | None = None,
    overrides: dict[str, dict[str, Any]] | None = None,
) -> list[dict[str, str]]:
    """The options of each provider, in order, as the strings ONNX Runtime takes."""
    out = []
    for provider in providers:
        options: dict[str, Any] = {}
        if provider in prov.GPU_PROVIDERS:
            options["device_id"] = device_id
        if provider == "CUDAExecutionProvider":
            # fp32 means fp32: ORT's CUDA provider rounds matmul and conv inputs to TF32 by default
            options["use_tf32"] = int(precision != "fp32")
        if provider == "TensorrtExecutionProvider" and trt_cache is not None:
            # ORT's TensorRT provider makes this folder without parents, and on failure its Python layer
            # silently retries with the next providers and without these options. It has no TF32 option
            # (runtime/ort.py's docstring): only fp16 is ours to set.
            trt_cache.mkdir(parents=True, exist_ok=True)
            options.update(prov.tensorrt_options(signature, trt_cache, precision == "fp16"))
        options.update((overrides or {}).get(provider, {}))
        out.append({k: str(v) for k, v in options.items()})
    return out


def open_session(
    path: Path,
    providers: Sequence[str],
    options: list[dict[str, str]],
    settings: SessionSettings,
    *,
    profile_prefix: str | None = None,
    optimized_to: Path | None = None,
) -> Any:
    """An ``InferenceSession`` for the file at ``path``; ONNX Runtime's own exception on failure.
    ``optimized_to``: also save the graph as ONNX Runtime optimized it there."""
    ort = import_onnxruntime()
    session_options = ort.SessionOptions()
    session_options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, _LEVELS[settings.optimization])
    session_options.log_severity_level = 4  # errors come back as exceptions (translated); logged too, they double
    session_options.intra_op_num_threads = settings.intra_threads
    for key, value in settings.config.items():
        session_options.add_session_config_entry(key, value)
    if settings.inter_threads:  # inter-op threads only run when independent branches may run in parallel
        session_options.inter_op_num_threads = settings.inter_threads
        session_options.execution_mode = ort.ExecutionMode.ORT_PARALLEL
    if profile_prefix:
        session_options.enable_profiling = True
        session_options.profile_file_prefix = profile_prefix
    if optimized_to is not None:
        session_options.optimized_model_filepath = str(optimized_to)
    session = ort.InferenceSession(str(path), session_options, providers=list(providers), provider_options=options)
    session.disable_fallback()
    return session


def cpu_session(model: onnx.ModelProto | str | Path, *, optimization: str = "all", threads: int = 1) -> Any:
    """An ``InferenceSession`` on ``CPUExecutionProvider`` for the file or in-memory graph ``model`` (saved
    to a temporary file first). ``optimization="disabled"`` keeps every node's output what that node
    computed; one thread by default (these graphs are small). onnxruntime's own exception, in its own
    words, when it cannot load the graph."""
    if isinstance(model, onnx.ModelProto):
        with tempfile.TemporaryDirectory(prefix="modelport-session-") as tmp:
            path = Path(tmp) / "model.onnx"
            path.write_bytes(model.SerializeToString())
            return cpu_session(path, optimization=optimization, threads=threads)
    return open_session(Path(model), ["CPUExecutionProvider"], [{}], SessionSettings(optimization, threads))
