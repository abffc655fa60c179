"""Native TensorRT (10.x): an engine built from the bundle's ONNX, cached beside the bundle.

Building takes seconds to minutes, so the serialized engine is cached under
``<bundle>/../.modelport-cache/<bundle>/tensorrt/``, keyed by the sha256 of the model files, the
build options (fp16, profile shapes, workspace), the TensorRT version and the GPU: an engine only
runs on the TensorRT and GPU model that built it. One optimization profile spans each symbol's
min/opt/max from the bundle's signature. Buffers are torch CUDA tensors on a private stream.

fp32 builds clear TensorRT's TF32 flag (on by default), so ``tensorrt`` compares at the bundle's
fp32 tolerance; ``tensorrt:fp16`` allows fp16 kernels and compares at the fp16 tolerance.
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
from modelport.errors import FeedError, MissingExtraError, ModelportError
from modelport.runtime.base import Runner, TensorInfo, cache_folder, infos_from_signature, profile_shapes
from modelport.spec import Signature

__all__ = ["TensorRTRunner", "EngineBuildError"]


class EngineBuildError(ModelportError):
    """TensorRT cannot build an engine for this model (exit 2: the model is fine, this backend is not).
    ``errors`` holds each parser error as one line."""

    def __init__(self, message: str, hint: str, errors: list[str] | None = None) -> None:
        super().__init__(message, hint)
        self.errors = errors or []


class TensorRTRunner(Runner):
    def __init__(
        self,
        path: str | Path,
        *,
        fp16: bool = False,
        signature: Signature | None = None,
        output_names: list[str] | None = None,
        cache_dir: str | Path | None = None,
        workspace_gb: float | None = None,
        device_id: int = 0,
        warmup: int = 0,
    ) -> None:
        super().__init__()
        self.path = Path(path)
        self.fp16 = fp16
        self.precision = "fp16" if fp16 else "fp32"
        self.name = "tensorrt:fp16" if fp16 else "tensorrt"
        self.signature = signature
        self.output_names = output_names
        self.cache_dir = Path(cache_dir) if cache_dir else cache_folder(self.path) / "tensorrt"
        self.workspace_gb = workspace_gb
        self.device_id = device_id
        self.warmup = warmup
        self.engine: Any = None
        self.context: Any = None
        self.engine_file: Path | None = None
        self.from_cache = False
        self._inputs: list[str] = []
        self._outputs: list[str] = []

    def _load(self) -> None:
        trt = _import_tensorrt()
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
        if self.fp16:
            config.set_flag(trt.BuilderFlag.FP16)
        else:
            config.clear_flag(trt.BuilderFlag.TF32)  # TF32 keeps 10 mantissa bits: not fp32
        profile = builder.create_optimization_profile()
        for i in range(network.num_inputs):
            tensor = network.get_input(i)
            profile.set_shape(tensor.name, *self._profile(tensor.name, tuple(tensor.shape)))
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

    def _cache_key(self, trt: Any, torch: Any) -> str:
        digest = hashlib.sha256()
        for file in sorted(self.path.parent.glob(self.path.name + "*")):  # model.onnx and model.onnx.data
            digest.update(sha256(file).encode())
        options = {
            "fp16": self.fp16,
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
                value = feed[name]
                tensor = value if isinstance(value, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(value))
                tensor = tensor.to(self._device, _torch_dtype(self.engine.get_tensor_dtype(name))).contiguous()
                if not self.context.set_input_shape(name, tuple(tensor.shape)):
                    low, _, high = self.engine.get_tensor_profile_shape(name, 0)
                    raise FeedError(
                        f"input {name!r} has shape {list(tensor.shape)}, outside the engine's profile "
                        f"{list(low)}..{list(high)}",
                        "feed sizes inside the bundle's --dim bounds, or re-export with wider bounds",
                    )
                keep[name] = tensor
                self.context.set_tensor_address(name, tensor.data_ptr())
            for name in self._outputs:
                shape = tuple(self.context.get_tensor_shape(name))
                if any(d < 0 for d in shape):
                    raise FeedError(
                        f"output {name!r} has a data-dependent shape {list(shape)}, which this runner cannot allocate",
                        "use ort:tensorrt,cuda,cpu for this model",
                    )
                keep[name] = torch.empty(
                    shape, dtype=_torch_dtype(self.engine.get_tensor_dtype(name)), device=self._device
                )
                self.context.set_tensor_address(name, keep[name].data_ptr())
            if not self.context.execute_async_v3(self._stream.cuda_stream):
                raise FeedError("TensorRT failed to run the engine (its log above says why)", "check the feed's shapes")
            self._stream.synchronize()
        return {name: _to_numpy(keep[name]) for name in self._outputs}

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
        return TensorInfo(name, shape, str(_torch_dtype(self.engine.get_tensor_dtype(name))).removeprefix("torch."))

    def _need_inputs(self) -> list[str]:
        self.require_loaded()
        return self._inputs


def _import_tensorrt() -> Any:
    try:
        import tensorrt
    except ImportError:
        raise MissingExtraError("the tensorrt backend", "tensorrt") from None
    return tensorrt


def _parser_error(error: Any) -> str:
    """One line per parser error: the node, its op, and TensorRT's description."""
    node = getattr(error, "node_name", lambda: "")() or (f"node {error.node()}" if error.node() >= 0 else "")
    op = getattr(error, "node_operator", lambda: "")()
    desc = " ".join(str(error.desc()).split())
    where = f"{node} ({op})" if op else node
    return f"{where}: {desc}" if where else desc


def _torch_dtype(trt_dtype: Any) -> Any:
    import tensorrt as trt
    import torch

    table = {"FLOAT": torch.float32, "HALF": torch.float16, "BF16": torch.bfloat16, "INT8": torch.int8,
             "INT32": torch.int32, "INT64": torch.int64, "BOOL": torch.bool, "UINT8": torch.uint8}  # fmt: skip
    for key, value in table.items():
        if getattr(trt.DataType, key, None) == trt_dtype:
            return value
    raise EngineBuildError(f"TensorRT tensor type {trt_dtype} has no numpy equivalent", "use ort:tensorrt,cuda,cpu")


def _to_numpy(tensor: Any) -> np.ndarray:
    import torch

    return (tensor.float() if tensor.dtype == torch.bfloat16 else tensor).cpu().numpy()
