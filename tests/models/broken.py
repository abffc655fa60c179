"""A corpus of broken ONNX files, each built here with one planted defect.

``DEFECTS``: name -> (build(folder) -> path, the finding code doctor must report, a phrase of its
message). ``UNREADABLE``: files no ONNX library can open -> a phrase of the one-line error.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import TensorProto as T
from onnx import helper, numpy_helper
from torch import nn


class SmallNet(nn.Module):
    """Conv + BatchNorm + Dropout + Linear: enough to show every export-setting defect."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(self.bn(self.conv(x))).mean((2, 3)))


class Bilinear(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)


def torch_export(folder: Path, name: str, model: nn.Module | None = None, **kwargs) -> Path:
    """The TorchScript exporter (the one with these knobs), example (1, 3, 16, 16), fixed dims unless asked."""
    path = folder / f"{name}.onnx"
    torch.manual_seed(0)
    module = model if model is not None else SmallNet().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (torch.randn(1, 3, 16, 16),),
            str(path),
            dynamo=False,
            input_names=["x"],
            output_names=["y"],
            **kwargs,
        )
    return path


def tiny(
    folder: Path,
    name: str,
    nodes,
    inputs,
    outputs,
    initializers=(),
    opset: int = 17,
    ir: int = 8,
    domains: tuple[tuple[str, int], ...] = (),
) -> Path:
    graph = helper.make_graph(nodes, name, inputs, outputs, initializer=list(initializers))
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", opset), *(helper.make_opsetid(d, v) for d, v in domains)]
    )
    model.ir_version = ir
    path = folder / f"{name}.onnx"
    path.write_bytes(model.SerializeToString())
    return path


def vec(name: str, dtype: int = T.FLOAT, dims=("n",)) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, dtype, list(dims))


def relu(folder: Path, name: str, opset: int = 17, ir: int = 8) -> Path:
    return tiny(
        folder, name, [helper.make_node("Relu", ["a"], ["b"], name="relu")], [vec("a")], [vec("b")], opset=opset, ir=ir
    )


def static_dims(folder: Path) -> Path:
    return torch_export(folder, "static_dims")


def weights_as_inputs(folder: Path) -> Path:
    return torch_export(
        folder, "weights_as_inputs", export_params=False, dynamic_axes={"x": {0: "batch", 2: "h", 3: "w"}}
    )


def initializers_as_inputs(folder: Path) -> Path:
    return torch_export(
        folder,
        "initializers_as_inputs",
        keep_initializers_as_inputs=True,
        dynamic_axes={"x": {0: "batch", 2: "h", 3: "w"}},
    )


def live_dropout(folder: Path) -> Path:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Dropout(0.5)).train()
    return torch_export(
        folder,
        "live_dropout",
        model,
        training=torch.onnx.TrainingMode.TRAINING,
        do_constant_folding=False,
        dynamic_axes={"x": {0: "batch", 2: "h", 3: "w"}},
    )


def training_batchnorm(folder: Path) -> Path:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)).train()
    return torch_export(
        folder,
        "training_batchnorm",
        model,
        training=torch.onnx.TrainingMode.TRAINING,
        do_constant_folding=False,
        dynamic_axes={"x": {0: "batch", 2: "h", 3: "w"}},
    )


def opset9_resize(folder: Path) -> Path:
    return torch_export(
        folder, "opset9_resize", Bilinear(), opset_version=9, dynamic_axes={"x": {0: "batch", 2: "h", 3: "w"}}
    )


def dangling_input(folder: Path) -> Path:
    node = helper.make_node("Add", ["a", "ghost"], ["b"], name="add_ghost")
    return tiny(folder, "dangling_input", [node], [vec("a")], [vec("b")])


def type_clash(folder: Path) -> Path:
    node = helper.make_node("Add", ["a", "i"], ["b"], name="mixed_add")
    return tiny(folder, "type_clash", [node], [vec("a"), vec("i", T.INT64)], [vec("b")])


def custom_op(folder: Path) -> Path:
    node = helper.make_node("FancyNorm", ["a"], ["b"], name="fancy", domain="com.example")
    return tiny(folder, "custom_op", [node], [vec("a")], [vec("b")], domains=(("com.example", 1),))


def ancient_opset(folder: Path) -> Path:
    return relu(folder, "ancient_opset", opset=1, ir=3)


def ir_too_new(folder: Path) -> Path:
    return relu(folder, "ir_too_new", ir=onnx.IR_VERSION + 1)


def opset_too_new(folder: Path) -> Path:
    return relu(folder, "opset_too_new", opset=onnx.defs.onnx_opset_version() + 1, ir=onnx.IR_VERSION)


