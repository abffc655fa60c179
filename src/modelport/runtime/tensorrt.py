"""Native TensorRT (10.x): an engine built from the bundle's ONNX, cached beside the bundle.

Building takes seconds to minutes, so the serialized engine is cached under
``<bundle>/../.modelport-cache/<bundle>/tensorrt/``, keyed by the sha256 of the model files, the
build options (precision, profile shapes, workspace), the TensorRT version and the GPU: an engine only
runs on the TensorRT and GPU model that built it. One optimization profile spans each symbol's
min/opt/max from the bundle's signature (shape-tensor inputs, whose values set shapes inside the
engine, span their integer range). Buffers are torch CUDA tensors on a private stream; shape tensors
live in host memory, where TensorRT reads them (``get_tensor_location(name) == TensorLocation.HOST``).

Precision is the backend's: ``tensorrt`` clears TensorRT's TF32 flag (on by default) and compares at
the bundle's fp32 tolerance, ``tensorrt:tf32`` leaves it on, ``tensorrt:fp16`` allows fp16 kernels;
each compares at its own tolerance. TensorRT 10 only: 11 removed ``BuilderFlag.FP16`` (its networks are
strongly typed), so the pin is ``tensorrt>=10,<11`` and another major is refused with that pip line.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from modelport.bundle import sha256
from modelport.errors import FeedError, MissingExtraError, ModelportError, UsageError
from modelport.runtime.base import (
    Runner,
    Target,
    TensorInfo,
    cache_folder,
    check_options,
    infos_from_signature,
    profile_shapes,
)
from modelport.spec import Signature

__all__ = ["TensorRTRunner", "EngineBuildError", "PRECISIONS", "PIP"]

PRECISIONS = ("fp32", "tf32", "fp16")
PIP = "pip install 'tensorrt>=10,<11'"  # the tensorrt extra's pin (pyproject.toml)
# TensorRT data types by name: (numpy / torch dtype name)
_DTYPES = {"FLOAT": "float32", "HALF": "float16", "BF16": "bfloat16", "INT8": "int8", "INT32": "int32",
           "INT64": "int64", "BOOL": "bool", "UINT8": "uint8"}  # fmt: skip


class EngineBuildError(ModelportError):
    """TensorRT cannot build an engine for this model (exit 2: the model is fine, this backend is not).
    ``errors`` holds each parser error as one line."""

    def __init__(self, message: str, hint: str, errors: list[str] | None = None) -> None:
        super().__init__(message, hint)
        self.errors = errors or []


class TensorRTRunner(Runner):
    @classmethod
    def for_backend(cls, backend: Any, target: Target, options: dict[str, Any]) -> TensorRTRunner:
        args = dict(precision=backend.variant or "fp32", signature=target.signature, output_names=target.output_names)
        check_options(cls, options, set(args), backend.canonical)
        return cls(target.model_path, **args, **options)  # type: ignore[arg-type]

    def __init__(
        self,
        path: str | Path,
        *,
        precision: str = "fp32",
        signature: Signature | None = None,
        output_names: list[str] | None = None,
        cache_dir: str | Path | None = None,
        workspace_gb: float | None = None,
        device_id: int = 0,
        warmup: int = 0,
    ) -> None:
        super().__init__()
        self.path = Path(path)
        if precision not in PRECISIONS:
            raise UsageError(f"unknown TensorRT precision {precision!r}", f"choose one of: {', '.join(PRECISIONS)}")
        self.precision = precision
        self.name = "tensorrt" if precision == "fp32" else f"tensorrt:{precision}"
        self.signature = signature
        self.output_names = output_names
        self.cache_dir = Path(cache_dir) if cache_dir else cache_folder(self.path) / "tensorrt"
        self.workspace_gb = workspace_gb
        self.device_id = device_id
        self.warmup = warmup
        self._trt: Any = None  # the tensorrt module, once loaded
        self.engine: Any = None
        self.context: Any = None
        self.engine_file: Path | None = None
        self.from_cache = False
        self._inputs: list[str] = []
        self._outputs: list[str] = []

    @property
    def fp16(self) -> bool:
        return self.precision == "fp16"

    def _load(self) -> None:
        trt = self._trt = _import_tensorrt()
        import torch

        if not torch.cuda.is_available():
            raise ModelportError(
                "native TensorRT needs an NVIDIA GPU and none is visible (torch.cuda.is_available() is False)",
                "run on a machine with a CUDA GPU and a CUDA build of torch, or choose ort:cpu or openvino",
            )
        self._device = torch.device("cuda", self.device_id)
        logger = trt.Logger(trt.Logger.WARNING)
        with torch.cuda.device(self._device):
            self.engine_file = self.cache_dir / f"{self._cache_key(trt, torch)}.engine"
            self.from_cache = self.engine_file.is_file()
            data = self.engine_file.read_bytes() if self.from_cache else self._build(trt, logger)
            self._runtime = trt.Runtime(logger)
            self.engine = self._runtime.deserialize_cuda_engine(data)
            if self.engine is None:
                raise EngineBuildError(
                    f"TensorRT {trt.__version__} cannot load the engine {self.engine_file}",
                    f"delete {self.engine_file} so it is rebuilt",
                )
            self.context = self.engine.create_execution_context()
            self._stream = torch.cuda.Stream(device=self._device)
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self._inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if n not in self._inputs]
        lost = [n for n in self.output_names or [] if n not in outputs]
        if lost:
            raise EngineBuildError(
                f"TensorRT's engine has no output {lost[0]!r} (it has {', '.join(outputs)})",
                "use ort:tensorrt,cuda,cpu for this model",
            )
        self._outputs = list(self.output_names or outputs)

    def _build(self, trt: Any, logger: Any) -> bytes:
        start = time.perf_counter()
        builder = trt.Builder(logger)
        network = builder.create_network(0)  # TensorRT 10 networks are always explicit-batch
        parser = trt.OnnxParser(network, logger)
        if not parser.parse_from_file(str(self.path)):  # from the path, so external weights resolve
            errors = [_parser_error(parser.get_error(i)) for i in range(parser.num_errors)]
            more = f" (+{len(errors) - 3} more)" if len(errors) > 3 else ""
            raise EngineBuildError(
                f"TensorRT {trt.__version__}'s ONNX parser rejected {self.path.name}: {'; '.join(errors[:3])}{more}",
                "ort:tensorrt,cuda,cpu runs what TensorRT cannot on CUDA instead; or re-export at another --opset",
                errors,
            )
        config = builder.create_builder_config()
        if self.workspace_gb:
            config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(self.workspace_gb * (1 << 30)))
        if self.precision == "fp16":
            config.set_flag(trt.BuilderFlag.FP16)
        elif self.precision == "tf32":
            config.set_flag(trt.BuilderFlag.TF32)  # TensorRT's default, said out loud
        else:
            config.clear_flag(trt.BuilderFlag.TF32)  # TF32 keeps 10 mantissa bits: not fp32
        profile = builder.create_optimization_profile()
        for i in range(network.num_inputs):
            tensor = network.get_input(i)
            profile.set_shape(tensor.name, *self._profile(tensor.name, tuple(tensor.shape)))
            if tensor.is_shape_tensor:  # its values are shapes: the profile bounds them too
                count = int(np.prod(tuple(tensor.shape)))  # a 1-D tensor of fixed length, or a scalar
                profile.set_shape_input(tensor.name, *self._shape_values(tensor.name, count))
        config.add_optimization_profile(profile)
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise EngineBuildError(
                f"TensorRT {trt.__version__} could not build an engine for {self.path.name} (its log above says why)",
                "try ort:tensorrt,cuda,cpu, a larger workspace_gb, or without fp16",
            )
        data = bytes(serialized)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        assert self.engine_file is not None
        tmp = self.engine_file.with_suffix(f".tmp{os.getpid()}")
        tmp.write_bytes(data)
        os.replace(tmp, self.engine_file)  # a crash leaves no half-written engine behind
        self.timings["build_s"] = time.perf_counter() - start
        return data

    def _profile(self, name: str, shape: tuple[int, ...]) -> tuple[tuple[int, ...], ...]:
        """(min, opt, max) shapes of one input from the signature; a static input is its own profile."""
        if all(d >= 0 for d in shape):
            return shape, shape, shape
        shapes = profile_shapes(self.signature) if self.signature is not None else {}
        if name not in shapes:
            raise EngineBuildError(
                f"input {name!r} has dynamic dims {list(shape)} and no signature bounds them",
                "run a bundle (its manifest records min/opt/max per symbol), or pass signature=",
            )
        return shapes[name]

    def _shape_values(self, name: str, count: int) -> tuple[list[int], list[int], list[int]]:
        """(min, opt, max) values of a shape-tensor input: its integer range (half-open) from the signature."""
        spec = next((s for s in self.signature.inputs if s.name == name), None) if self.signature else None
        bounds = spec.value_range() if spec is not None else None
        if bounds is None:
            raise EngineBuildError(
                f"input {name!r} is a shape tensor (its values set shapes in the engine) and has no value range",
                f"give it one: --input {name}:DIMS:int64:LOW..HIGH, or use ort:tensorrt,cuda,cpu",
            )
        low, high = int(bounds[0]), int(bounds[1]) - 1
        return [low] * count, [(low + high) // 2] * count, [high] * count

    def _cache_key(self, trt: Any, torch: Any) -> str:
        digest = hashlib.sha256()
        for file in sorted(self.path.parent.glob(self.path.name + "*")):  # model.onnx and model.onnx.data
            digest.update(sha256(file).encode())
        options = {
            "precision": self.precision,
            "workspace_gb": self.workspace_gb,
            "profile": str(self.signature) if self.signature else None,
            "tensorrt": trt.__version__,
            "gpu": torch.cuda.get_device_name(self._device),
            "capability": torch.cuda.get_device_capability(self._device),
        }
        digest.update(json.dumps(options, sort_keys=True).encode())
        return digest.hexdigest()[:32]

    def inputs(self) -> list[TensorInfo]:
        if self.signature is not None:
            return infos_from_signature(self.signature)
        return [self._info(n) for n in self._need_inputs()]

    def outputs(self) -> list[TensorInfo]:
        self._need_inputs()
        return [self._info(n) for n in self._outputs]

    def _infer(self, feed: dict[str, Any], timeout: float | None) -> dict[str, np.ndarray]:
        import torch

        keep: dict[str, Any] = {}
        with torch.cuda.device(self._device), torch.cuda.stream(self._stream):
            for name in self._inputs:
                keep[name] = self._bind_input(name, feed[name])
            for name in self._outputs:
                keep[name] = self._bind_output(name)
            if not self.context.execute_async_v3(self._stream.cuda_stream):
                raise FeedError("TensorRT failed to run the engine (its log above says why)", "check the feed's shapes")
            self._stream.synchronize()
        return {name: _to_numpy(keep[name]) for name in self._outputs}

    def _on_host(self, name: str) -> bool:
        """Shape tensors (values that become shapes) are read by TensorRT from host memory, not the GPU."""
        return bool(self.engine.get_tensor_location(name) == self._trt.TensorLocation.HOST)

    def _bind_input(self, name: str, value: Any) -> Any:
        """Set the input's shape and address; the array or tensor returned must outlive the run."""
        import torch

        dtype = _dtype_name(self._trt, self.engine.get_tensor_dtype(name))
        if self._on_host(name):
            host = value.cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
            bound: Any = np.ascontiguousarray(host, dtype=dtype)
            shape, address = bound.shape, bound.ctypes.data
        else:
            tensor = value if isinstance(value, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(value))
            bound = tensor.to(self._device, getattr(torch, dtype)).contiguous()
            shape, address = tuple(bound.shape), bound.data_ptr()
        if not self.context.set_input_shape(name, tuple(shape)):
            low, _, high = self.engine.get_tensor_profile_shape(name, 0)
            raise FeedError(
                f"input {name!r} has shape {list(shape)}, outside the engine's profile {list(low)}..{list(high)}",
                "feed sizes inside the bundle's --dim bounds, or re-export with wider bounds",
            )
        self.context.set_tensor_address(name, address)
        return bound

    def _bind_output(self, name: str) -> Any:
        import torch

        shape = tuple(self.context.get_tensor_shape(name))
        if any(d < 0 for d in shape):
            raise FeedError(
                f"output {name!r} has a data-dependent shape {list(shape)}, which this runner cannot allocate",
                "use ort:tensorrt,cuda,cpu for this model",
            )
        dtype = _dtype_name(self._trt, self.engine.get_tensor_dtype(name))
        if self._on_host(name):
            host = np.empty(shape, dtype)
            self.context.set_tensor_address(name, host.ctypes.data)
            return host
        tensor = torch.empty(shape, dtype=getattr(torch, dtype), device=self._device)
        self.context.set_tensor_address(name, tensor.data_ptr())
        return tensor

    def _close(self) -> None:
        self.context = None
        self.engine = None

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info.update(engine=str(self.engine_file) if self.engine_file else None, from_cache=self.from_cache)
        if self.engine is not None:
            import tensorrt
            import torch

            info.update(tensorrt=tensorrt.__version__, gpu=torch.cuda.get_device_name(self._device))
        return info

    def _info(self, name: str) -> TensorInfo:
        shape = tuple(d if d >= 0 else None for d in self.engine.get_tensor_shape(name))
        return TensorInfo(name, shape, _dtype_name(self._trt, self.engine.get_tensor_dtype(name)))

    def _need_inputs(self) -> list[str]:
        self.require_loaded()
        return self._inputs


