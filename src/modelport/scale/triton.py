"""A Triton model repository from bundles: ``REPO/NAME/config.pbtxt`` and ``REPO/NAME/1/...``, the config
built as Triton's own ``ModelConfig`` protobuf (``tritonclient.grpc.model_config_pb2``) and written in
its text format, never from a string template.

Two flavours:

- ``onnxruntime``: ``platform: "onnxruntime_onnx"`` and the ONNX file (with its external data), for the
  Triton images that carry the onnxruntime backend; OpenVINO / TensorRT bundles ask for that execution
  accelerator.
- ``python``: Triton's Python backend running the bundle through modelport's runner (any backend
  modelport has, an optimized bundle's included): the bundle is copied to ``1/bundle`` and
  ``1/model.py`` loads it. The Python environment Triton starts must have modelport installed.
  A generation bundle becomes a **decoupled** model instead (``triton_generate_model.py``): text in
  (``text_input`` and sampling options), text out (``text_output``, ``finish_reason``), decoded by
  modelport's continuous-batching scheduler, so Triton's ``generate`` and ``generate_stream`` answer it.

Dims come from the bundle's signature: ``-1`` for a symbolic size; when every input and output starts
with the same symbol, that is the batch dimension, ``max_batch_size`` is its verified bound and the dims
leave it out; otherwise ``max_batch_size: 0`` and the dims are whole.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelport.bundle import Bundle
from modelport.errors import MissingExtraError, UsageError
from modelport.generation.model import is_generation
from modelport.generation.seq2seq import refuse_seq2seq
from modelport.runtime.base import TensorInfo, infos_from_manifest, infos_from_signature
from modelport.serving.batching import BatchConfig
from modelport.serving.models import batch_axis, parse_sources
from modelport.serving.protocol import to_datatype

__all__ = ["triton_repository", "TritonModel", "PLATFORMS", "CONFIG", "is_repository"]

CONFIG = "config.pbtxt"  # each model's configuration in a repository

PLATFORMS = ("onnxruntime", "python")
_PYTHON_MODEL = Path(__file__).with_name("triton_python_model.py")
_GENERATE_MODEL = Path(__file__).with_name("triton_generate_model.py")
# the decoupled generation model's inputs beyond text_input: name -> Triton type (each optional, [1])
_GENERATE_INPUTS = {"max_tokens": "INT32", "temperature": "FP32", "top_p": "FP32", "top_k": "INT32",
                    "seed": "INT64", "ignore_eos": "BOOL", "stream": "BOOL"}  # fmt: skip


@dataclass
class TritonModel:
    name: str
    folder: Path
    config: Any  # model_config_pb2.ModelConfig


def triton_repository(
    bundles: Sequence[str | Path],
    output: str | Path,
    *,
    platform: str = "onnxruntime",
    instances: int = 1,
    batching: bool = True,
    max_queue_delay_us: int = 0,
    preferred_batch_sizes: Sequence[int] = (),
    max_sequences: int = 16,
) -> list[TritonModel]:
    """Write a Triton model repository at ``output`` (a new folder: an existing one is never touched), one
    model per bundle (``PATH`` or ``NAME=PATH``). Returns each model's folder and config. ``max_sequences``:
    what a generation bundle's decoupled model decodes together at most (1 without ``batching``)."""
    if platform not in PLATFORMS:
        raise UsageError(f"unknown Triton platform {platform!r}", f"choose one of: {', '.join(PLATFORMS)}")
    if instances < 1:
        raise UsageError("--instances must be at least 1", "e.g. --instances 2")
    if max_sequences < 1:
        raise UsageError("--max-sequences must be at least 1", "e.g. --max-sequences 16")
    target = Path(output)
    if target.exists():
        raise UsageError(f"{target} already exists", "pass a new folder for the repository (-o)")
    pb = _model_config_pb2()
    if not bundles:
        raise UsageError("give one or more bundles", "NAME=PATH names one")
    sources = parse_sources(bundles)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    imports = Path(tempfile.mkdtemp(prefix=".imports-", dir=staging))
    try:
        written = []
        for source in sources:
            bundle = _bundle(source.path, imports / source.name)
            refuse_seq2seq(bundle, "the Triton writer")
            generating = platform == "python" and is_generation(bundle)
            if generating:
                sequences = BatchConfig(batching, max_sequences=max_sequences).sequences
                config = _generate_config(pb, source.name, instances, sequences)
            else:
                config = _config(pb, source.name, bundle, platform, instances, batching, max_queue_delay_us,
                                 preferred_batch_sizes)  # fmt: skip
            folder = staging / source.name
            _write_files(bundle, folder / "1", platform, _GENERATE_MODEL if generating else _PYTHON_MODEL)
            (folder / CONFIG).write_text(_text(config))
            written.append(TritonModel(source.name, target / source.name, config))
        shutil.rmtree(imports)
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return written


