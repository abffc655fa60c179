"""A ``.pt2`` archive read as ``torch.export.load`` (torch 2.13) would read it, before torch sees it.

``check_archive(path)`` raises ``SourceError`` for any entry that would need pickle beyond tensors, a
shared library, or JSON program text that torch would evaluate or paste into generated Python.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import warnings
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import torch

from modelport.errors import SourceError, first_line
from modelport.sources.pt2_program import UNSAFE_TEXT, program_problem

__all__ = [
    "check_archive",
    "tensors_only_loading",
    "is_unpickling_refusal",
    "pickle_reason",
    "SAVE_HINT",
    "SAFE_HINT",
]

SAVE_HINT = "save it with torch.export.save(torch.export.export(model, args), 'model.pt2')"
SAFE_HINT = (
    "re-save it with torch.export.save from a source you trust, with plain tensors as weights, constants and "
    "example inputs; modelport does not unpickle or run code from files it is given"
)


# --- the archive, read as torch.export.load (torch 2.13) would read it, before torch sees it ---------
#
# Entries torch deserializes with pickle, and what happens to each here:
#   <root>/data/sample_inputs/<m>.pt          torch.load, weights_only=True then False   -> must load weights_only
#   <root>/data/weights|constants/<file>      torch.load(weights_only=False) (use_pickle) -> must load weights_only
#   <root>/data/weights|constants/<m>.pt      legacy: as sample inputs                    -> must load weights_only
#   <root>/data/constants/custom_obj_*        torch._C._pickle_load_obj (TorchScript)     -> refused
#   <root>/data/constants/opaque_obj_*        pickle.loads                                -> refused
#   top-level serialized_*.pt / .json         pre-2.8 layout, as sample inputs            -> must load weights_only
# and what else runs code: <root>/data/aotinductor/ (a shared library is loaded) -> refused; the JSON
# program (models/<m>.json): expr_str goes to sympy.sympify, guards_code is exec'd, names, targets,
# argument names and pytree keys are written into generated Python -> each checked below.

_MODELS_DIR = "models/"
_WEIGHTS_DIR = "data/weights/"
_CONSTANTS_DIR = "data/constants/"
_SAMPLE_INPUTS = "data/sample_inputs/{}.pt"
_AOTI_DIR = "data/aotinductor/"
_LEGACY_JSON = "serialized_exported_program.json"
_LEGACY_PICKLES = frozenset(
    {
        "serialized_state_dict.json",
        "serialized_state_dict.pt",
        "serialized_constants.json",
        "serialized_constants.pt",
        "serialized_example_inputs.pt",
    }
)


def check_archive(path: Path) -> None:
    """Refuse (SourceError) a .pt2 whose loading could run code, or that is not a readable archive."""
    try:
        with zipfile.ZipFile(path) as archive:
            _ArchiveCheck(path, archive).run()
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError, RuntimeError, ValueError) as exc:
        raise SourceError(
            f"{path.name} is not a readable ExportedProgram archive ({first_line(exc, 160)})",
            "the file is damaged or truncated; " + SAVE_HINT,
        ) from None


class _ArchiveCheck:
    def __init__(self, path: Path, archive: zipfile.ZipFile) -> None:
        self.path = path
        self.archive = archive
        self.names = [info.filename for info in archive.infolist()]
        # torch's C++ reader may match names ignoring ASCII case: entries are looked up the same way, and
        # two that only differ so are refused, since torch and this check could then read different ones
        self.by_key: dict[bytes, str] = {}
        self.programs = 0
        for name in self.names:
            key = _fold(name)
            if key in self.by_key:
                raise self.refuse(name, "appears twice, so torch and this check could read different copies")
            self.by_key[key] = name

    def refuse(self, entry: str, why: str) -> SourceError:
        return SourceError(f"{self.path.name} was refused: entry {entry!r} {why}", SAFE_HINT)

    def find(self, name: str) -> str | None:
        return self.by_key.get(_fold(name))

    def run(self) -> None:
        if not self.names:
            raise SourceError(f"{self.path.name} is an empty archive, not an ExportedProgram", SAVE_HINT)
        for name in self.names:
            if "\\" in name or "\x00" in name:
                raise self.refuse(name, "has a name torch.export.save never writes")
        # the current layout: torch takes the folder of the first entry as the archive's root
        first = self.names[0]
        if "/" in first:
            self.check_layout(first.split("/", 1)[0] + "/")
        # when that fails, torch.export.load falls back to the pre-2.8 layout, entries at the top level
        if "version" in self.names:
            for name in self.names:
                if name == _LEGACY_JSON:
                    self.check_program(name)
                elif name in _LEGACY_PICKLES:
                    self.check_pickle(name, "legacy weights, constants or example inputs")
        if not self.programs:
            raise SourceError(
                f"{self.path.name} is a zip archive without an ExportedProgram in it (no models/*.json entry)",
                SAVE_HINT,
            )

    def check_layout(self, root: str) -> None:
        inside = [n[len(root) :] for n in self.names if _fold(n).startswith(_fold(root))]
        for rel in inside:
            if _fold(rel).startswith(_fold(_AOTI_DIR)):
                raise self.refuse(root + rel, "is AOTInductor compiled code, a native library torch would load")
        for rel in inside:
            if not rel.startswith(_MODELS_DIR):
                continue
            model = rel[len(_MODELS_DIR) : -len(".json")]  # as torch derives it, whatever the name ends with
            self.check_program(root + rel)
            self.check_pickle(root + _SAMPLE_INPUTS.format(model), "example inputs")
            self.check_payloads(root, _WEIGHTS_DIR, model, "weights")
            self.check_payloads(root, _CONSTANTS_DIR, model, "constants")

    def check_payloads(self, root: str, folder: str, model: str, what: str) -> None:
        if self.find(f"{root}{folder}{model}.pt") is not None:  # the legacy layout: one pickle
            self.check_pickle(f"{root}{folder}{model}.pt", f"legacy {what}")
            return
        config_name = self.find(f"{root}{folder}{model}_{what}_config.json")
        if config_name is None:
            return  # torch stops on the missing config; nothing is unpickled
        try:
            items = list(json.loads(self.archive.read(config_name))["config"].items())
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
            raise SourceError(
                f"{self.path.name}: entry {config_name!r} is not a valid payload config ({first_line(exc, 120)})",
                "the file is damaged; " + SAVE_HINT,
            ) from None
        for fqn, meta in items:
            meta = meta if isinstance(meta, dict) else {}
            file = str(meta.get("path_name", ""))
            entry = root + os.path.join(folder, file)  # as torch joins it
            if UNSAFE_TEXT.search(fqn):
                raise self.refuse(config_name, f"names {what} {fqn[:60]!r}, which torch would write into code")
            if what == "constants" and file.startswith("custom_obj_"):
                raise self.refuse(entry, "is a TorchScript object torch would unpickle; only tensors are accepted")
            if what == "constants" and not file.startswith("tensor_"):
                raise self.refuse(entry, "is a Python object torch would unpickle with pickle.loads")
            if meta.get("use_pickle"):
                self.check_pickle(entry, what)

    def check_pickle(self, name: str, what: str) -> None:
        """An entry torch unpickles: it must load with torch's weights_only=True loader."""
        found = self.find(name)
        if found is None:
            return  # torch stops on the missing entry before it unpickles anything
        data = self.archive.read(found)
        if not data:
            return  # torch reads an empty entry as "nothing saved"
        try:
            with tensors_only_loading():
                torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")
        except Exception as exc:
            raise self.refuse(found, f"({what}) needs pickle beyond tensors: {pickle_reason(exc)}") from None

    def check_program(self, name: str) -> None:
        self.programs += 1
        try:
            program = json.loads(self.archive.read(name))
        except (ValueError, RecursionError) as exc:
            raise SourceError(
                f"{self.path.name}: entry {name!r} is not a valid JSON program ({first_line(exc, 120)})",
                "the file is damaged; " + SAVE_HINT,
            ) from None
        try:
            problem = program_problem(program)
        except RecursionError:
            problem = "is nested too deeply to be checked"
        if problem is not None:
            raise self.refuse(name, problem)


