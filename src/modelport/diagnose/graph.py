"""What is in an ONNX graph: inputs and outputs with their dims, ops by domain, control flow with the
size of each branch/body, and parameters. Shared by ``modelport graph`` and ``modelport doctor``."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import onnx
from onnx import helper

__all__ = ["GraphInfo", "ControlFlow", "describe", "walk", "default_opset", "tensor_dims", "numpy_dtype"]

CONTROL_FLOW = ("If", "Loop", "Scan")


def default_opset(model: onnx.ModelProto) -> int | None:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)


def numpy_dtype(elem_type: int) -> str:
    try:
        return str(helper.tensor_dtype_to_np_dtype(elem_type))
    except (KeyError, TypeError):
        return onnx.TensorProto.DataType.Name(elem_type).lower() if elem_type else "unknown"


def tensor_dims(value: onnx.ValueInfoProto) -> list[int | str]:
    """Ints for fixed sizes, the symbol's name for named ones, "?" for anonymous dynamic ones."""
    out: list[int | str] = []
    for d in value.type.tensor_type.shape.dim:
        if d.HasField("dim_value"):
            out.append(d.dim_value)
        else:
            out.append(d.dim_param or "?")
    return out


def walk(graph: onnx.GraphProto, path: str = "") -> Iterator[tuple[str, onnx.NodeProto]]:
    """Every node, subgraphs included, with where it sits (``/If_0.then_branch``)."""
    for node in graph.node:
        yield path, node
        for attr in node.attribute:
            for sub in [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs):
                yield from walk(sub, f"{path}/{node.name or node.op_type}.{attr.name}")


@dataclass
class ControlFlow:
    op: str
    node: str
    where: str
    subgraphs: dict[str, int]  # attribute name -> node count (nested nodes included)

    def to_json(self) -> dict[str, Any]:
        return {"op": self.op, "node": self.node, "where": self.where, "subgraphs": self.subgraphs}


@dataclass
class GraphInfo:
    ir_version: int
    opsets: dict[str, int]
    producer: str
    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]]
    ops: Counter[str] = field(default_factory=Counter)  # "Conv" or "com.microsoft::Attention"
    nodes: int = 0
    control_flow: list[ControlFlow] = field(default_factory=list)
    parameters: int = 0
    parameter_bytes: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "ir_version": self.ir_version,
            "opsets": self.opsets,
            "producer": self.producer,
            "inputs": self.inputs,
            "outputs": self.outputs,
            "nodes": self.nodes,
            "ops": dict(self.ops.most_common()),
            "control_flow": [c.to_json() for c in self.control_flow],
            "parameters": self.parameters,
            "parameter_bytes": self.parameter_bytes,
        }


def describe(model: onnx.ModelProto) -> GraphInfo:
    """Reads structure only: works on a model loaded without its external data."""
    graph = model.graph
    weights = {i.name for i in graph.initializer}
    info = GraphInfo(
        ir_version=model.ir_version,
        opsets={(o.domain or "ai.onnx"): o.version for o in model.opset_import},
        producer=" ".join(p for p in (model.producer_name, model.producer_version) if p),
        inputs=[_value(v) for v in graph.input if v.name not in weights],
        outputs=[_value(v) for v in graph.output],
    )
    for where, node in walk(graph):
        info.nodes += 1
        info.ops[f"{node.domain}::{node.op_type}" if node.domain not in ("", "ai.onnx") else node.op_type] += 1
        if node.op_type in CONTROL_FLOW and node.domain in ("", "ai.onnx"):
            subs = {a.name: sum(1 for _ in walk(a.g)) for a in node.attribute if a.type == onnx.AttributeProto.GRAPH}
            info.control_flow.append(ControlFlow(node.op_type, node.name, where or "main graph", subs))
    for tensor in graph.initializer:
        count = 1
        for d in tensor.dims:
            count *= d
        info.parameters += count
        info.parameter_bytes += count * helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize
    return info


def _value(value: onnx.ValueInfoProto) -> dict[str, Any]:
    return {"name": value.name, "dtype": numpy_dtype(value.type.tensor_type.elem_type), "dims": tensor_dims(value)}