def _bundle(path: Path, scratch: Path) -> Bundle:
    """The bundle at ``path``; a plain ``.onnx`` is imported (checked) into ``scratch`` first."""
    if path.suffix.lower() == ".onnx" and path.is_file():
        from modelport.ingest.importing import import_onnx

        return import_onnx(path, scratch).bundle
    return Bundle.open(path)


def _config(
    pb: Any,
    name: str,
    bundle: Bundle,
    platform: str,
    instances: int,
    batching: bool,
    delay_us: int,
    preferred: Sequence[int],
) -> Any:
    inputs = infos_from_signature(bundle.signature)
    outputs = infos_from_manifest(bundle.manifest.get("outputs", []))
    axis = batch_axis(inputs, outputs, {n: d.max for n, d in bundle.signature.dims.items()})
    config = pb.ModelConfig(name=name, max_batch_size=axis.max if axis else 0)
    if platform == "onnxruntime":
        config.platform = "onnxruntime_onnx"
        _accelerators(pb, config, bundle.backend)
    else:
        config.backend = "python"
    for info, field in [*((i, config.input) for i in inputs), *((o, config.output) for o in outputs)]:
        dims = info.shape[1:] if axis else info.shape
        field.add(name=info.name, data_type=_data_type(pb, info), dims=[d if isinstance(d, int) else -1 for d in dims])
    if axis and batching:
        config.dynamic_batching.max_queue_delay_microseconds = delay_us
        config.dynamic_batching.preferred_batch_size.extend(sorted(set(preferred)))
    config.instance_group.add(count=instances, kind=pb.ModelInstanceGroup.KIND_CPU)
    return config


def _generate_config(pb: Any, name: str, instances: int, max_sequences: int) -> Any:
    """A decoupled Python-backend model: text in, text out, streamed by its response sender."""
    config = pb.ModelConfig(name=name, backend="python", max_batch_size=0)
    config.model_transaction_policy.decoupled = True
    config.input.add(name="text_input", data_type=pb.DataType.Value("TYPE_STRING"), dims=[1])
    for option, kind in _GENERATE_INPUTS.items():
        config.input.add(name=option, data_type=pb.DataType.Value(f"TYPE_{kind}"), dims=[1], optional=True)
    for output in ("text_output", "finish_reason"):
        config.output.add(name=output, data_type=pb.DataType.Value("TYPE_STRING"), dims=[1])
    config.parameters["max_sequences"].string_value = str(max_sequences)
    config.instance_group.add(count=instances, kind=pb.ModelInstanceGroup.KIND_CPU)
    return config


def _accelerators(pb: Any, config: Any, backend: str) -> None:
    """The execution accelerator Triton's onnxruntime backend should use for the bundle's backend."""
    family, _, variant = backend.partition(":")
    accelerators = config.optimization.execution_accelerators
    if family == "openvino":
        accelerators.cpu_execution_accelerator.add(name="openvino")
    elif family == "tensorrt" or "tensorrt" in variant:
        trt = accelerators.gpu_execution_accelerator.add(name="tensorrt")
        trt.parameters["precision_mode"] = "FP16" if "fp16" in backend else "FP32"


def _data_type(pb: Any, info: TensorInfo) -> int:
    name = to_datatype(info.dtype)
    name = "STRING" if name == "BYTES" else name  # Triton's config calls v2's BYTES TYPE_STRING
    try:
        return pb.DataType.Value(f"TYPE_{name}")
    except ValueError:
        raise UsageError(f"tensor {info.name!r} has type {info.dtype}, which Triton has no type for", "") from None


def _write_files(bundle: Bundle, version: Path, platform: str, python_model: Path) -> None:
    version.mkdir(parents=True)
    if platform == "python":
        shutil.copytree(bundle.path, version / "bundle")
        shutil.copyfile(python_model, version / "model.py")
        return
    for name in bundle.manifest["files"]:  # the graph and any external data it names, beside it as before
        if not name.endswith(".npz"):  # an optimized bundle's held-out feeds stay with the bundle
            shutil.copyfile(bundle.path / name, version / name)


def _text(config: Any) -> str:
    from google.protobuf import text_format

    return text_format.MessageToString(config)


def _model_config_pb2() -> Any:
    try:
        from tritonclient.grpc import model_config_pb2
    except ImportError:
        raise MissingExtraError("writing a Triton model repository", "serve") from None
    return model_config_pb2


def is_repository(path: str | Path) -> bool:
    """A folder whose subfolders hold ``config.pbtxt``: a Triton model repository, not a bundle."""
    folder = Path(path)
    return folder.is_dir() and any((child / CONFIG).is_file() for child in folder.iterdir() if child.is_dir())
