"""ONNX Runtime: on the CPU, the runtime that verification trusts; with providers, CUDA, TensorRT,
OpenVINO or DirectML.

Sessions are always created from the file path (so external data resolves next to the model),
never from bytes. ``OrtRunner(path, optimization=..., threads=...)`` stays the CPU runner that
verification uses; everything else is keyword-only.

Precision on the GPU is asked for, never inherited from a default: ``precision="fp32"`` turns the CUDA
provider's TF32 off (it is on by default), ``"tf32"`` allows it, ``"fp16"`` builds fp16 TensorRT
engines. ONNX Runtime's TensorRT provider has no option for TF32 (its precision options are
``trt_fp16_enable``, ``trt_bf16_enable`` and ``trt_int8_enable``) and never clears TensorRT's TF32 builder
flag, which is on by default: a session with the TensorRT provider is therefore never true fp32, and
its runner says ``precision == "tf32"`` so that it is compared at the tf32 tolerance. The native
``tensorrt`` backend clears the flag and is the true-fp32 TensorRT.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from modelport.diagnose.translate import ort_load_error, ort_run_error
from modelport.errors import UsageError, import_onnxruntime
from modelport.machine import physical_cores
from modelport.runtime import providers as prov
from modelport.runtime.base import Runner, Target, TensorInfo, cache_folder, check_options
from modelport.runtime.ort_session import SessionSettings, open_session, provider_options
from modelport.runtime.placement import PlacementReport, from_profile, heavy_ops_in_graph, read_profile
from modelport.spec import Signature

__all__ = ["OrtRunner", "OPT_LEVELS", "OPTIMIZATIONS"]

# the levels parity checks with: ALL can fold a live Dropout into something that looks right
OPT_LEVELS = ("all", "disabled")
OPTIMIZATIONS = ("all", "extended", "basic", "disabled")
PRECISIONS = ("fp32", "tf32", "fp16")
_TYPES = {"float": "float32", "double": "float64", "string": "str"}


class OrtRunner(Runner):
    """``load()`` creates the session; ``infer(feed)`` returns outputs by name."""

    @classmethod
    def for_backend(cls, backend: Any, target: Target, options: dict[str, Any]) -> OrtRunner:
        args = dict(optimization=target.optimization, threads=target.threads, providers=backend.variant.split(","),
                    precision=backend.precision, fallback=target.fallback, signature=target.signature)  # fmt: skip
        check_options(cls, options, set(args), backend.canonical)
        return cls(target.model_path, **args, **options)  # type: ignore[arg-type]

    def __init__(
        self,
        path: str | Path,
        optimization: str = "all",
        threads: int | None = None,
        *,
        providers: str | Sequence[str] = "cpu",
        fallback: str = "refuse",
        signature: Signature | None = None,
        cache_dir: str | Path | None = None,
        precision: str = "fp32",
        fp16: bool = False,
        inter_threads: int | None = None,
        warmup: int = 0,
        io_binding: bool | None = None,
        device_id: int = 0,
        provider_options: dict[str, dict[str, Any]] | None = None,
        session_config: dict[str, str] | None = None,
    ) -> None:
        super().__init__()
        if optimization not in OPTIMIZATIONS:
            raise UsageError(
                f"unknown optimization level {optimization!r}", f"choose one of: {', '.join(OPTIMIZATIONS)}"
            )
        self.path = Path(path)
        self.optimization = optimization
        self.threads = threads
        self.requested = prov.parse_providers(providers)
        self.fallback = fallback
        self.signature = signature
        self.cache_dir = Path(cache_dir) if cache_dir else cache_folder(self.path)
        if precision not in PRECISIONS:
            raise UsageError(f"unknown ONNX Runtime precision {precision!r}", f"choose one of: {', '.join(PRECISIONS)}")
        #: what the GPU providers were asked to compute in (``precision`` is what they do, known after load)
        self.requested_precision = "fp16" if fp16 else precision
        prov.check_precision(self.requested_precision, self.requested)
        self.inter_threads = inter_threads
        self.warmup = warmup
        self.io_binding = io_binding
        self.device_id = device_id
        self.provider_options = {prov.parse_providers(k)[0]: v for k, v in (provider_options or {}).items()}
        #: ``SessionOptions.add_session_config_entry`` pairs, e.g. ``{"session.intra_op.allow_spinning": "0"}``
        self.session_config = dict(session_config or {})
        suffix = "" if self.requested_precision == "fp32" else ":" + self.requested_precision
        self.name = "ort:" + ",".join(prov.short_name(p) for p in self.requested) + suffix
        self.precision = prov.precision_of(self.requested_precision, self.requested)
        self.session: Any = None
        self._providers: list[str] = []
        self._binding = False

    # -- session ---------------------------------------------------------------------------------
    stops_itself = True  # RunOptions.terminate

    @property
    def fp16(self) -> bool:
        return self.requested_precision == "fp16"

    def _load(self) -> None:
        self._providers, self.warnings = prov.check_available(self.requested, self.fallback)
        prov.load_gpu_libraries(self._providers)
        try:
            self.session = self._create_session()
        except Exception as exc:
            raise ort_load_error(exc, self.path) from exc
        actual = self.session.get_providers()
        self.warnings += prov.check_session(self._providers, actual, self.fallback)
        if self.precision == prov.precision_of(self.requested_precision, self.requested):  # not a graph's own (int8)
            self.precision = prov.precision_of(self.requested_precision, actual)
        self._binding = actual[0] in prov.GPU_PROVIDERS if self.io_binding is None else bool(self.io_binding)

    def _create_session(self, profile_prefix: str | None = None) -> Any:
        options = provider_options(
            self._providers, precision=self.requested_precision, device_id=self.device_id,
            trt_cache=self.cache_dir / "trt", signature=self.signature, overrides=self.provider_options,
        )  # fmt: skip
        settings = SessionSettings(self.optimization, self.intra_threads, self.inter_threads, self.session_config)
        return open_session(self.path, self._providers, options, settings, profile_prefix=profile_prefix)

    @property
    def intra_threads(self) -> int:
        return self.threads or physical_cores()

    # -- the contract ----------------------------------------------------------------------------
    def inputs(self) -> list[TensorInfo]:
        return [_info(i) for i in self._need().get_inputs()]

    def outputs(self) -> list[TensorInfo]:
        return [_info(o) for o in self._need().get_outputs()]

    def _infer(self, feed: dict[str, Any], timeout: float | None) -> dict[str, np.ndarray]:
        """Outputs by name. With ``timeout`` (seconds), a watchdog sets ``RunOptions.terminate`` once it has
        passed: ONNX Runtime stops between nodes (Loop bodies included) and this raises ``TimeoutError``. The
        run then happens off the main thread, so Ctrl-C is heard at once and terminates it the same way."""
        session = self._need()
        names = [o.name for o in session.get_outputs()]
        run_options, watchdog = _watchdog(timeout)

        def call() -> list[Any]:
            if self._binding:
                return self._run_bound(feed, names, run_options)
            return session.run(names, feed, run_options)

        try:
            values = call() if run_options is None else _interruptible(call, run_options)
        except Exception as exc:
            if run_options is not None and run_options.terminate:
                raise TimeoutError(f"ONNX Runtime did not finish in {timeout:g} s") from exc
            raise ort_run_error(exc, self.inputs(), feed, self.path) from exc
        finally:
            if watchdog is not None:
                watchdog.cancel()
        return dict(zip(names, values, strict=True))

    def device_feed(self, feed: dict[str, np.ndarray]) -> dict[str, Any]:
        """The feed copied to the GPU once (OrtValues), so timed runs skip the host-to-device copy."""
        ort = import_onnxruntime()

        return {
            k: ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(v), "cuda", self.device_id)
            for k, v in feed.items()
        }

    def _run_bound(self, feed: dict[str, Any], names: list[str], run_options: Any = None) -> list[np.ndarray]:
        """IO binding on the GPU: inputs live on the device (given as OrtValues or copied there once per
        call) and outputs are allocated there, so ONNX Runtime adds no copies of its own inside the run."""
        ort = import_onnxruntime()

        binding = self.session.io_binding()
        keep = []  # the OrtValues must outlive the run
        for name, value in feed.items():
            if not isinstance(value, ort.OrtValue):
                value = ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(value), "cuda", self.device_id)
            keep.append(value)
            binding.bind_ortvalue_input(name, value)
        for name in names:
            binding.bind_output(name, "cuda", self.device_id)
        binding.synchronize_inputs()
        self.session.run_with_iobinding(binding, run_options)
        binding.synchronize_outputs()
        return list(binding.copy_outputs_to_cpu())

    def _close(self) -> None:
        self.session = None

    def describe(self) -> dict[str, Any]:
        ort = import_onnxruntime()

        info = super().describe()
        info.update(
            onnxruntime=ort.__version__,
            precision_requested=self.requested_precision,
            providers_requested=self.requested,
            providers=self.session.get_providers() if self.session is not None else None,
            optimization=self.optimization,
            intra_op_threads=self.intra_threads,
            inter_op_threads=self.inter_threads or 1,
            io_binding=self._binding,
        )
        if self.session_config:
            info["session_config"] = dict(self.session_config)
        if "TensorrtExecutionProvider" in self.requested:
            info["tensorrt_options"] = prov.tensorrt_options(self.signature, self.cache_dir / "trt", self.fp16)
        return info

    # -- placement -------------------------------------------------------------------------------
    def placement(self, feed: dict[str, np.ndarray] | None = None, strict: bool = False) -> PlacementReport:
        """Where each node ran, from one profiled run of a second session with the same settings.
        ``strict`` raises ProviderError when any node left the first-choice provider."""
        session = self._need()
        feed = feed if feed is not None else self.example_feed()
        with tempfile.TemporaryDirectory(prefix="modelport-profile-") as tmp:
            profiled = self._create_session(profile_prefix=os.path.join(tmp, "ort"))
            profiled.run(None, feed)
            try:
                events = read_profile(profiled.end_profiling())
            except (OSError, json.JSONDecodeError) as exc:  # a profile we cannot read is our bug, not the user's
                raise RuntimeError(f"cannot read ONNX Runtime's profile: {exc}") from exc
            del profiled
        report = PlacementReport(
            self._providers, session.get_providers(), from_profile(events), heavy_ops_in_graph(self.path)
        )
        if strict:
            report.raise_if_fallbacks()
        return report

    def _need(self) -> Any:
        self.require_loaded()
        return self.session


def _watchdog(timeout: float | None) -> tuple[Any, threading.Timer | None]:
    """RunOptions whose ``terminate`` a timer sets after ``timeout`` seconds (none without a timeout)."""
    if timeout is None or not 0 < timeout < float("inf"):
        return None, None
    ort = import_onnxruntime()

    run_options = ort.RunOptions()
    run_options.log_severity_level = 4  # the "terminate flag" error is reported by the caller, not logged
    watchdog = threading.Timer(timeout, _terminate, (run_options,))
    watchdog.daemon = True
    watchdog.start()
    return run_options, watchdog


def _terminate(run_options: Any) -> None:
    run_options.terminate = True


def _interruptible(call: Callable[[], list[Any]], run_options: Any) -> list[Any]:
    """``call()`` in a worker thread while this one waits in short steps: a signal's Python handler only runs
    here, between steps, and a KeyboardInterrupt then stops ONNX Runtime through ``run_options``."""
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            box["values"] = call()
        except BaseException as exc:  # handed back to the caller's thread
            box["error"] = exc

    worker = threading.Thread(target=work, name="modelport-ort-run", daemon=True)
    worker.start()
    try:
        while worker.is_alive():
            worker.join(0.05)
    except BaseException:
        run_options.terminate = True
        worker.join()
        raise
    if "error" in box:
        raise box["error"]
    return box["values"]


def _info(node: Any) -> TensorInfo:
    kind = str(node.type)
    inner = kind[kind.find("(") + 1 : kind.rfind(")")] if "(" in kind else kind
    return TensorInfo(node.name, tuple(node.shape), _TYPES.get(inner, inner))
