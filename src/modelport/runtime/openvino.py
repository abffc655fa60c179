"""Native OpenVINO: the ONNX file compiled for the CPU by ``openvino.Core``.

The CPU plugin's default precision is not fp32 everywhere: on CPUs with AVX512-BF16 or AMX it runs
matrix work in bf16, which is faster and visibly less exact. ``openvino:f32`` pins fp32 with
``INFERENCE_PRECISION_HINT`` so its answers compare at the bundle's tolerance; ``openvino:bf16`` asks for
bf16 (refused on a CPU without it, rather than quietly run in fp32); ``openvino:default``
leaves the device's choice and says so in ``precision`` ("default") and ``describe()`` (the precision
the device actually picked).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from modelport.errors import BundleError, FeedError, MissingExtraError, UsageError, first_line
from modelport.runtime.base import Runner, TensorInfo, infos_from_signature
from modelport.spec import Signature

__all__ = ["OpenVINORunner", "PRECISIONS", "cpu_has_bf16"]

PRECISIONS = ("f32", "bf16", "default")


class OpenVINORunner(Runner):
    def __init__(
        self,
        path: str | Path,
        precision: str = "f32",
        threads: int | None = None,
        *,
        signature: Signature | None = None,
        output_names: list[str] | None = None,
        device: str = "CPU",
        warmup: int = 0,
    ) -> None:
        super().__init__()
        if precision not in PRECISIONS:
            raise UsageError(f"unknown OpenVINO precision {precision!r}", f"choose one of: {', '.join(PRECISIONS)}")
        self.path = Path(path)
        self.mode = precision
        self.precision = {"f32": "fp32", "bf16": "bf16"}.get(precision, "default")
        self.name = f"openvino:{precision}"
        self.threads = threads
        self.signature = signature
        self.output_names = output_names
        self.device = device
        self.warmup = warmup
        self.compiled: Any = None
        self._request: Any = None
        self._ports: list[tuple[str, Any]] = []

    def _load(self) -> None:
        try:
            import openvino as ov
        except ImportError:
            raise MissingExtraError("the openvino backend", "openvino") from None
        core = ov.Core()
        if self.mode == "bf16" and not cpu_has_bf16(core):
            raise UsageError(
                "openvino:bf16 needs a CPU with bf16 instructions (AVX512-BF16 or AMX); this one has none",
                "use openvino:f32",
            )
        config: dict[str, Any] = {}
        if self.mode != "default":
            config["INFERENCE_PRECISION_HINT"] = self.mode
        if self.threads:
            config["INFERENCE_NUM_THREADS"] = int(self.threads)
        try:
            self.compiled = core.compile_model(str(self.path), self.device, config)
        except Exception as exc:
            raise BundleError(
                f"OpenVINO {ov.__version__} cannot compile {self.path.name} for {self.device}: {first_line(exc)}",
                f"run `modelport doctor {self.path}`; or use another backend (ort:cpu)",
            ) from exc
        self._request = self.compiled.create_infer_request()
        self._ports = self._output_ports()

    def _output_ports(self) -> list[tuple[str, Any]]:
        """The outputs by the ONNX output names, in the graph's order (OpenVINO keeps the ONNX names
        among each output's tensor names, beside names of its own)."""
        ports = list(self.compiled.outputs)
        if not self.output_names:
            return [(p.get_any_name(), p) for p in ports]
        out = []
        for index, name in enumerate(self.output_names):
            port = next((p for p in ports if name in p.get_names()), ports[index] if index < len(ports) else None)
            if port is None:
                raise BundleError(f"OpenVINO's compiled model has no output {name!r}", "re-export the bundle")
            out.append((name, port))
        return out

    def inputs(self) -> list[TensorInfo]:
        if self.signature is not None:
            return infos_from_signature(self.signature)
        return [_info(p.get_any_name(), p) for p in self._need().inputs]

    def outputs(self) -> list[TensorInfo]:
        self._need()
        return [_info(name, port) for name, port in self._ports]

    def _infer(self, feed: dict[str, np.ndarray], timeout: float | None) -> dict[str, np.ndarray]:
        try:
            result = self._request.infer(feed)
        except Exception as exc:
            raise FeedError(
                f"OpenVINO failed: {first_line(exc)}",
                "check the feed's names, shapes and dtypes against the bundle's inputs (modelport doctor DIR)",
            ) from exc
        return {name: np.array(result[port], copy=True) for name, port in self._ports}

    def _close(self) -> None:
        self._request = None
        self.compiled = None

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info["device"] = self.device
        if self.compiled is not None:
            import openvino as ov

            info["openvino"] = ov.__version__
            info["inference_precision"] = self.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
            info["threads"] = int(self.compiled.get_property("INFERENCE_NUM_THREADS"))
        return info

    def _need(self) -> Any:
        self.require_loaded()
        return self.compiled


def _info(name: str, port: Any) -> TensorInfo:
    shape = tuple(d.get_length() if d.is_static else None for d in port.get_partial_shape())
    return TensorInfo(name, shape, port.get_element_type().to_dtype().name)


def cpu_has_bf16(core: Any = None) -> bool:
    """Whether OpenVINO's CPU plugin can compute in bf16 here (False without OpenVINO)."""
    try:
        import openvino as ov

        return "BF16" in (core or ov.Core()).get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    except Exception:  # no openvino, or a plugin that cannot say: no
        return False
