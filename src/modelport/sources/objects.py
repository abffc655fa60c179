"""Models that are Python objects already: an ``nn.Module``, a ``ScriptModule`` or an ``ExportedProgram``
from a notebook or a training script, and spec strings or objects for their inputs.

An object has no file to re-import, so its bundle records no source: ``verify`` then needs the
object again (``modelport.verification(bundle, model=net)``) or ``--model``.
"""

from __future__ import annotations

from typing import Any

import torch

from modelport.errors import SourceError, UsageError
from modelport.sources import MODEL_FORMS, LoadedModel, load_model, to_eval
from modelport.spec import DIM_FORM, INPUT_FORM, Dim, InputSpec, parse_dim, parse_input

__all__ = ["as_loaded", "as_specs", "as_dims", "IN_MEMORY"]

IN_MEMORY = "in-memory"


def as_loaded(model: Any) -> LoadedModel:
    """A MODEL string, a LoadedModel, or a model object, as the LoadedModel that export and verify use."""
    if isinstance(model, LoadedModel):
        return model
    if isinstance(model, str):
        return load_model(model)
    name = f"{type(model).__module__}.{type(model).__qualname__}"
    if isinstance(model, torch.export.ExportedProgram):
        from modelport.sources.exported_program import program_signature

        return LoadedModel(
            model.module(),
            "exported_program",
            f"<ExportedProgram {name}>",
            signature=program_signature(model),
            exported_program=model,
            positional=True,
        )
    if isinstance(model, torch.jit.ScriptModule):
        return to_eval(LoadedModel(model, IN_MEMORY, f"<ScriptModule {name}>", positional=True))
    if isinstance(model, torch.nn.Module):
        return to_eval(LoadedModel(model, IN_MEMORY, f"<{name}>"))
    raise SourceError(
        f"cannot export a {type(model).__name__}",
        f"pass a torch.nn.Module, a ScriptModule, an ExportedProgram, or a MODEL string ({MODEL_FORMS})",
    )


def as_specs(inputs: Any) -> list[InputSpec] | None:
    """``"x:batch,3,224,224"`` strings or InputSpec objects (a single one is taken as a list of one)."""
    if inputs is None:
        return None
    items = [inputs] if isinstance(inputs, (str, InputSpec)) else list(inputs)
    for item in items:
        if not isinstance(item, (str, InputSpec)):
            raise UsageError(f"an input spec is text or an InputSpec, not {item!r}", f"e.g. inputs=['{INPUT_FORM}']")
    return [parse_input(i) if isinstance(i, str) else i for i in items]


def as_dims(dims: Any) -> list[Dim] | None:
    """``"batch=1..32@8"`` strings, Dim objects, or a mapping ``{"batch": (1, 32)}``."""
    if dims is None:
        return None
    if isinstance(dims, dict):
        for name, bounds in dims.items():
            if not (isinstance(bounds, tuple) and 2 <= len(bounds) <= 3 and all(type(b) is int for b in bounds)):
                raise UsageError(f"dims[{name!r}] is {bounds!r}", "give (MIN, MAX) or (MIN, MAX, OPT) as integers")
        return [Dim(name, *bounds) for name, bounds in dims.items()]
    items = [dims] if isinstance(dims, (str, Dim)) else list(dims)
    for item in items:
        if not isinstance(item, (str, Dim)):
            raise UsageError(f"a dim is text or a Dim, not {item!r}", f"e.g. dims=['{DIM_FORM}']")
    return [parse_dim(d) if isinstance(d, str) else d for d in items]
