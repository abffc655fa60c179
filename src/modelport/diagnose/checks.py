"""Checks on the graph itself (no runtime): structure, export settings baked into the file, weights.

Each check takes the model (external data not loaded) and its folder and returns findings.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import onnx

from modelport.diagnose.findings import ERROR, WARNING, Finding, few
from modelport.diagnose.graph import default_opset, tensor_dims, walk
from modelport.diagnose.semantics import (
    check_control_flow,
    check_dataflow,
    check_resize,
    check_training_mode,
    check_weights_finite,
)

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
                f"{len(exposed)} weights are also graph inputs ({few(exposed)}): callers can override them and "
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
                f"{len(params)} of the graph's inputs are weights with no values in the file ({few(params)}): "
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
