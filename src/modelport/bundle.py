"""The bundle: a directory with ``model.onnx`` (+ ``model.onnx.data``) and ``modelport.json``.

A bundle is built in a hidden temporary directory beside its target and renamed into place, so a
crash leaves the old bundle or none, never half of one. The manifest records the sha256 of every
file; opening a bundle checks them.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from modelport.errors import BundleError, UsageError
from modelport.spec import Signature

__all__ = ["Bundle", "MANIFEST", "MODEL_FILE", "FORMAT_VERSION", "staging_dir", "commit", "discard", "atomic_write"]

MANIFEST = "modelport.json"
MODEL_FILE = "model.onnx"
FORMAT_VERSION = 1


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
        return self.manifest.get("source", {}).get("model")

    @classmethod
    def open(cls, path: str | Path) -> Bundle:
        folder = Path(path)
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
        try:
            manifest = json.loads(manifest_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise BundleError(f"{manifest_path} is not valid JSON ({exc})", "re-export the bundle") from exc
        if (
            not isinstance(manifest, dict)
            or manifest.get("format_version") != FORMAT_VERSION
            or "inputs" not in manifest
        ):
            raise BundleError(
                f"{manifest_path} is not a modelport manifest of format {FORMAT_VERSION}",
                "re-export the bundle with this modelport",
            )
        bundle = cls(folder, manifest)
        bundle.check_files()
        return bundle

    def check_files(self) -> None:
        for name, info in self.manifest.get("files", {}).items():
            file = self.path / name
            if not file.is_file():
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
    tmp = folder / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(manifest, indent=2, default=_json_default) + "\n")
    os.replace(tmp, folder / MANIFEST)


def staging_dir(target: Path) -> Path:
    """A fresh hidden directory beside ``target`` (same filesystem, so the final rename is atomic)."""
    target = Path(target)
    if target.exists() and not target.is_dir():
        raise UsageError(f"output {str(target)!r} is a file", "give -o a directory path")
    if target.is_dir() and any(target.iterdir()) and not (target / MANIFEST).is_file():
        raise UsageError(
            f"output {str(target)!r} exists and is not a modelport bundle; refusing to replace it",
            "choose a new -o directory, or empty this one",
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; the bundle it becomes is meant to be shared and served
    return staging


def commit(staging: Path, target: Path, manifest: dict[str, Any]) -> Bundle:
    """Hash the files, write the manifest, and swap the finished directory into place."""
    manifest["files"] = file_table(staging)
    write_manifest(staging, manifest)
    old = None
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
        os.replace(target, old / "bundle")
    os.replace(staging, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return Bundle(target, manifest)


def discard(staging: Path) -> None:
    shutil.rmtree(staging, ignore_errors=True)


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
