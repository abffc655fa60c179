"""Checks of what the graph computes (no runtime): training-mode ops, resize semantics before opset 11,
weights that are NaN or Inf, dataflow that ignores an input, control flow on constants.

Each check takes the model (external data not loaded) and its folder and returns findings.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from modelport.diagnose.findings import ERROR, INFO, WARNING, Finding, few
from modelport.diagnose.graph import default_opset, describe, walk

__all__ = ["check_training_mode", "check_resize", "check_weights_finite", "check_dataflow", "check_control_flow"]


def check_training_mode(model: onnx.ModelProto, folder: Path) -> list[Finding]:
    constants = _constant_values(model)
    inputs = {v.name for v in model.graph.input}
    found = []
    for _, node in walk(model.graph):
        if node.op_type == "Dropout":
            flag = node.input[2] if len(node.input) > 2 and node.input[2] else ""
            live = flag and (flag in inputs or bool(np.all(constants.get(flag, False))))
            is_test = next((a.i for a in node.attribute if a.name == "is_test"), 1)
            if live or is_test == 0:
                found.append(
                    Finding(
                        ERROR,
                        "training-dropout",
                        f"Dropout {node.name!r} is in training mode: it zeroes random activations on every run",
                        "call model.eval() before exporting (torch.onnx.export(..., training=TrainingMode.EVAL))",
                        node.name,
                    )
                )
        if node.op_type == "BatchNormalization":
            training = next((a.i for a in node.attribute if a.name == "training_mode"), 0)
            if training or len([o for o in node.output if o]) > 1:
                found.append(
                    Finding(
                        ERROR,
                        "training-batchnorm",
                        f"BatchNormalization {node.name!r} is in training mode: it normalizes with the batch's own "
                        "statistics, so answers depend on what else is in the batch",
                        "call model.eval() before exporting (torch.onnx.export(..., training=TrainingMode.EVAL))",
                        node.name,
                    )
                )
    return found


def check_resize(model: onnx.ModelProto, folder: Path) -> list[Finding]:
    opset = default_opset(model) or 0
    found = []
    for _, node in walk(model.graph):
        if node.op_type not in ("Upsample", "Resize") or node.domain not in ("", "ai.onnx"):
            continue
        mode = next((a.s.decode() for a in node.attribute if a.name == "mode"), "nearest")
        if opset < 11 and mode in ("linear", "bilinear", "cubic"):
            found.append(
                Finding(
                    ERROR,
                    "resize-before-11",
                    f"{node.op_type} {node.name!r} ({mode}) at opset {opset}: before opset 11 it cannot express "
                    "PyTorch's interpolate (half-pixel centers), so results differ from PyTorch",
                    "re-export with --opset 11 or later (torch.onnx.export(..., opset_version=11+))",
                    node.name,
                )
            )
    return found


def check_weights_finite(model: onnx.ModelProto, folder: Path) -> list[Finding]:
    bad, malformed = [], []
    for tensor in model.graph.initializer:
        if tensor.data_location == onnx.TensorProto.EXTERNAL or tensor.data_type not in _FLOATS:
            continue
        if _held(tensor) != math.prod(tensor.dims):  # read before reshaping: the shape may be a lie
            malformed.append(tensor.name)
            continue
        array = numpy_helper.to_array(tensor)
        if array.size and not np.isfinite(array).all():
            bad.append(tensor.name)
    found = []
    if malformed:
        found.append(
            Finding(
                ERROR,
                "malformed-weights",
                f"{len(malformed)} weights hold fewer or more values than their shape says ({few(malformed)})",
                "the file is damaged or was written by a broken tool; re-export it",
                malformed[0],
            )
        )
    if bad:
        found.append(
            Finding(
                ERROR,
                "nonfinite-weights",
                f"{len(bad)} weights hold NaN or Inf ({few(bad)}): every output that depends on them is NaN/Inf",
                "the checkpoint diverged or was corrupted: re-export from good weights",
                bad[0],
            )
        )
    return found


_FLOATS = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE, onnx.TensorProto.BFLOAT16)


def check_dataflow(model: onnx.ModelProto, folder: Path) -> list[Finding]:
    """Inputs nothing reads, and outputs that do not depend on any input (a traced constant)."""
    graph = model.graph
    weights = {i.name for i in graph.initializer}
    consumed = {name for _, node in walk(graph) for name in node.input}
    consumed |= {o.name for o in graph.output}
    found = [
        Finding(
            WARNING,
            "unused-input",
            f"input {v.name!r} is not read by any node: whatever you feed it is ignored",
            "if forward uses it, its value was baked in at export (a Python branch on it); otherwise drop it",
            v.name,
        )
        for v in graph.input
        if v.name not in weights and v.name not in consumed
    ]
    live = {v.name for v in graph.input if v.name not in weights}
    for _, node in walk(graph):
        if any(i in live for i in node.input) or node.op_type in ("RandomNormal", "RandomUniform"):
            live.update(node.output)
    if any(v.name not in weights for v in graph.input):
        for out in graph.output:
            if out.name not in live and not _inside_subgraph_reads(graph, out.name):
                found.append(
                    Finding(
                        WARNING,
                        "constant-output",
                        f"output {out.name!r} does not depend on any input: it is the same for every feed",
                        "the exporter traced a constant (a value computed in Python, or a branch taken at export)",
                        out.name,
                    )
                )
    return found


def _inside_subgraph_reads(graph: onnx.GraphProto, name: str) -> bool:
    # subgraphs read outer values implicitly; be conservative and never flag outputs of control flow
    return any(name in node.output and node.op_type in ("If", "Loop", "Scan") for node in graph.node)


def check_control_flow(model: onnx.ModelProto, folder: Path) -> list[Finding]:
    info = describe(model)
    return [
        Finding(
            INFO,
            "control-flow",
            f"{c.op} {c.node!r} in {c.where}: "
            + ", ".join(f"{name} {count} nodes" for name, count in c.subgraphs.items())
            + " — the branch/loop survived export",
            node=c.node,
        )
        for c in info.control_flow
    ]


def _constant_values(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    values = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer if t.data_location != 1 and _small(t)}
    for _, node in walk(model.graph):
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    values[node.output[0]] = numpy_helper.to_array(attr.t)
    return values


def _small(tensor: onnx.TensorProto) -> bool:
    count = 1
    for d in tensor.dims:
        count *= d
    return count <= 16


def _held(tensor: onnx.TensorProto) -> int:
    """How many values a float initializer really stores (raw bytes, or the typed field it uses)."""
    if tensor.raw_data:
        return len(tensor.raw_data) // np.dtype(helper.tensor_dtype_to_np_dtype(tensor.data_type)).itemsize
    return len(tensor.float_data) or len(tensor.double_data) or len(tensor.int32_data)
