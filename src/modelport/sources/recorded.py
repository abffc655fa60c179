"""The source a bundle records, and whether ``verify`` (or a torch backend, or bench) may import it.

A bundle can come from anyone, and its manifest names the MODEL it was exported from: importing
that (a ``file.py``, a module, a TorchScript file) runs code. ``verify`` therefore imports a recorded
source only when it is the user's own code — outside the bundle, outside Python's standard library
and installed packages (whose files anyone can hash), at an absolute path — and its sha256 matches the
one recorded at export;
otherwise it refuses and asks for ``--model``, the code the user chooses to trust. Finding the file
never imports anything.
"""

from __future__ import annotations

import importlib.machinery
import site
import sys
import sysconfig
from pathlib import Path

from modelport.bundle import sha256
from modelport.errors import SourceError

__all__ = ["source_file", "trusted_source"]


def source_file(ref: str) -> Path | None:
    """The file whose content decides what ``ref`` runs, found without importing it; None for demos."""
    if ref.startswith("demo:"):
        return None
    path = _path_part(ref)
    if path is None:
        return _module_file(ref.rpartition(":")[0])
    return Path(path).expanduser() / "config.json" if ref.startswith("hf:") else Path(path).expanduser()


def _path_part(ref: str) -> str | None:
    """The path a MODEL names (``hf:DIR``, ``model.pt2``, ``file.py`` of ``file.py:factory``); None for a module."""
    if ref.startswith("hf:"):
        return ref.removeprefix("hf:").rpartition("?task=")[0] or ref.removeprefix("hf:")  # hf:DIR?task=NAME
    if ref.endswith((".pt2", ".pt", ".pth", ".ts")):
        return ref
    target = ref.rpartition(":")[0]
    return target if target.endswith(".py") else None


def trusted_source(bundle_dir: Path, ref: str, recorded_sha256: str | None) -> Path | None:
    """The file ``verify`` will import for ``ref``, after checking it may: outside the bundle, unchanged."""
    fix = "pass --model MODEL with the model code you trust"
    if ref.startswith("demo:"):
        return None
    path = _path_part(ref)
    if path is not None and not Path(path).is_absolute():  # hand-written: every export records an absolute path
        raise SourceError(f"the bundle records a relative source path {ref!r}, which depends on where you are", fix)
    file = source_file(ref)
    if file is None or not file.is_file():
        raise SourceError(f"the recorded source {ref!r} is not on this machine", fix)
    file = file.resolve()
    if file.is_relative_to(Path(bundle_dir).resolve()):
        raise SourceError(
            f"the bundle names its own file {file.name} as its source; modelport will not run code shipped "
            "inside a bundle",
            fix,
        )
    if _installed(file):  # a hash of a file anyone has proves nothing: `os:abort` would pass it
        raise SourceError(
            f"the bundle names {file}, part of Python or an installed package, as its model source; modelport "
            "re-imports a recorded source only when it is your own code",
            fix,
        )
    if recorded_sha256 is None:
        raise SourceError(f"the bundle records no sha256 for its source {file}, so it cannot be trusted", fix)
    if sha256(file) != recorded_sha256:
        raise SourceError(f"the source {file} changed since the export (sha256 differs)", fix)
    return file


def _installed(file: Path) -> bool:
    """Inside Python's standard library or a site-packages folder (editable installs point elsewhere)."""
    roots = {sysconfig.get_paths()[key] for key in ("stdlib", "platstdlib", "purelib", "platlib")}
    roots |= {*site.getsitepackages(), site.getusersitepackages(), sys.base_prefix, sys.prefix}
    return any(file.is_relative_to(Path(root).resolve()) for root in roots if root)


def _module_file(dotted: str) -> Path | None:
    """Where ``import dotted`` would load from, walking the finders step by step (nothing is executed)."""
    if dotted in sys.builtin_module_names:
        return None
    search: list[str] | None = None
    spec = None
    parts = dotted.split(".")
    for i in range(len(parts)):
        spec = importlib.machinery.PathFinder.find_spec(".".join(parts[: i + 1]), search)
        if spec is None:
            return None
        search = list(spec.submodule_search_locations or [])
    if spec is None or not spec.origin or spec.origin in ("built-in", "frozen"):
        return None
    return Path(spec.origin)
