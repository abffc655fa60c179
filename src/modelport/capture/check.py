"""Read the exported graph back and compare it with what was asked for.

The exporters can quietly deliver something else: dynamo keeps opset 18 when version conversion
fails, a dimension can come out fixed, an input can be baked in as a constant (a Python bool, a
traced branch) and vanish from the graph, and weights can appear as inputs.
"""

from __future__ import annotations

from pathlib import Path

import onnx_ir as ir

from modelport import onnx_graph as graph
from modelport.errors import GraphCheckError
from modelport.spec import InputSpec, Signature

__all__ = ["check_graph"]


def check_graph(path: Path, sig: Signature, opset: int, n_outputs: int) -> None:
    model = graph.read(path)
    stamped = graph.opset(model)
    if stamped != opset:
        raise GraphCheckError(
            f"the exporter wrote opset {stamped}, not the requested {opset}",
            f"use --opset {stamped}, or an opset this exporter can convert to",
        )
    graph_inputs = {v.name: v for v in model.graph.inputs if v.name not in model.graph.initializers}
    declared = [s.name for s in sig.inputs]
    for name in declared:
        if name not in graph_inputs:
            raise GraphCheckError(
                f"input {name!r} is not in the exported graph: its example value was baked in as a constant",
                "make forward use it as a tensor (torch.where/torch.cond instead of a Python if), "
                "or leave it out of --input if the model ignores it",
            )
    extra = [n for n in graph_inputs if n not in declared]
    if extra:
        raise GraphCheckError(
            f"the graph takes inputs nobody declared: {', '.join(extra[:5])}"
            + (f" (+{len(extra) - 5} more)" if len(extra) > 5 else ""),
            "declare every forward input with --input; weights must be embedded, not inputs",
        )
    for spec in sig.inputs:
        _check_input(spec, graph_inputs[spec.name])
    if len(model.graph.outputs) != n_outputs:
        raise GraphCheckError(
            f"the graph has {len(model.graph.outputs)} outputs but PyTorch returns {n_outputs} tensors",
            "return only tensors from forward (non-tensor outputs become constants)",
        )


def _check_input(spec: InputSpec, value: ir.Value) -> None:
    info = _value_info(value)
    if info["dtype"] != spec.dtype:
        raise GraphCheckError(
            f"input {spec.name!r} became {info['dtype']} in the graph, declared {spec.dtype}",
            f"declare it as :{info['dtype']} or cast inside forward",
        )
    dims = info["dims"]
    if len(dims) != len(spec.dims):
        raise GraphCheckError(
            f"input {spec.name!r} has rank {len(dims)} in the graph, declared {len(spec.dims)}",
            "fix the dims in --input",
        )
    for axis, (want, got) in enumerate(zip(spec.dims, dims, strict=True)):
        if isinstance(want, str) and not isinstance(got, str):
            raise GraphCheckError(
                f"input {spec.name!r} axis {axis} ({want!r}) came out fixed to {got}",
                f"the model fixes this size (a reshape to a constant, a branch on the size); declare it as {got} "
                "or make the code size-agnostic",
            )
        if isinstance(want, int) and isinstance(got, int) and want != got:
            raise GraphCheckError(
                f"input {spec.name!r} axis {axis} is {got} in the graph, declared {want}", "fix the dims in --input"
            )


def _value_info(value: ir.Value) -> dict[str, object]:
    return {"name": value.name, "dtype": graph.dtype(value), "dims": graph.dims(value)}