def _with_external(folder: Path, name: str, location: str) -> Path:
    weight = numpy_helper.from_array(np.ones(4096, np.float32), "w")
    node = helper.make_node("Add", ["a", "w"], ["b"], name="add_w")
    path = tiny(folder, name, [node], [vec("a", dims=(4096,))], [vec("b", dims=(4096,))], [weight])
    model = onnx.load(str(path))
    onnx.save(model, str(path), save_as_external_data=True, location=f"{name}.data", size_threshold=0)
    model = onnx.load(str(path), load_external_data=False)  # now point the weights elsewhere
    for entry in model.graph.initializer[0].external_data:
        if entry.key == "location":
            entry.value = location
    path.write_bytes(model.SerializeToString())
    return path


def external_data_missing(folder: Path) -> Path:
    path = _with_external(folder, "external_data_missing", "external_data_missing.data")
    (folder / "external_data_missing.data").unlink()
    return path


def external_data_outside(folder: Path) -> Path:
    return _with_external(folder, "external_data_outside", "../elsewhere/weights.data")


def nan_weights(folder: Path) -> Path:
    weight = numpy_helper.from_array(np.array([1.0, np.nan, 3.0], np.float32), "scale")
    node = helper.make_node("Mul", ["a", "scale"], ["b"], name="mul")
    return tiny(folder, "nan_weights", [node], [vec("a", dims=(3,))], [vec("b", dims=(3,))], [weight])


def unused_input(folder: Path) -> Path:
    node = helper.make_node("Relu", ["a"], ["b"], name="relu")
    return tiny(folder, "unused_input", [node], [vec("a"), vec("flag", T.BOOL, ())], [vec("b")])


def constant_output(folder: Path) -> Path:
    value = numpy_helper.from_array(np.array([2.0], np.float32), "c")
    nodes = [
        helper.make_node("Relu", ["a"], ["b"], name="relu"),
        helper.make_node("Identity", ["c"], ["k"], name="baked"),
    ]
    return tiny(folder, "constant_output", nodes, [vec("a")], [vec("b"), vec("k", dims=(1,))], [value])


DEFECTS: dict[str, tuple[Callable[[Path], Path], str, str]] = {
    "static_dims": (static_dims, "static-dims", "fixed dims [1, 3, 16, 16]"),
    "weights_as_inputs": (weights_as_inputs, "weights-as-inputs", "export_params=False"),
    "initializers_as_inputs": (initializers_as_inputs, "initializers-as-inputs", "keep_initializers_as_inputs"),
    "live_dropout": (live_dropout, "training-dropout", "Dropout"),
    "training_batchnorm": (training_batchnorm, "training-batchnorm", "batch's own statistics"),
    "opset9_resize": (opset9_resize, "resize-before-11", "at opset 9"),
    "dangling_input": (dangling_input, "dangling-input", "node 'add_ghost' (Add) reads 'ghost'"),
    "type_clash": (type_clash, "type-clash", "node 'mixed_add' (Add) gets tensor(int64) for its input B"),
    "custom_op": (custom_op, "no-kernel", "op FancyNorm (domain com.example"),
    "ancient_opset": (ancient_opset, "no-kernel", "op Relu (domain ai.onnx, opset 1) has no kernel"),
    "ir_too_new": (ir_too_new, "ir-too-new", f"IR version {onnx.IR_VERSION + 1} is newer than onnxruntime"),
    "opset_too_new": (opset_too_new, "opset-too-new", "is newer than onnxruntime"),
    "external_data_missing": (external_data_missing, "external-data-missing", "must sit next to the model"),
    "external_data_outside": (external_data_outside, "external-data-outside", "outside the model's folder"),
    "nan_weights": (nan_weights, "nonfinite-weights", "NaN or Inf (scale)"),
    "unused_input": (unused_input, "unused-input", "input 'flag' is not read by any node"),
    "constant_output": (constant_output, "constant-output", "output 'k' does not depend on any input"),
}


def _write(name: str, data: bytes) -> Callable[[Path], Path]:
    def build(folder: Path) -> Path:
        path = folder / name
        path.write_bytes(data)
        return path

    return build


def _truncated(folder: Path) -> Path:
    whole = static_dims(folder).read_bytes()
    path = folder / "truncated.onnx"
    path.write_bytes(whole[: len(whole) // 2])
    return path


UNREADABLE: dict[str, tuple[Callable[[Path], Path], str]] = {
    "missing": (lambda folder: folder / "nowhere.onnx", "does not exist"),
    "empty": (_write("empty.onnx", b""), "is empty (0 bytes)"),
    "truncated": (_truncated, "is not a readable ONNX model"),
    "random_bytes": (_write("random.onnx", np.random.default_rng(0).bytes(4096)), "is not a readable ONNX model"),
    "json": (_write("config.onnx", b'{"architectures": ["BertModel"]}'), "is a text or numpy file, not ONNX"),
    "torch_checkpoint": (_write("weights.onnx", b"PK\x03\x04" + bytes(60)), "is a zip archive"),
}
