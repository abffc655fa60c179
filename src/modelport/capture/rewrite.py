"""onnx-ir passes applied to a graph file in place: loaded once, written once (to a temp name, then renamed)
only when a pass changed it; external weights stay where they are."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TypeVar

import onnx_ir as ir

__all__ = ["rewrite_in_place"]

P = TypeVar("P", bound=ir.passes.PassBase)


def rewrite_in_place(path: Path, *passes: P) -> tuple[P, ...]:
    """Run ``passes`` in order over the graph at ``path``; each pass says what it did."""
    model = ir.load(str(path))
    modified = [p(model).modified for p in passes]
    if any(modified):
        temp = path.with_name(f".{path.name}.rewritten")
        ir.save(model, temp)  # only the graph file is written again
        os.replace(temp, path)
    return passes
