"""Read the exported graph back and compare it with what was asked for.

The exporters can quietly deliver something else: dynamo keeps opset 18 when version conversion
fails, a dimension can come out fixed, an input can be baked in as a constant (a Python bool, a
traced branch) and vanish from the graph, and weights can appear as inputs.
"""

from __future__ import annotations

from pathlib import Path

import onnx

from modelport.errors import GraphCheckError
from modelport.spec import Signature

__all__ = ["check_graph", "graph_summary", "name_dims"]

_ONNX_TO_NUMPY = {
    onnx.TensorProto.FLOAT: "float32",
    onnx.TensorProto.FLOAT16: "float16",
    onnx.TensorProto.DOUBLE: "float64",
    onnx.TensorProto.INT64: "int64",
    onnx.TensorProto.INT32: "int32",
    onnx.TensorProto.INT8: "int8",
    onnx.TensorProto.UINT8: "uint8",
    onnx.TensorProto.BOOL: "bool",
}


def _opset(model: onnx.ModelProto) -> int | None:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)


def check_graph(path: Path, sig: Signature, opset: int, n_outputs: int) -> None:
    model = onnx.load(str(path), load_external_data=False)
    stamped = _opset(model)
    if stamped != opset:
        raise GraphCheckError(
            f"the exporter wrote opset {stamped}, not the requested {opset}",
            f"use --opset {stamped}, or an opset this exporter can convert to",
        )
    initializers = {i.name for i in model.graph.initializer}
    graph_inputs = {i.name: i for i in model.graph.input if i.name not in initializers}
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
    if len(model.graph.output) != n_outputs:
        raise GraphCheckError(
            f"the graph has {len(model.graph.output)} outputs but PyTorch returns {n_outputs} tensors",
            "return only tensors from forward (non-tensor outputs become constants)",
        )


def graph_summary(path: Path) -> tuple[list[dict[str, object]], int | None]:
    """The outputs (name, dtype, dims) and the default-domain opset, as the manifest records them."""
    model = onnx.load(str(path), load_external_data=False)
    return [_value_info(v) for v in model.graph.output], _opset(model)


def _check_input(spec, value: onnx.ValueInfoProto) -> None:
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


def _value_info(value: onnx.ValueInfoProto) -> dict[str, object]:
    tensor = value.type.tensor_type
    dims: list[int | str] = [
        d.dim_param if d.HasField("dim_param") or not d.HasField("dim_value") else d.dim_value for d in tensor.shape.dim
    ]
    return {
        "name": value.name,
        "dtype": _ONNX_TO_NUMPY.get(tensor.elem_type, str(tensor.elem_type)),
        "dims": [d if d != "" else "?" for d in dims],
    }


def name_dims(path: Path, sig: Signature) -> None:
    """Rename the exporter's dimension symbols (``s77``) to the spec's (``batch``) everywhere in the graph."""
    model = onnx.load(str(path), load_external_data=False)
    inputs = {i.name: i for i in model.graph.input}
    rename: dict[str, str] = {}
    for spec in sig.inputs:
        if spec.name not in inputs:
            continue  # check_graph reports it
        for want, dim in zip(spec.dims, inputs[spec.name].type.tensor_type.shape.dim, strict=False):
            if isinstance(want, str) and dim.dim_param:
                if rename.setdefault(dim.dim_param, want) != want:
                    raise GraphCheckError(
                        f"the exporter made dimensions {rename[dim.dim_param]!r} and {want!r} one and the same",
                        "the model requires them equal: use one symbol for both in --input",
                    )
    if all(old == new for old, new in rename.items()):
        return
    values = [*model.graph.input, *model.graph.output, *model.graph.value_info]
    for value in values:
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param in rename:
                dim.dim_param = rename[dim.dim_param]
    onnx.save(model, str(path))
