"""Checks on the graph itself (no runtime): structure, export settings baked into the file, weights.

Each check takes the model (external data not loaded) and its folder and returns findings.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from modelport.diagnose.findings import ERROR, INFO, WARNING, Finding
from modelport.diagnose.graph import default_opset, describe, tensor_dims, walk

__all__ = ["GRAPH_CHECKS", "weight_like_inputs"]

# input slots that hold weights: an input consumed here is a parameter, not data
_WEIGHT_SLOTS = {
    "Conv": (1, 2),
    "ConvTranspose": (1, 2),
    "Gemm": (1, 2),
    "BatchNormalization": (1, 2, 3, 4),
    "InstanceNormalization": (1, 2),
    "LayerNormalization": (1, 2),
}
_PARAM_NAME = re.compile(r"(^onnx::)|(\.(weight|bias|running_mean|running_var|gamma|beta|embeddings?)$)")


def check_structure(model: onnx.ModelProto, folder: Path) -> list[Finding]:
    """onnx.checker, then strict shape and type inference, each failure reworded around the node."""
    try:
        onnx.checker.check_model(model)
    except Exception as exc:  # the checker raises ValidationError, and RuntimeError on some files
        if "ir_version" in str(exc) or "should be stored in" in str(exc):
            return []  # reported better by the runtime check and the external-data check
        return [_reword_checker(str(exc))]
    try:
        onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True, data_prop=True)
    except Exception as exc:
        text = " ".join(str(exc).split())
        if "No Op registered" in text or "is not a registered" in text:
            return []  # an op outside the standard domains: the runtime check reports it
        return [_reword_inference(text)]
    return []


def _reword_checker(text: str) -> Finding:
    text = " ".join(text.split())
    dangling = re.search(r"input '([^']*)' of node: name: (\S*) OpType: (\S+) is not output of any previous", text)
    if dangling:
        name, node, op = dangling.groups()
        return Finding(
            ERROR,
            "dangling-input",
            f"node {node!r} ({op}) reads {name!r}, which no node, graph input or initializer produces",
            "the file was edited or assembled wrongly: re-export it, or fix the node's input name",
            node,
        )
    return Finding(ERROR, "invalid-graph", f"onnx.checker rejects the model: {text[:240]}", "re-export the model")


def _reword_inference(text: str) -> Finding:
    where = re.search(r"\(op_type:(\S+), node name: ([^)]*)\)", text)
    op, node = where.groups() if where else ("?", "?")
    clash = re.search(r"bound to different types \((tensor\(\w+\)) and (tensor\(\w+\))", text)
    odd = re.search(r"(\w+) has inconsistent type (tensor\(\w+\))", text)
    if clash or odd:
        what = f"mixes {clash[1]} and {clash[2]}" if clash else f"gets {odd[2]} for its input {odd[1]}"
        return Finding(
            ERROR,
            "type-clash",
            f"node {node!r} ({op}) {what} where its inputs must share one type",
            "insert a Cast (in PyTorch: .to(dtype)) before the node and re-export",
            node,
        )
    detail = re.sub(r"^\[\w+\]\s*(\(op_type:[^)]*\):\s*)?", "", text)
    return Finding(
        ERROR,
        "shape-inference",
        f"node {node!r} ({op}) fails strict shape/type inference: {detail[:200]}",
        "re-export the model; if it came from an editor, fix this node's inputs",
        node,
    )


def check_versions(model: onnx.ModelProto, folder: Path) -> list[Finding]:
    opset = default_opset(model)
    if opset is not None and opset < 7:
        return [
            Finding(
                WARNING,
                "ancient-opset",
                f"opset {opset} predates ONNX 1.2; ONNX Runtime only supports opset 7 and later",
                "re-export with a current opset (modelport export --opset 18)",
            )
        ]
    return []


def weight_like_inputs(model: onnx.ModelProto) -> list[str]:
    """Graph inputs that are parameters: consumed in a weight slot or named like one, every dim fixed."""
    graph = model.graph
    weights = {i.name for i in graph.initializer}
    slots = {
        node.input[i] for _, node in walk(graph) for i in _WEIGHT_SLOTS.get(node.op_type, ()) if i < len(node.input)
    }
    out = []
    for value in graph.input:
        if value.name in weights:
            continue
        fixed = all(isinstance(d, int) for d in tensor_dims(value))
        if fixed and (value.name in slots or _PARAM_NAME.search(value.name)):
            out.append(value.name)
    return out


def check_weights_as_inputs(model: onnx.ModelProto, folder: Path) -> list[Finding]:
    graph = model.graph
    weights = {i.name for i in graph.initializer}
    found = []
    exposed = [v.name for v in graph.input if v.name in weights]
    if exposed:
        found.append(
            Finding(
                WARNING,
                "initializers-as-inputs",
                f"{len(exposed)} weights are also graph inputs ({_few(exposed)}): callers can override them and "
                "ONNX Runtime cannot constant-fold them",
                "re-export with keep_initializers_as_inputs=False (torch.onnx.export's default)",
            )
        )
    params = weight_like_inputs(model)
    if params:
        data = len(graph.input) - len(exposed) - len(params)
        found.append(
            Finding(
                ERROR,
                "weights-as-inputs",
                f"{len(params)} of the graph's inputs are weights with no values in the file ({_few(params)}): "
                f"it was exported with export_params=False, so every run needs {data + len(params)} feeds, "
                f"not {data}",
                "re-export with export_params=True (torch.onnx.export's default), or with modelport export",
            )
        )
    return found


def check_fixed_dims(model: onnx.ModelProto, folder: Path) -> list[Finding]:
    weights = {i.name for i in model.graph.initializer} | set(weight_like_inputs(model))
    found = []
    for value in model.graph.input:
        if value.name in weights:
            continue
        dims = tensor_dims(value)
        looks = _dynamic_looking(dims, value.type.tensor_type.elem_type)
        if not looks:
            continue
        spec = ",".join(looks.get(axis, str(d)) for axis, d in enumerate(dims))
        bounds = " ".join(
            f"--dim {sym}=1..{max(2 * dims[a], 8) if isinstance(dims[a], int) else 64}" for a, sym in looks.items()
        )
        fixed = ", ".join(f"{sym} (axis {a}) = {dims[a]}" for a, sym in looks.items())
        found.append(
            Finding(
                WARNING,
                "static-dims",
                f"input {value.name!r} has fixed dims {dims}: {fixed} cannot change, and any other size fails with "
                "'Got invalid dimensions'",
                f"re-export with them dynamic: modelport export MODEL --input {value.name}:{spec} {bounds} "
                "(torch.onnx.export: dynamic_shapes=... or dynamic_axes=...)",
                value.name,
            )
        )
    return found


def _dynamic_looking(dims: list[int | str], elem_type: int) -> dict[int, str]:
    """Axes whose fixed size is usually a batch, a sequence or an image side, by rank and dtype."""
    if len(dims) < 2:
        return {}
    looks: dict[int, str] = {}
    if isinstance(dims[0], int):
        looks[0] = "batch"
    integer = elem_type in (onnx.TensorProto.INT64, onnx.TensorProto.INT32)
    if len(dims) in (2, 3) and isinstance(dims[1], int) and (integer or len(dims) == 3) and dims[1] > 1:
        looks[1] = "seq"
    if len(dims) == 4 and isinstance(dims[2], int) and isinstance(dims[3], int) and min(dims[2], dims[3]) > 4:
        looks[2], looks[3] = "h", "w"
    return looks


def check_external_data(model: onnx.ModelProto, folder: Path) -> list[Finding]:
    found: dict[str, Finding] = {}
    root = folder.resolve()
    for tensor in model.graph.initializer:
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        info = {e.key: e.value for e in tensor.external_data}
        location = info.get("location", "")
        if location in found:
            continue
        file = (folder / location).resolve()
        if Path(location).is_absolute() or root not in file.parents:
            found[location] = Finding(
                ERROR,
                "external-data-outside",
                f"weight {tensor.name!r} points at {location!r}, outside the model's folder {folder}: ONNX Runtime "
                "refuses external data outside it",
                "save the model again with a relative location (onnx.save(..., location='model.onnx.data'))",
                tensor.name,
            )
        elif not file.is_file():
            found[location] = Finding(
                ERROR,
                "external-data-missing",
                f"the weights file {location!r} is missing: it must sit next to the model, at {folder / location}",
                "copy the .data file along with the .onnx (they travel together)",
                tensor.name,
            )
        else:
            end = int(info.get("offset", 0)) + int(info.get("length", 0))
            if end > file.stat().st_size:
                found[location] = Finding(
                    ERROR,
                    "external-data-truncated",
                    f"the weights file {location!r} has {file.stat().st_size:,} bytes but {tensor.name!r} ends at "
                    f"byte {end:,}",
                    "the .data file is truncated: copy it again",
                    tensor.name,
                )
    return list(found.values())


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
    bad = []
    for tensor in model.graph.initializer:
        if tensor.data_location == onnx.TensorProto.EXTERNAL or tensor.data_type not in _FLOATS:
            continue
        array = numpy_helper.to_array(tensor)
        if array.size and not np.isfinite(array).all():
            bad.append(tensor.name)
    if not bad:
        return []
    return [
        Finding(
            ERROR,
            "nonfinite-weights",
            f"{len(bad)} weights hold NaN or Inf ({_few(bad)}): every output that depends on them is NaN/Inf",
            "the checkpoint diverged or was corrupted: re-export from good weights",
            bad[0],
        )
    ]


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


def _few(names: list[str], n: int = 3) -> str:
    return ", ".join(names[:n]) + (f" +{len(names) - n} more" if len(names) > n else "")


GRAPH_CHECKS: tuple[Callable[[onnx.ModelProto, Path], list[Finding]], ...] = (
    check_structure,
    check_versions,
    check_external_data,
    check_weights_as_inputs,
    check_fixed_dims,
    check_training_mode,
    check_resize,
    check_weights_finite,
    check_dataflow,
    check_control_flow,
)
