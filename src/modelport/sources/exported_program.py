"""``model.pt2``: an ExportedProgram saved with ``torch.export.save``.

Its inputs are read from the program itself: names, dtypes, which axes are dynamic and their bounds.
Declared ``--input`` specs are checked against it, since a program exported with a fixed size cannot
be made dynamic afterwards.

``torch.export.load`` trusts its file: it unpickles weights, constants and example inputs with
``weights_only=False``, ``pickle.loads`` opaque constants, loads AOTInductor shared libraries, hands
shape expressions to ``sympy.sympify`` (an ``eval``) and writes names, call targets and guards from the
JSON program into Python code that it executes. So the archive is read here first, entry by entry, as
torch would find them, and anything that could run code is refused before torch sees the file; torch
then loads it with every ``torch.load`` forced to ``weights_only=True`` (torch's own switch).
"""

from __future__ import annotations

from pathlib import Path

import torch

from modelport.errors import SourceError, UsageError, first_line
from modelport.sources.loaded import LoadedModel, existing_archive
from modelport.sources.pt2_archive import (
    SAFE_HINT,
    SAVE_HINT,
    check_archive,
    is_unpickling_refusal,
    pickle_reason,
    tensors_only_loading,
)
from modelport.spec import DEFAULT_MAX, Dim, InputSpec, Signature

__all__ = ["load", "program_signature", "check_against_program"]

_DTYPES = {
    torch.float32: "float32",
    torch.float16: "float16",
    torch.float64: "float64",
    torch.int64: "int64",
    torch.int32: "int32",
    torch.int8: "int8",
    torch.uint8: "uint8",
    torch.bool: "bool",
}


def load(ref: str) -> LoadedModel:
    path = existing_archive(ref, "ExportedProgram", SAVE_HINT)
    check_archive(path)
    try:
        with tensors_only_loading():
            program = torch.export.load(str(path))
            module = program.module()
    except Exception as exc:
        if is_unpickling_refusal(exc):  # the scan let something through; torch's safe loader stopped it
            raise SourceError(
                f"{path.name} was refused: torch.export.load needed to unpickle more than tensors "
                f"({pickle_reason(exc)})",
                SAFE_HINT,
            ) from exc
        raise SourceError(
            f"torch.export.load could not read {path.name}: {first_line(exc)}",
            "re-save it with torch.export.save from this torch version",
        ) from exc
    return LoadedModel(
        module,
        "exported_program",
        str(path),
        signature=program_signature(program),
        exported_program=program,
        positional=True,
    )


def program_signature(program: torch.export.ExportedProgram) -> Signature:
    placeholders = {n.name: n for n in program.graph.nodes if n.op == "placeholder"}
    inputs, dims = [], {}
    for name in program.graph_signature.user_inputs:
        value = placeholders[name].meta.get("val")
        if not isinstance(value, torch.Tensor):
            continue
        shape: list[int | str] = []
        for size in value.shape:
            if isinstance(size, int):
                shape.append(size)
                continue
            symbol = str(size)
            bounds = program.range_constraints.get(size.node.expr)
            low = max(int(bounds.lower), 1) if bounds is not None else 1
            high = int(bounds.upper) if bounds is not None and bounds.upper.is_finite else DEFAULT_MAX
            dims[symbol] = Dim(symbol, low, max(high, low + 1))
            shape.append(symbol)
        inputs.append(InputSpec(name, tuple(shape), _DTYPES.get(value.dtype, str(value.dtype))))
    return Signature.build(inputs, list(dims.values()))


def check_against_program(declared: Signature, program: Signature, file: str) -> None:
    """A declared dynamic axis that the program fixed cannot be honoured: say so before exporting."""
    if len(declared.inputs) != len(program.inputs):
        raise UsageError(
            f"{len(declared.inputs)} inputs declared but {Path(file).name} takes {len(program.inputs)}",
            "declare one --input per program input, in order",
        )
    for want, have in zip(declared.inputs, program.inputs, strict=True):
        if len(want.dims) != len(have.dims):
            raise UsageError(
                f"input {want.name!r} declared with rank {len(want.dims)}, the program's has "
                f"{len(have.dims)}: {list(have.dims)}",
                "fix the dims in --input",
            )
        for axis, (w, h) in enumerate(zip(want.dims, have.dims, strict=True)):
            if isinstance(w, str) and isinstance(h, int):
                raise UsageError(
                    f"input {want.name!r} axis {axis} ({w!r}) is fixed to {h} in {Path(file).name}",
                    "re-run torch.export.export with dynamic_shapes for that axis, or declare it as the number",
                )
