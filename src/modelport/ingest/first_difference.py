"""Where an upgraded file starts to answer differently: the first node, in topological order, whose output
differs from the original's, and what the conversion did to that node (op version, attributes, inputs).

The original's intermediate values come from ONNX's reference evaluator (with the old rules below opset 7,
``evaluator.legacy_ops``); the upgraded file's from onnxruntime with every intermediate made a graph
output, matched by tensor name (the converter keeps the names; nodes it adds have new ones and are skipped).
When onnxruntime cannot run the whole upgraded graph, each node runs alone, fed the original's values,
until one fails or differs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper

from modelport.compare import compare
from modelport.deadline import within
from modelport.diagnose.graph import default_opset
from modelport.ingest.conversion import ort_reason
from modelport.ingest.evaluator import EVALUATOR
from modelport.ingest.upgrade_proof import Case, reference_evaluator
from modelport.runtime.ort_session import cpu_session

__all__ = ["Culprit", "first_difference", "describe_change"]


@dataclass
class Culprit:
    index: int  # the node's position in the original graph (-1: a node the converter added)
    node: onnx.NodeProto  # as the upgraded graph has it
    output: str
    what: str  # "fails in onnxruntime: ..." or "answers differently (max abs diff ...)"
    change: str  # what the conversion did to it (describe_change)


def first_difference(
    original: onnx.ModelProto,
    upgraded: onnx.ModelProto,
    case: Case,
    atol: float,
    rtol: float,
    timeout: float | None,
) -> Culprit | None:
    """Walk the upgraded graph in its (topological) order and compare every node output that the original
    also has, by name: the original's values from the reference evaluator (intermediates kept), the
    upgraded's from onnxruntime with every intermediate made a graph output. When onnxruntime cannot run
    the whole graph, each node runs alone, fed the original's values, until one fails or differs."""
    try:
        evaluator = reference_evaluator(original)
        values = within(lambda: evaluator.run(None, case.feed, intermediate=True), timeout, EVALUATOR, case.label)
    except Exception:  # the evaluator cannot follow this file (or not in time): the refusal names the outputs
        return None
    values = {k: np.asarray(v) for k, v in values.items() if v is not None}
    ours = _all_outputs(upgraded, case, timeout)
    producers = {o: (i, node) for i, node in enumerate(original.graph.node) for o in node.output if o}

    def culprit(node: onnx.NodeProto, output: str, what: str) -> Culprit:
        index, before = producers.get(output, (-1, None))
        return Culprit(index, node, output, what, describe_change(before, node, original, upgraded, values))

    known = dict(values)
    for node in upgraded.graph.node:
        if ours is None:
            try:
                got = _alone(node, known, upgraded)
            except _CannotIsolate:
                continue
            except Exception as exc:
                first = next((o for o in node.output if o), "")
                return culprit(node, first, f"fails in onnxruntime: {ort_reason(exc)}")
            known = {**got, **known}  # the original's value wins where both exist: each node is fed those
        else:
            got = ours
        for name in node.output:
            if name and name in values and name in got:
                diff = compare(name, values[name], got[name], atol, rtol)
                if not diff.passed:
                    what = diff.why or f"max abs diff {diff.max_abs:.3g}"
                    return culprit(node, name, f"answers differently ({what})")
    return None


def _all_outputs(model: onnx.ModelProto, case: Case, timeout: float | None) -> dict[str, np.ndarray] | None:
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    present = {o.name for o in probe.graph.output}
    for node in probe.graph.node:
        for name in node.output:
            if name and name not in present:
                probe.graph.output.append(onnx.ValueInfoProto(name=name))  # onnxruntime infers the type
                present.add(name)
    try:
        session = cpu_session(probe, optimization="disabled")
        names = [o.name for o in session.get_outputs()]
        arrays = within(lambda: session.run(names, case.feed), timeout, "onnxruntime", case.label)
    except Exception:  # it fails (or hangs) somewhere: each node then runs alone
        return None
    return dict(zip(names, arrays, strict=True))


class _CannotIsolate(Exception):
    pass


def _alone(node: onnx.NodeProto, known: dict[str, np.ndarray], model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """One node in its own onnxruntime session, weights fed as inputs (IR 3 wants no bare initializers)."""
    if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute):
        raise _CannotIsolate  # a subgraph reads names of the graph around it
    weights = {t.name: t for t in model.graph.initializer}
    feed: dict[str, np.ndarray] = {}
    for name in node.input:
        if not name or name in feed:
            continue
        if name in known:
            feed[name] = known[name]
        elif name in weights:
            feed[name] = numpy_helper.to_array(weights[name])
        else:
            raise _CannotIsolate
    inputs = [
        helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape) for n, a in feed.items()
    ]
    outputs = [onnx.ValueInfoProto(name=o) for o in node.output if o]
    alone = helper.make_model(helper.make_graph([node], "alone", inputs, outputs), opset_imports=model.opset_import)
    alone.ir_version = model.ir_version
    session = cpu_session(alone, optimization="disabled")
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, feed), strict=True))


def describe_change(
    before: onnx.NodeProto | None,
    after: onnx.NodeProto,
    original: onnx.ModelProto,
    upgraded: onnx.ModelProto,
    values: dict[str, np.ndarray] | None = None,
) -> str:
    """What the conversion did to a node: op version, attributes, inputs."""
    new = f"{after.op_type}-{_since(after, upgraded)}"
    if before is None:
        return f"a {new} node the converter added"
    old = f"{before.op_type}-{_since(before, original)}"
    parts = [f"{old} became {new}" if old != new else f"{old} kept"]
    old_attrs, new_attrs = _attributes(before), _attributes(after)
    removed = [f"{k}={v}" for k, v in old_attrs.items() if k not in new_attrs]
    added = [f"{k}={v}" for k, v in new_attrs.items() if k not in old_attrs]
    changed = [f"{k} {old_attrs[k]} -> {v}" for k, v in new_attrs.items() if k in old_attrs and old_attrs[k] != v]
    parts += [f"attribute(s) removed: {', '.join(removed)}"] if removed else []
    parts += [f"attribute(s) added: {', '.join(added)}"] if added else []
    parts += [f"attribute(s) changed: {', '.join(changed)}"] if changed else []
    if list(before.input) != list(after.input):
        parts.append(f"inputs {list(before.input)} -> {list(after.input)}")
    if not (removed or added or changed) and list(before.input) == list(after.input):
        parts[0] += " with the same attributes and inputs" + (f", which {new} reads differently" if old != new else "")
    if values:
        shapes = [f"{list(values[n].shape)} {values[n].dtype}" for n in before.input if n in values]
        parts += [f"its inputs are {', '.join(shapes)}"] if shapes else []
    return "; ".join(parts)


def _since(node: onnx.NodeProto, model: onnx.ModelProto) -> str:
    domain = node.domain or ""
    version = next((o.version for o in model.opset_import if (o.domain or "") == domain), None)
    if domain == "ai.onnx":
        version = default_opset(model)
    try:
        return str(onnx.defs.get_schema(node.op_type, version or 1, domain).since_version)
    except Exception:  # an op this onnx does not know
        return f"opset{version}"


def _attributes(node: onnx.NodeProto) -> dict[str, str]:
    out = {}
    for attr in node.attribute:
        value = helper.get_attribute_value(attr)
        if isinstance(value, bytes):
            value = value.decode(errors="replace")
        elif isinstance(value, (onnx.TensorProto, onnx.GraphProto)):
            value = f"<{type(value).__name__}>"
        out[attr.name] = str(value)[:60]
    return out
