"""Which nodes make a reduced-precision model drift: both models' intermediate tensors on the same feed,
matched by name, and each node ranked by the error it *adds* (its output's error minus the worst error
of its inputs), so the node that broke the answer ranks above the hundred downstream nodes that merely
carry its error on.

Every float tensor is made a model output and the model run with graph optimizations off, so that
names survive (as ONNX Runtime's quantization debugging helpers do, without flattening the tensors).
Quantized nodes keep their float output names, so the float and reduced models line up tensor for
tensor.
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modelport.compare import cosine
from modelport.machine import physical_cores
from modelport.runtime.ort_session import cpu_session

__all__ = ["NodeDrift", "rank_nodes", "activations", "finite_cosine"]

_FLOATS = (1, 10, 11)  # TensorProto FLOAT, FLOAT16, DOUBLE


@dataclass
class NodeDrift:
    node: str
    op_type: str
    output: str
    cosine: float  # this node's output against the float model's
    added: float  # (1 - cosine) here minus the worst (1 - cosine) among its inputs

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def rank_nodes(
    float_model: Path, reduced_model: Path, feed: dict[str, np.ndarray], top: int | None = 10
) -> list[NodeDrift]:
    """Nodes of ``float_model`` by the drift they add in ``reduced_model`` on ``feed``, worst first."""
    import onnx

    want = activations(float_model, feed)
    got = activations(reduced_model, feed)
    error = {
        name: 1.0 - finite_cosine(want[name], got[name])
        for name in want.keys() & got.keys()
        if want[name].shape == got[name].shape
    }
    graph = onnx.load(str(float_model), load_external_data=False).graph
    ranked = []
    for node in graph.node:
        outs = [o for o in node.output if o in error]
        if not outs:
            continue
        worst_out = max(outs, key=lambda o: error[o])
        before = max((error[i] for i in node.input if i in error), default=0.0)
        added = error[worst_out] - before
        ranked.append(NodeDrift(node.name, node.op_type, worst_out, 1.0 - error[worst_out], added))
    ranked.sort(key=lambda d: d.added, reverse=True)
    return ranked[:top] if top else ranked


def activations(model: Path, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every float tensor ``model`` computes on ``feed``, by name, in its own shape: each made a graph
    output, run with graph optimizations off so that every name survives."""
    import onnx

    proto = onnx.load(str(model))
    graph = onnx.shape_inference.infer_shapes(proto).graph
    kinds = {v.name: v.type.tensor_type.elem_type for v in (*graph.value_info, *graph.output)}
    outputs = {o.name for o in proto.graph.output}
    for node in proto.graph.node:
        for name in node.output:
            if name and name not in outputs and kinds.get(name) in _FLOATS:
                proto.graph.output.append(onnx.helper.make_tensor_value_info(name, kinds[name], None))
                outputs.add(name)
    with tempfile.TemporaryDirectory(prefix="modelport-drift-") as tmp:  # a file: no 2 GiB protobuf limit
        path = Path(tmp) / "augmented.onnx"
        onnx.save(proto, str(path), save_as_external_data=True)
        session = cpu_session(path, optimization="disabled", threads=physical_cores())
        names = [o.name for o in session.get_outputs()]
        return dict(zip(names, session.run(names, feed), strict=True))


def finite_cosine(a: np.ndarray, b: np.ndarray) -> float:
    """``compare.cosine``, with a NaN or inf where the float model has none counted as the worst (-1)."""
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        return 1.0 if np.array_equal(a, b, equal_nan=True) else -1.0
    return cosine(a, b)
