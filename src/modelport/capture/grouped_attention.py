"""Grouped-query attention without copying the cache per head: an onnx-ir pass over an exported decoder.

transformers' ``repeat_kv`` gives every query head its own copy of its KV head's keys and values
(``Unsqueeze -> Expand -> Reshape`` to ``[batch, heads, seq, head_dim]``) before attention, so each decode
step copies the whole cache ``heads / kv_heads`` times over. Query head ``h`` reads KV head ``h // groups``,
which is the contiguous split of ``heads`` into ``(kv_heads, groups)``, so attention can run on the cache as
it is: the queries viewed as ``[batch, kv_heads, groups * seq, head_dim]``, multiplied with the un-copied
keys and values, and the result viewed back as ``[batch, heads, seq, head_dim]``. The mask
(``[batch, 1, seq, total]``) is tiled ``groups`` times along its rows once for the whole graph. Every
operation stays standard ONNX (ONNX Runtime and OpenVINO both run it); the arithmetic is the same, in
the same order, for each score.

A layer is rewritten only where the pattern matches exactly, dims read from the graph's own shapes;
anything else is left as it is with the reason in ``refused``. The generation export applies it to a
captured graph before verification, so the graph that is checked against transformers is the one kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx_ir as ir
from onnx_ir.passes.common import RemoveUnusedNodesPass

from modelport.capture.rewrite import rewrite_in_place

__all__ = ["GroupedAttention", "group_attention"]


class _NoMatch(Exception):
    pass


@dataclass
class _Layer:
    softmax: ir.Node
    add: ir.Node  # scores + mask
    mask_index: int
    qk: ir.Node  # q @ k^T
    pv: ir.Node  # probabilities @ v
    grouped: list[ir.Node]  # every node whose output changes shape (scores, scaled, masked, probabilities)
    key: ir.Value  # the cache, un-copied: [batch, kv_heads, total, head_dim]
    value: ir.Value
    kv_heads: int
    groups: int
    head_dim: int


class GroupedAttention(ir.passes.InPlacePass):
    """Each ``repeat_kv`` attention of the graph computed grouped; ``grouped`` and ``refused`` say where."""

    def __init__(self) -> None:
        super().__init__()
        self.grouped = 0
        self.refused: list[str] = []

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        graph = model.graph
        layers = []
        for node in list(graph):
            if node.op_type == "Softmax" and node.domain in ("", "ai.onnx"):
                try:
                    layers.append(_match(node))
                except _NoMatch as why:
                    self.refused.append(f"{node.name}: {why}")
        masks: dict[tuple[str, int], ir.Value] = {}
        shapes: dict[tuple[int, ...], ir.Value] = {}
        for layer in layers:
            _rewrite(graph, layer, masks, shapes)
        self.grouped = len(layers)
        if layers:
            RemoveUnusedNodesPass()(model)
        return ir.passes.PassResult(model, modified=bool(layers))


def group_attention(path: Path) -> GroupedAttention:
    """Rewrite the graph at ``path`` in place (its external data file untouched); the pass says what it did."""
    return rewrite_in_place(path, GroupedAttention())[0]


# -- matching -------------------------------------------------------------------------------------------


def _producer(value: ir.Value | None, op: str) -> ir.Node:
    node = value.producer() if value is not None else None
    if node is None or node.op_type != op or node.domain not in ("", "ai.onnx"):
        found = node.op_type if node is not None else "a graph input"
        raise _NoMatch(f"{value.name if value is not None else '?'} comes from {found}, not {op}")
    return node


def _scalar(value: ir.Value | None) -> bool:
    tensor = ir.convenience.get_const_tensor(value) if value is not None else None
    return tensor is not None and tensor.size == 1


def _scores(value: ir.Value | None) -> tuple[ir.Node, list[ir.Node]]:
    """The ``q @ k^T`` MatMul behind ``value`` and the (at most two) multiplications or divisions by a scalar
    between them."""
    scaling: list[ir.Node] = []
    for _ in range(3):
        node = value.producer() if value is not None else None
        if node is None:
            break
        if node.op_type == "MatMul":
            return node, scaling
        scaling.append(node)
        if node.op_type == "Mul" and _scalar(node.inputs[1]):
            value = node.inputs[0]
        elif node.op_type == "Mul" and _scalar(node.inputs[0]):
            value = node.inputs[1]
        elif node.op_type == "Div" and _scalar(node.inputs[1]):
            value = node.inputs[0]
        else:
            break
    raise _NoMatch("no q @ k^T MatMul scaled by a constant before the mask")


def _dims(value: ir.Value | None, rank: int) -> list[int | str | None]:
    if value is None or value.shape is None or len(value.shape) != rank:
        raise _NoMatch(f"{value.name if value is not None else '?'} has no rank-{rank} shape")
    return [d if isinstance(d, int) else d.value for d in value.shape]


def _repeat_kv(value: ir.Value) -> tuple[ir.Value, int, int, int]:
    """``value`` = Reshape(Expand(Unsqueeze(cache, 2))) merging (kv_heads, groups): (cache, kv_heads, groups, dim)."""
    reshape = _producer(value, "Reshape")
    expand = _producer(reshape.inputs[0], "Expand")
    unsqueeze = _producer(expand.inputs[0], "Unsqueeze")
    axes = ir.convenience.get_const_tensor(unsqueeze.inputs[1]) if len(unsqueeze.inputs) > 1 else None
    if axes is None or axes.numpy().reshape(-1).tolist() not in ([2], [-3]):
        raise _NoMatch(f"{unsqueeze.name} does not add the group axis (2)")
    cache = unsqueeze.inputs[0]
    batch, kv, seq, dim = _dims(cache, 4)
    expanded = _dims(expand.outputs[0], 5)
    merged = _dims(value, 4)
    groups = expanded[2]
    if not (isinstance(kv, int) and isinstance(dim, int) and isinstance(groups, int) and groups > 1):
        raise _NoMatch(f"{expand.name}: kv heads, groups and head dim are not fixed sizes")
    if expanded != [batch, kv, groups, seq, dim] or merged != [batch, kv * groups, seq, dim] or None in (batch, seq):
        raise _NoMatch(f"{reshape.name} does not merge [batch, {kv}, {groups}, seq, {dim}] into heads")
    return cache, kv, groups, dim


def _match(softmax: ir.Node) -> _Layer:
    if softmax.attributes.get_int("axis", -1) not in (-1, 3):
        raise _NoMatch("softmax is not over the last axis")
    add = _producer(softmax.inputs[0], "Add")
    for index in (1, 0):  # which side of the Add is the mask
        try:
            qk, scaling = _scores(add.inputs[1 - index])
            break
        except _NoMatch:
            continue
    else:
        raise _NoMatch(f"{add.name} adds no scaled q @ k^T")
    transpose = _producer(qk.inputs[1], "Transpose")
    if list(transpose.attributes.get_ints("perm", [])) != [0, 1, 3, 2]:
        raise _NoMatch(f"{transpose.name} is not k^T")
    key, kv, groups, dim = _repeat_kv(transpose.inputs[0])
    grouped = [qk, *scaling, add, softmax]
    uses = list(softmax.outputs[0].uses())
    if len(uses) == 1 and uses[0].node.op_type == "Cast":
        grouped.append(uses[0].node)
        uses = list(uses[0].node.outputs[0].uses())
    if len(uses) != 1 or uses[0].node.op_type != "MatMul" or uses[0].idx != 0:
        raise _NoMatch("the probabilities do not go straight into one MatMul with v")
    pv = uses[0].node
    value, kv2, groups2, dim2 = _repeat_kv(pv.inputs[1])
    if (kv2, groups2, dim2) != (kv, groups, dim):
        raise _NoMatch("keys and values are repeated differently")
    mask = _dims(add.inputs[index], 4)
    if mask[1] != 1:
        raise _NoMatch(f"the mask is per head ({mask}), not [batch, 1, seq, total]")
    for node in [*grouped[:-1], pv]:  # each intermediate feeds only the next step of this attention
        if len(list(node.outputs[0].uses())) != 1 or node.outputs[0].is_graph_output():
            raise _NoMatch(f"{node.name}'s output is used elsewhere")
    return _Layer(softmax, add, index, qk, pv, [*grouped, pv], key, value, kv, groups, dim)


# -- rewriting ------------------------------------------------------------------------------------------


def _shape(graph: ir.Graph, dims: tuple[int, ...], shapes: dict[tuple[int, ...], ir.Value]) -> ir.Value:
    if dims not in shapes:
        value = ir.Value(name=f"grouped_attention_shape_{'_'.join(str(d).replace('-', 'm') for d in dims)}",
                         const_value=ir.tensor(np.array(dims, np.int64)))  # fmt: skip
        graph.register_initializer(value)
        shapes[dims] = value
    return shapes[dims]


def _rewrite(graph: ir.Graph, layer: _Layer, masks: dict, shapes: dict) -> None:
    kv, groups, dim = layer.kv_heads, layer.groups, layer.head_dim
    queries = ir.node("Reshape", [layer.qk.inputs[0], _shape(graph, (0, kv, -1, dim), shapes)])
    keys_t = ir.node("Transpose", [layer.key], {"perm": [0, 1, 3, 2]})
    graph.insert_before(layer.qk, [queries, keys_t])
    layer.qk.replace_input_with(0, queries.outputs[0])
    layer.qk.replace_input_with(1, keys_t.outputs[0])

    mask = layer.add.inputs[layer.mask_index]
    assert mask is not None
    if (mask.name or "", groups) not in masks:  # once per graph: every layer reads the same mask
        tiled = ir.node("Concat", [mask] * groups, {"axis": 2})
        graph.insert_before(layer.add, tiled)
        masks[(mask.name or "", groups)] = tiled.outputs[0]
    layer.add.replace_input_with(layer.mask_index, masks[(mask.name or "", groups)])

    layer.pv.replace_input_with(1, layer.value)
    out = layer.pv.outputs[0]
    uses = list(out.uses())
    heads = ir.node("Reshape", [out, _shape(graph, (0, kv * groups, -1, dim), shapes)])
    graph.insert_after(layer.pv, heads)
    for use in uses:
        use.node.replace_input_with(use.idx, heads.outputs[0])
    for node in layer.grouped:  # the scores and probabilities are grouped now: their recorded shapes no longer hold
        node.outputs[0].shape = None
