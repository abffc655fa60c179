"""The bundle: a directory with ``model.onnx`` (+ ``model.onnx.data``) and ``modelport.json``.

A bundle is built in a hidden temporary directory beside its target and renamed into place, so a
crash leaves the old bundle or none, never half of one. The manifest records the sha256 of every
file; opening a bundle checks them.
"""

from __future__ import annotations

import glob
import hashlib
import json
import math
import os
import platform
import re
import shutil
import tempfile
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

from modelport import interrupts
from modelport.errors import BundleError, UsageError, as_path, first_line
from modelport.manifest import validate
from modelport.spec import Signature

__all__ = [
    "Bundle",
    "package_versions",
    "MANIFEST",
    "MODEL_FILE",
    "FORMAT_VERSION",
    "staging_dir",
    "commit",
    "discard",
    "atomic_write",
]

MANIFEST = "modelport.json"
MODEL_FILE = "model.onnx"
FORMAT_VERSION = 1
TEMP_MARK = ".modelport-temporary"
_NAME_PART = 120  # of a target's name in its temporary directories' names
MAX_MANIFEST_BYTES = 64 * 2**20  # a manifest of a 1000-feed parity report is a few MB


class Bundle:
    def __init__(self, path: Path, manifest: dict[str, Any]) -> None:
        self.path = path
        self.manifest = manifest

    @property
    def model_path(self) -> Path:
        return self.path / MODEL_FILE

    @property
    def signature(self) -> Signature:
        return Signature.from_json(self.manifest["inputs"])

    @property
    def source(self) -> str | None:
        """The PyTorch model it was exported from (None for a bundle imported from an ONNX file)."""
        if self.imported:
            return None
        return self.manifest.get("source", {}).get("model")

    @property
    def imported(self) -> bool:
        """Made by ``modelport import`` from an ONNX file: no PyTorch source to compare with."""
        return self.manifest.get("source", {}).get("kind") == "onnx"

    @property
    def optimization(self) -> dict[str, Any] | None:
        """The last ``modelport optimize`` entry: how this bundle was made faster, and its budget."""
        entries = self.manifest.get("optimizations") or []
        return entries[-1] if entries else None

    @property
    def backend(self) -> str:
        """The backend this bundle runs on by default: the one ``optimize`` chose, else ``ort:cpu``."""
        return (self.optimization or {}).get("backend") or "ort:cpu"

    @classmethod
    def open(cls, path: str | Path) -> Bundle:
        folder = Path(as_path(path, "the bundle"))
        if not folder.exists():
            raise BundleError(f"bundle {str(path)!r} does not exist", "create one with `modelport export MODEL -o DIR`")
        if not folder.is_dir():
            raise BundleError(
                f"{str(path)!r} is a file, not a bundle directory",
                "pass the directory written by `modelport export`; `modelport doctor` reads bare ONNX files",
            )
        manifest_path = folder / MANIFEST
        if not manifest_path.is_file():
            raise BundleError(
                f"{str(path)!r} has no {MANIFEST}, so it is not a modelport bundle",
                "create one with `modelport export MODEL -o DIR`",
            )
        if manifest_path.stat().st_size > MAX_MANIFEST_BYTES:
            raise BundleError(
                f"{manifest_path} is {manifest_path.stat().st_size} bytes; no manifest is that big",
                "re-export the bundle",
            )
        try:
            manifest = json.loads(manifest_path.read_text(), parse_constant=_no_constant)
        except (json.JSONDecodeError, UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise BundleError(f"{manifest_path} is not valid JSON ({first_line(exc)})", "re-export the bundle") from exc
        if not isinstance(manifest, dict) or manifest.get("format_version") != FORMAT_VERSION:
            raise BundleError(
                f"{manifest_path} is not a modelport manifest of format {FORMAT_VERSION}",
                "re-export the bundle with this modelport",
            )
        validate(manifest, MODEL_FILE, MANIFEST)
        bundle = cls(folder, manifest)
        bundle.check_files()
        return bundle

    def check_files(self) -> None:
        for name, info in self.manifest["files"].items():
            file = self.path / name
            if file.is_symlink() or not file.is_file():
                raise BundleError(f"bundle file {name} is missing from {self.path}", "re-export the bundle")
            if sha256(file) != info["sha256"]:
                raise BundleError(
                    f"bundle file {name} changed since export (sha256 differs)",
                    "re-export the bundle; do not edit its files in place",
                )


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_table(folder: Path) -> dict[str, dict[str, Any]]:
    return {
        p.name: {"sha256": sha256(p), "bytes": p.stat().st_size}
        for p in sorted(folder.iterdir())
        if p.is_file() and p.name != MANIFEST
    }


def write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    """Strict JSON: a NaN diff (no comparison made) is written as null, never as the non-JSON ``NaN``."""
    tmp = folder / f".{MANIFEST}.tmp"
    text = json.dumps(_finite(json.loads(json.dumps(manifest, default=_json_default))), indent=2, allow_nan=False)
    tmp.write_text(text + "\n")
    os.replace(tmp, folder / MANIFEST)


def staging_dir(target: Path) -> Path:
    """A fresh hidden directory beside ``target`` (same filesystem, so the final rename is atomic).

    Refused up front when ``target`` could not be replaced without losing something of the user's.
    Leftovers of earlier runs to the same target whose process is gone (kill -9) are removed first."""
    target = output_path(target)
    check_replaceable(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(target)
    staging = _temp_dir(target, "partial")
    staging.chmod(0o755)  # mkdtemp makes it private; the bundle it becomes is meant to be shared and served
    return staging


def output_path(target: str | Path) -> Path:
    """``-o`` made absolute; the current directory or one above it is refused (it cannot be swapped out)."""
    path = Path(as_path(target, "the output directory")).expanduser().absolute()
    resolved = path.resolve()
    cwd = Path.cwd().resolve()
    if resolved == cwd or resolved in cwd.parents or not path.name:
        raise UsageError(
            f"output {str(target)!r} is the current directory or contains it; a bundle replaces its whole directory",
            "give -o a new directory, e.g. -o out/model",
        )
    blocker = next((p for p in path.parents if p.exists()), None)
    if blocker is not None and not blocker.is_dir():
        raise UsageError(f"output {str(target)!r} lies under {str(blocker)!r}, which is a file", "fix the -o path")
    return path


def check_replaceable(target: Path) -> None:
    """``target`` may be replaced only when it is absent, empty, or a bundle holding exactly the files its
    manifest lists: anything else there is the user's, and replacing the directory would delete it."""
    if target.is_symlink():
        raise UsageError(f"output {str(target)!r} is a symbolic link; refusing to replace it", "choose a new -o")
    if not target.exists():
        return
    if not target.is_dir():
        raise UsageError(f"output {str(target)!r} is a file", "give -o a directory path")
    present = sorted(p.name for p in target.iterdir())
    if not present:
        return
    if MANIFEST not in present:
        raise UsageError(
            f"output {str(target)!r} exists and is not a modelport bundle (it holds {_some(present)}); "
            "refusing to replace it",
            "choose a new -o directory, or empty this one",
        )
    try:  # the manifest validated and every listed file a regular file with its recorded sha256
        listed = set(Bundle.open(target).manifest["files"])
    except BundleError as exc:
        raise UsageError(
            f"output {str(target)!r} holds a {MANIFEST} but is not a bundle modelport can replace ({exc.message}); "
            "refusing to replace it",
            "choose a new -o directory, or move its files out",
        ) from None
    extra = [name for name in present if name not in listed | {MANIFEST}]
    if extra:
        raise UsageError(
            f"output {str(target)!r} is a bundle that also holds files it does not list ({_some(extra)}); "
            "refusing to replace it",
            "move those files out of the bundle, or choose a new -o directory",
        )


def commit(staging: Path, target: Path, manifest: dict[str, Any]) -> Bundle:
    """Hash the files, write the manifest, and swap the finished directory into place."""
    target = output_path(target)
    interrupts.check()  # an interrupt that something swallowed still means: write nothing
    (staging / TEMP_MARK).unlink(missing_ok=True)
    manifest["files"] = file_table(staging)
    write_manifest(staging, manifest)
    check_replaceable(target)  # again: the user may have added files while we exported
    old = None
    if target.exists():
        old = _temp_dir(target, "old")
        os.replace(target, old / "bundle")
    os.replace(staging, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return Bundle(target, manifest)


def _temp_dir(target: Path, kind: str) -> Path:
    """``.NAME.KIND-PID-XXXXXXXX`` beside ``target``, marked as ours (``TEMP_MARK``) so that only ours are ever
    removed as leftovers; NAME is cut short so the whole name stays within the file system's 255 bytes."""
    folder = Path(tempfile.mkdtemp(prefix=f".{target.name[:_NAME_PART]}.{kind}-{os.getpid()}-", dir=target.parent))
    (folder / TEMP_MARK).write_text("a modelport temporary directory; removed when its process is gone\n")
    return folder


def _remove_stale(target: Path) -> None:
    """Our temporary directories for ``target`` left by a process that no longer runs (kill -9)."""
    name = re.escape(target.name[:_NAME_PART])
    for path in target.parent.glob(f".{glob.escape(target.name[:_NAME_PART])}.*-*"):
        match = re.fullmatch(rf"\.{name}\.(?:partial|old)-(\d+)-[a-z0-9_]{{8}}", path.name)
        ours = match and path.is_dir() and not path.is_symlink() and (path / TEMP_MARK).is_file()
        if ours and not _alive(int(match.group(1))):  # type: ignore[union-attr]
            shutil.rmtree(path, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _some(names: list[str], limit: int = 3) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def discard(staging: Path) -> None:
    shutil.rmtree(staging, ignore_errors=True)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _json_default(value: Any) -> Any:
    if hasattr(value, "to_json"):
        return value.to_json()
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"cannot write {type(value).__name__} to the manifest")


def atomic_write(path: Path, write: Callable[[Any], Any]) -> None:
    """Write ``path`` through ``write(binary file)`` at a temporary name beside it, then rename: an
    interrupted write leaves the old file or none, never half of one."""
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"{str(path)!r} is a directory", "give a file name to write, e.g. out/result.npz")
    if path.is_symlink() or (path.exists() and not path.is_file()):  # renaming over it would destroy it
        raise UsageError(
            f"{str(path)!r} is a link, a device or a pipe, not a regular file; refusing to replace it",
            "give a file name to write",
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; what we write is for reading
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def package_versions() -> dict[str, str]:
    """The versions of Python and the packages a bundle's answers depend on."""
    out = {"python": platform.python_version()}
    for dist in ("modelport", "torch", "onnx", "onnxruntime", "onnxruntime-gpu", "onnxscript", "numpy", "transformers"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out