def _import_tensorrt() -> Any:
    try:
        import tensorrt
    except ImportError:
        raise MissingExtraError("the tensorrt backend", "tensorrt") from None
    if not str(tensorrt.__version__).startswith("10."):
        raise ModelportError(
            f"TensorRT {tensorrt.__version__} is installed; modelport's tensorrt backend supports TensorRT 10 only "
            "(11 dropped the fp16 builder flag it uses)",
            PIP,
        )
    return tensorrt


def _parser_error(error: Any) -> str:
    """One line per parser error: the node, its op, and TensorRT's description."""
    node = getattr(error, "node_name", lambda: "")() or (f"node {error.node()}" if error.node() >= 0 else "")
    op = getattr(error, "node_operator", lambda: "")()
    desc = " ".join(str(error.desc()).split())
    where = f"{node} ({op})" if op else node
    return f"{where}: {desc}" if where else desc


def _dtype_name(trt: Any, trt_dtype: Any) -> str:
    """numpy / torch name of a TensorRT data type ("float32", "int64"...)."""
    for key, name in _DTYPES.items():
        if getattr(trt.DataType, key, None) == trt_dtype:
            return name
    raise EngineBuildError(f"TensorRT tensor type {trt_dtype} has no numpy equivalent", "use ort:tensorrt,cuda,cpu")


def _to_numpy(tensor: Any) -> np.ndarray:
    if isinstance(tensor, np.ndarray):  # a host output
        return tensor
    import torch

    return (tensor.float() if tensor.dtype == torch.bfloat16 else tensor).cpu().numpy()
