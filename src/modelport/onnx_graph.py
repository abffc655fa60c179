"""One helper per fact of an ONNX graph, read with onnx-ir, and graph rewrites as onnx-ir passes.

``read`` loads a model without reading its external weights (onnx-ir keeps them lazy). The facts:
``opset``, ``dims``, ``dtype``, ``nodes`` (subgraphs included). The rewrites are passes that a
``PassManager`` composes, as torch.onnx and onnxscript compose theirs: ``RenameDims``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import onnx_ir as ir
from onnx_ir.traversal import RecursiveGraphIterator

from modelport.errors import GraphCheckError
from modelport.spec import Signature

__all__ = ["read", "opset", "dims", "dtype", "nodes", "RenameDims"]


def read(path: str | Path) -> ir.Model:
    return ir.load(str(path))


def opset(model: ir.Model) -> int | None:
    """The default domain's opset."""
    imports = model.opset_imports
    return imports.get("", imports.get("ai.onnx"))


def dims(value: ir.Value) -> list[int | str]:
    """Ints for fixed sizes, the symbol's name for named ones, ``"?"`` for anonymous dynamic ones."""
    if value.shape is None:
        return []
    return [d if isinstance(d, int) else (d.value or "?") for d in value.shape]


def dtype(value: ir.Value) -> str:
    """The numpy name of a value's element type (``float32``), or ONNX's name where numpy has none."""
    if value.dtype is None:
        return "unknown"
    try:
        return value.dtype.numpy().name
    except (TypeError, ValueError):
        return value.dtype.name.lower()


def nodes(model: ir.Model) -> Iterator[ir.Node]:
    """Every node, those inside If/Loop/Scan bodies included."""
    return iter(RecursiveGraphIterator(model.graph))


class RenameDims(ir.passes.InPlacePass):
    """The exporter's dimension symbols (``s77``) renamed to the spec's (``batch``), on every value of the
    graph. Two spec symbols that the exporter made one are refused: the model requires them equal."""

    def __init__(self, sig: Signature) -> None:
        super().__init__()
        self.sig = sig

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        rename = self._renames(model)
        if all(old == new for old, new in rename.items()):
            return ir.passes.PassResult(model, modified=False)
        values = [*model.graph.inputs, *model.graph.outputs]
        values += [v for node in nodes(model) for v in node.outputs]
        for value in values:
            if value.shape is not None and any(_symbol(d) in rename for d in value.shape):
                value.shape = ir.Shape([rename.get(_symbol(d), d) if _symbol(d) else d for d in value.shape])
        return ir.passes.PassResult(model, modified=True)

    def _renames(self, model: ir.Model) -> dict[str, str]:
        inputs = {v.name: v for v in model.graph.inputs}
        rename: dict[str, str] = {}
        for spec in self.sig.inputs:
            value = inputs.get(spec.name)
            if value is None or value.shape is None:
                continue  # check_graph reports it
            for want, dim in zip(spec.dims, value.shape, strict=False):
                have = _symbol(dim)
                if isinstance(want, str) and have and rename.setdefault(have, want) != want:
                    raise GraphCheckError(
                        f"the exporter made dimensions {rename[have]!r} and {want!r} one and the same",
                        "the model requires them equal: use one symbol for both in --input",
                    )
        return rename


def _symbol(dim: int | ir.SymbolicDim) -> str | None:
    return None if isinstance(dim, int) else dim.value


def summary(path: str | Path) -> tuple[list[dict[str, object]], int | None]:
    """The outputs (name, dtype, dims) and the default-domain opset, as a bundle's manifest records them."""
    model = read(path)
    return [{"name": v.name, "dtype": dtype(v), "dims": dims(v)} for v in model.graph.outputs], opset(model)
