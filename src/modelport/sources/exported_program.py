"""``model.pt2``: an ExportedProgram saved with ``torch.export.save``."""

from __future__ import annotations

import zipfile

import torch

from modelport.errors import SourceError
from modelport.sources import LoadedModel, existing_file

__all__ = ["load"]


def load(ref: str) -> LoadedModel:
    path = existing_file(ref, "ExportedProgram file")
    if not zipfile.is_zipfile(path):
        raise SourceError(
            f"{path.name} is not an ExportedProgram archive (not a zip file)",
            "save it with torch.export.save(torch.export.export(model, args), 'model.pt2')",
        )
    try:
        program = torch.export.load(str(path))
    except Exception as exc:
        raise SourceError(
            f"torch.export.load could not read {path.name}: {str(exc).strip().splitlines()[0]}",
            "re-save it with torch.export.save from this torch version",
        ) from exc
    return LoadedModel(program.module(), "exported_program", str(path), exported_program=program)
