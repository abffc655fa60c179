"""Open an ONNX file from anywhere (a bundle, our export, tf2onnx...) or say in one line why not."""

from __future__ import annotations

from pathlib import Path

import onnx
from google.protobuf.message import DecodeError

from modelport.bundle import MANIFEST, MODEL_FILE
from modelport.errors import ModelFileError, as_path

__all__ = ["open_onnx"]

_ZIP = b"PK\x03\x04"


def open_onnx(path: str | Path) -> tuple[Path, onnx.ModelProto]:
    """The model file and its graph, external weights not loaded (they are checked, not needed)."""
    target = Path(as_path(path, "the model"))
    if not target.exists():
        raise ModelFileError(f"{str(path)!r} does not exist", "pass an .onnx file or a bundle directory")
    if target.is_dir():
        if not (target / MODEL_FILE).is_file():
            what = "a bundle without its model file" if (target / MANIFEST).is_file() else "not a bundle"
            raise ModelFileError(f"{str(path)!r} is {what}: no {MODEL_FILE} inside", "pass the .onnx file itself")
        target = target / MODEL_FILE
    size = target.stat().st_size
    if size == 0:
        raise ModelFileError(f"{target} is empty (0 bytes)", "the write was interrupted: export the model again")
    with open(target, "rb") as fh:
        head = fh.read(64)
    if head.startswith(_ZIP):
        raise ModelFileError(
            f"{target} is a zip archive (a torch.save checkpoint or TorchScript file), not ONNX",
            f"export it first: modelport export {target} --input ... -o DIR",
        )
    if head.lstrip()[:1] in (b"{", b"[", b"<") or head.startswith(b"\x93NUMPY"):
        raise ModelFileError(
            f"{target} is a text or numpy file, not ONNX", "pass the .onnx file written by an exporter"
        )
    try:
        model = onnx.load_model(str(target), load_external_data=False)
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise ModelFileError(
            f"{target} is not a readable ONNX model ({size:,} bytes; protobuf says: {_short(exc)})",
            "the file is truncated or not ONNX: copy or export it again",
        ) from exc
    if model.ir_version == 0 or not model.HasField("graph") or not model.opset_import:
        missing = "IR version" if model.ir_version == 0 else "graph" if not model.HasField("graph") else "opset"
        raise ModelFileError(
            f"{target} parses as protobuf but is not an ONNX model (no {missing})",
            "the file is truncated or not ONNX: copy or export it again",
        )
    return target, model


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:120]
