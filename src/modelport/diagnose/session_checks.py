"""Checks that need ONNX Runtime itself: can this onnxruntime load the model, and which ops have no
kernel. Asked of real sessions, never of a hand-made list, so it stays true as onnxruntime changes."""

from __future__ import annotations

import re
from pathlib import Path

import onnx
from onnx import helper

from modelport.diagnose.findings import ERROR, Finding
from modelport.diagnose.graph import default_opset, walk
from modelport.errors import import_onnxruntime

__all__ = ["check_session", "missing_kernels"]

_IR = re.compile(r"Unsupported model IR version: (\d+), max supported IR version: (\d+)")
_OPSET = re.compile(r"Opset (\d+) is under development.*?domain (\S+) is till opset (\d+)", re.S)
_UNKNOWN = re.compile(r"(\S*):(\w+)\((-?\d+)\) is not a registered function/op")
_NO_KERNEL = re.compile(r"Could not find an implementation for (\w+)\((\d+)\) node with name '([^']*)'")


def _session(path: str | Path | bytes) -> None:
    ort = import_onnxruntime()

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 4
    ort.InferenceSession(path if isinstance(path, bytes) else str(path), options, providers=["CPUExecutionProvider"])


def check_session(path: Path, model: onnx.ModelProto, known_errors: bool) -> list[Finding]:
    """Create a CPU session; translate a failure. ``known_errors``: the graph checks already found why
    it cannot load, so an unrecognised failure is not reported twice."""
    ort = import_onnxruntime()

    try:
        _session(path)
    except Exception as exc:
        text = " ".join(str(exc).split())
    else:
        return []
    version = ort.__version__
    if match := _IR.search(text):
        return [
            Finding(
                ERROR,
                "ir-too-new",
                f"IR version {match[1]} is newer than onnxruntime {version} reads (up to {match[2]})",
                f"upgrade onnxruntime (pip install -U onnxruntime), or save the model with ir_version {match[2]}",
            )
        ]
    if match := _OPSET.search(text):
        return [
            Finding(
                ERROR,
                "opset-too-new",
                f"opset {match[1]} ({match[2]}) is newer than onnxruntime {version} supports (up to {match[3]})",
                f"re-export with --opset {match[3]} or lower, or upgrade onnxruntime",
            )
        ]
    if _UNKNOWN.search(text) or _NO_KERNEL.search(text):
        return missing_kernels(model, version)
    if known_errors:
        return []
    return [Finding(ERROR, "runtime-load", f"onnxruntime {version} cannot load the model: {text[:240]}", "")]


def missing_kernels(model: onnx.ModelProto, version: str) -> list[Finding]:
    """Every op (by domain, with the types it is fed) tried alone in a one-node session."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:
        inferred = model
    types = {v.name: v.type for v in [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]}
    types |= {t.name: helper.make_tensor_type_proto(t.data_type, None) for t in model.graph.initializer}
    opsets = list(model.opset_import)
    seen: dict[tuple[str, str], list[str]] = {}
    found = []
    for _, node in walk(model.graph):
        key = (node.domain or "ai.onnx", node.op_type)
        if key in seen:
            seen[key].append(node.name)
            continue
        seen[key] = [node.name]
        if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute):
            continue
        if not _runs_alone(node, types, opsets, model.ir_version):
            found.append(key)
    return [
        Finding(
            ERROR,
            "no-kernel",
            f"op {op} (domain {domain}, opset {_opset_of(model, domain)}) has no kernel in onnxruntime {version} "
            f"on CPUExecutionProvider ({_nodes(seen[(domain, op)])})",
            "register the library that implements it (SessionOptions.register_custom_ops_library) or re-export "
            "without it"
            if domain not in ("ai.onnx", "com.microsoft")
            else "re-export at a current opset (modelport export --opset 18)",
            seen[(domain, op)][0],
        )
        for domain, op in found
    ]


def _opset_of(model: onnx.ModelProto, domain: str) -> int | None:
    if domain == "ai.onnx":
        return default_opset(model)
    return next((o.version for o in model.opset_import if o.domain == domain), None)


def _runs_alone(node: onnx.NodeProto, types: dict, opsets: list, ir_version: int) -> bool:
    inputs = []
    for name in node.input:
        if name and name in types:
            inputs.append(helper.make_value_info(name, types[name]))
        elif name:
            inputs.append(_float(name))
    outputs = [helper.make_value_info(o, types[o]) if o in types else _float(o) for o in node.output if o]
    graph = helper.make_graph([node], "probe", inputs, outputs)
    probe = helper.make_model(graph, opset_imports=opsets)
    probe.ir_version = ir_version
    try:
        _session(probe.SerializeToString())
    except Exception as exc:
        text = str(exc)
        return not ("NOT_IMPLEMENTED" in text or "is not a registered function/op" in text)
    return True


def _float(name: str) -> onnx.ValueInfoProto:
    # a type is needed to build the probe; float is what unknown ops are most often fed
    return helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None)


def _nodes(names: list[str]) -> str:
    named = [n for n in names if n]
    return f"{len(names)} node(s)" + (f", e.g. {named[0]!r}" if named else "")
