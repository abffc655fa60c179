"""What a source hands back (``LoadedModel``), and the checks every file-reading source starts with."""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelport.errors import SourceError
from modelport.spec import Signature

__all__ = ["LoadedModel", "MODEL_FORMS", "existing_file", "existing_archive"]

MODEL_FORMS = "file.py:factory, package.module:factory, model.pt, model.pt2, hf:DIR or demo:minilm"


@dataclass
class LoadedModel:
    module: Any  # an nn.Module (or ScriptModule) in eval mode: the reference PyTorch answers come from it
    kind: str  # code | torchscript | exported_program | hf | demo
    ref: str  # the MODEL string, with paths made absolute so `verify` works from anywhere
    signature: Signature | None = None  # inferred specs, when the source knows them
    exported_program: Any = None  # for .pt2: handed to the dynamo exporter as it is
    positional: bool = False  # forward takes inputs by position only (TorchScript, ExportedProgram modules)
    notes: list[str] = field(default_factory=list)


def existing_file(path_text: str, what: str) -> Path:
    path = Path(path_text).expanduser()
    if not path.exists():
        raise SourceError(f"{what} {path_text!r} does not exist", f"check the path (MODEL is one of: {MODEL_FORMS})")
    if path.is_dir():
        raise SourceError(f"{what} {path_text!r} is a directory, not a file", f"MODEL is one of: {MODEL_FORMS}")
    if not path.is_file():  # a FIFO or a device would block or never end
        raise SourceError(f"{what} {path_text!r} is not a regular file", f"MODEL is one of: {MODEL_FORMS}")
    return path.resolve()


def existing_archive(path_text: str, what: str, how_to_save: str) -> Path:
    """An existing file that is a zip archive, as TorchScript and ExportedProgram files are."""
    path = existing_file(path_text, f"{what} file")
    if not zipfile.is_zipfile(path):
        raise SourceError(
            f"{path.name} is not a{'n' if what[0] in 'AEIOU' else ''} {what} archive (not a zip file)", how_to_save
        )
    return path
