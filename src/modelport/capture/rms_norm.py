"""RMSNorm written as a division, the form ONNX Runtime fuses: an onnx-ir pass over an exported decoder.

transformers writes RMSNorm as ``x * rsqrt(mean(x ** 2) + eps)``, which exports as
``Pow -> ReduceMean -> Add -> Sqrt -> Reciprocal -> Mul``. ONNX Runtime's ``SimplifiedLayerNormalization``
fusion matches only ``x / sqrt(mean(x ** 2) + eps)``, so every norm of every decode step runs as six small
operations instead of one (two norms a layer: on a 22-layer model, about 260 operations a step, each with
its own dispatch). The pass rewrites ``x * Reciprocal(Sqrt(s))`` as ``Div(x, Sqrt(s))`` where ``s`` is
exactly ``mean(x ** 2, last axis) + eps`` of the same ``x``; the result differs from the product by at most
one rounding. The graph stays standard ONNX (OpenVINO fuses its own RMS either way). Anything else is left
as it is.
"""

from __future__ import annotations

import onnx_ir as ir
from onnx_ir.passes.common import RemoveUnusedNodesPass

__all__ = ["DivideRMSNorm"]


class DivideRMSNorm(ir.passes.InPlacePass):
    """Each RMSNorm of the graph as ``x / sqrt(...)``; ``rewritten`` counts them."""

    def __init__(self) -> None:
        super().__init__()
        self.rewritten = 0

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        graph = model.graph
        for node in list(graph):
            if node.op_type == "Reciprocal" and node.domain in ("", "ai.onnx"):
                use = _product(node)
                if use is None:
                    continue
                mul, x = use
                div = ir.node("Div", [x, node.inputs[0]], name=f"{mul.name}_divided")
                graph.insert_before(mul, div)
                ir.convenience.replace_all_uses_with(mul.outputs[0], div.outputs[0])
                self.rewritten += 1
        if self.rewritten:
            RemoveUnusedNodesPass()(model)
        return ir.passes.PassResult(model, modified=bool(self.rewritten))


def _op(value: ir.Value | None, op: str) -> ir.Node | None:
    node = value.producer() if value is not None else None
    return node if node is not None and node.op_type == op and node.domain in ("", "ai.onnx") else None


def _const(value: ir.Value | None) -> float | None:
    tensor = ir.convenience.get_const_tensor(value) if value is not None else None
    return float(tensor.numpy().reshape(-1)[0]) if tensor is not None and tensor.size == 1 else None


def _product(reciprocal: ir.Node) -> tuple[ir.Node, ir.Value] | None:
    """(the ``Mul`` that takes ``x * reciprocal``, ``x``) when ``reciprocal`` is RMSNorm's ``rsqrt``."""
    uses = list(reciprocal.outputs[0].uses())
    sqrt = _op(reciprocal.inputs[0], "Sqrt")
    add = _op(sqrt.inputs[0], "Add") if sqrt is not None else None
    if len(uses) != 1 or add is None or uses[0][0].op_type != "Mul" or uses[0][0].outputs[0].is_graph_output():
        return None
    mean = next((m for m in (_op(v, "ReduceMean") for v in add.inputs) if m is not None), None)
    eps = [v for v in add.inputs if _const(v) is not None]
    power = _op(mean.inputs[0], "Pow") if mean is not None else None
    if power is None or len(eps) != 1 or _const(power.inputs[1]) != 2.0 or not _last_axis(mean):
        return None
    mul, index = uses[0]
    x = mul.inputs[1 - index]
    return (mul, x) if x is power.inputs[0] else None


def _last_axis(mean: ir.Node) -> bool:
    keep = mean.attributes.get("keepdims")
    if keep is not None and keep.as_int() != 1:
        return False
    axes = ir.convenience.get_const_tensor(mean.inputs[1]) if len(mean.inputs) > 1 else None
    if axes is None:
        attr = mean.attributes.get("axes")
        values = list(attr.as_ints()) if attr is not None else None
    else:
        values = axes.numpy().reshape(-1).tolist()
    return values == [-1] or (values is not None and len(values) == 1 and _is_last(mean.inputs[0], values[0]))


def _is_last(value: ir.Value, axis: int) -> bool:
    shape = value.shape
    return shape is not None and axis == len(shape) - 1
