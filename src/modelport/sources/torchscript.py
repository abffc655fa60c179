"""``model.pt``: a TorchScript archive, loaded with ``torch.jit.load`` (no arbitrary unpickling)."""

from __future__ import annotations

import zipfile

import torch

from modelport.errors import SourceError, first_line
from modelport.sources.loaded import LoadedModel, existing_archive

__all__ = ["load"]


def load(ref: str) -> LoadedModel:
    path = existing_archive(
        ref, "TorchScript", "save the model with torch.jit.save(torch.jit.script(model), path), or pass file.py:factory"
    )
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
    if not any(n.endswith("/code/") or "/code/" in n for n in names):
        raise SourceError(
            f"{path.name} looks like a torch.save checkpoint, not TorchScript; modelport does not unpickle "
            "arbitrary files",
            "load the weights into your model class and pass file.py:factory, or save with torch.jit.save",
        )
    try:
        module = torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:
        raise SourceError(
            f"torch.jit.load could not read {path.name}: {first_line(exc)}",
            "re-save it with torch.jit.save, from a source you trust and this torch version",
        ) from exc
    return LoadedModel(module, "torchscript", str(path), positional=True)