def _fold(name: str) -> bytes:
    return name.encode("utf-8", "surrogateescape").lower()  # ASCII-only case folding, as miniz does


_FORCE_WEIGHTS_ONLY = "TORCH_FORCE_WEIGHTS_ONLY_LOAD"
_FORCE_NO_WEIGHTS_ONLY = "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"
_QUIET_LOGGERS = ("torch.export", "torch.export.pt2_archive._package", "torch._export.serde.serialize")


@contextlib.contextmanager
def tensors_only_loading() -> Iterator[None]:
    """Inside, every torch.load uses the weights_only loader, even one that passes weights_only=False
    (torch's TORCH_FORCE_WEIGHTS_ONLY_LOAD switch); torch's logged tracebacks and warnings stay quiet."""
    saved = {k: os.environ.get(k) for k in (_FORCE_WEIGHTS_ONLY, _FORCE_NO_WEIGHTS_ONLY)}
    loggers = [logging.getLogger(n) for n in _QUIET_LOGGERS]
    levels = [lg.level for lg in loggers]
    os.environ[_FORCE_WEIGHTS_ONLY] = "1"
    os.environ.pop(_FORCE_NO_WEIGHTS_ONLY, None)
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def is_unpickling_refusal(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    for _ in range(20):
        if seen is None:
            break
        if "Weights only load failed" in str(seen) or type(seen).__name__ == "UnpicklingError":
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def pickle_reason(exc: BaseException) -> str:
    text = str(exc)
    found = re.search(r"GLOBAL ([\w.]+)", text)
    if found:
        return f"it calls {found.group(1)}"
    found = re.search(r"WeightsUnpickler error:\s*(\S.*)", text)
    if found:
        return found.group(1).strip()[:120]
    if "Weights only load failed" in text:
        return "it uses pickle features the weights_only loader does not allow"
    return first_line(exc, 120)
