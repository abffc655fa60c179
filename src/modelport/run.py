"""``run``: feed a bundle and get its outputs, with the feed checked against the manifest first."""

from __future__ import annotations

import difflib
import zipfile
from pathlib import Path

import numpy as np

from modelport.bundle import Bundle
from modelport.errors import FeedError, UsageError
from modelport.runtime.ort import OrtRunner
from modelport.spec import Signature

__all__ = ["run", "load_feeds", "check_feed"]


def load_feeds(pairs: list[str]) -> dict[str, np.ndarray]:
    """``NAME=FILE.npy`` pairs → arrays (``allow_pickle=False``: a .npy cannot run code)."""
    feeds = {}
    for pair in pairs:
        name, sep, file = pair.partition("=")
        if not sep or not name or not file:
            raise UsageError(f"bad --feed {pair!r}", "expected NAME=FILE.npy")
        path = Path(file)
        if not path.is_file():
            raise UsageError(f"feed file {file!r} does not exist", "save the array with numpy.save(FILE, array)")
        try:
            feeds[name] = np.load(path, allow_pickle=False)
        except (ValueError, OSError, zipfile.BadZipFile) as exc:
            raise UsageError(
                f"{file} is not a readable .npy array ({exc})", "save the array with numpy.save(FILE, array)"
            ) from exc
        if not isinstance(feeds[name], np.ndarray):
            raise UsageError(f"{file} holds several arrays (.npz)", "pass one .npy file per input")
    return feeds


def check_feed(sig: Signature, feeds: dict[str, np.ndarray]) -> list[str]:
    """Raise FeedError on a wrong name, dtype, rank or fixed size; return warnings for sizes never verified."""
    names = [s.name for s in sig.inputs]
    for name in feeds:
        if name not in names:
            close = difflib.get_close_matches(name, names, n=1)
            raise FeedError(
                f"the model has no input {name!r}",
                f"inputs are {', '.join(names)}" + (f" (did you mean {close[0]!r}?)" if close else ""),
            )
    missing = [n for n in names if n not in feeds]
    if missing:
        raise FeedError(f"no feed for input(s) {', '.join(missing)}", f"add --feed {missing[0]}=FILE.npy")
    warnings: list[str] = []
    seen: dict[str, tuple[int, str]] = {}
    for spec in sig.inputs:
        array = feeds[spec.name]
        if str(array.dtype) != spec.dtype:
            raise FeedError(
                f"input {spec.name!r} is {array.dtype}, the model expects {spec.dtype}",
                f"convert it: array.astype('{spec.dtype}')",
            )
        if array.ndim != len(spec.dims):
            raise FeedError(
                f"input {spec.name!r} has shape {list(array.shape)}, the model expects rank "
                f"{len(spec.dims)} ({', '.join(map(str, spec.dims)) or 'a scalar'})",
                "reshape the array to the declared dims",
            )
        for axis, (want, got) in enumerate(zip(spec.dims, array.shape, strict=True)):
            if isinstance(want, int):
                if want != got:
                    raise FeedError(
                        f"input {spec.name!r} axis {axis} is {got}, the model was exported with it fixed to {want}",
                        f"re-export with a symbol for that axis (e.g. --input {spec.name}:...)"
                        " and --dim to make it dynamic",
                    )
                continue
            if want in seen and seen[want][0] != got:
                raise FeedError(
                    f"dimension {want!r} is {seen[want][0]} in {seen[want][1]!r} but {got} in {spec.name!r}",
                    "inputs that share a dimension must agree on its size",
                )
            seen[want] = (got, spec.name)
            dim = sig.dims[want]
            if not dim.min <= got <= dim.max and f"{want}={got}" not in warnings:
                warnings.append(f"{want}={got}")
    return [f"{w} lies outside the verified range (re-export with a wider --dim to check it)" for w in warnings]


def run(target: Bundle | str | Path, feeds: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], list[str]]:
    """Outputs by name, and warnings for sizes outside the verified range.

    ``target`` is a bundle (feeds checked against its manifest first) or a bare ``.onnx`` file from
    anywhere (checked by ONNX Runtime, whose errors come back translated into fixes)."""
    if not isinstance(target, Bundle) and Path(target).is_file():
        from modelport.diagnose.load import open_onnx
        from modelport.diagnose.translate import check_names

        path, _ = open_onnx(target)  # a file that is not ONNX gets its one line here
        with OrtRunner(path) as runner:
            check_names(runner.inputs(), feeds)
            return runner.infer(feeds), []
    bundle = target if isinstance(target, Bundle) else Bundle.open(target)
    warnings = check_feed(bundle.signature, feeds)
    with OrtRunner(bundle.model_path) as runner:
        return runner.infer(feeds), warnings
