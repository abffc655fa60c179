"""``run``: feed a bundle (or any ONNX file) to a backend and get its outputs, with the feed checked first."""

from __future__ import annotations

import difflib
import math
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modelport.bundle import Bundle
from modelport.diagnose.translate import check_names
from modelport.errors import FeedError, ResourceError, UsageError, first_line
from modelport.runtime.placement import PlacementReport
from modelport.runtime.registry import create, parse_backend
from modelport.spec import Signature, available_memory

__all__ = ["run", "RunResult", "load_feeds", "read_npy", "check_feed"]


def load_feeds(pairs: list[str]) -> dict[str, np.ndarray]:
    """``NAME=FILE.npy`` pairs → arrays (``allow_pickle=False``: a .npy cannot run code). The header is read
    first, so a file that claims more data than it holds, or more than memory, is refused unread."""
    feeds = {}
    for pair in pairs:
        name, sep, file = pair.partition("=")
        if not sep or not name or not file:
            raise UsageError(f"bad --feed {pair!r}", "expected NAME=FILE.npy")
        feeds[name] = read_npy(Path(file))
    return feeds


def read_npy(path: Path) -> np.ndarray:
    fix = "save one array with numpy.save(FILE, array)"
    if not path.is_file():
        raise UsageError(f"feed {str(path)!r} " + ("is a directory" if path.is_dir() else "does not exist"), fix)
    try:
        with open(path, "rb") as fh:
            if zipfile.is_zipfile(fh):
                raise UsageError(f"{path} holds several arrays (.npz)", "pass one .npy file per input")
            fh.seek(0)
            version = np.lib.format.read_magic(fh)
            # versions 2 and 3 share one header layout
            read_header = (
                np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            )
            shape, _, dtype = read_header(fh)  # the header only: no data is read yet
            start = fh.tell()
    except (ValueError, OSError, EOFError) as exc:
        raise UsageError(f"{path} is not a .npy array file ({first_line(exc)[:120]})", fix) from None
    if dtype.hasobject:
        raise UsageError(f"{path} holds Python objects, not numbers; modelport never unpickles feeds", fix)
    need = math.prod(shape) * dtype.itemsize
    if path.stat().st_size - start < need:
        raise UsageError(f"{path} is truncated: its header promises {list(shape)} {dtype} ({need} bytes)", fix)
    available = available_memory()
    if available is not None and need > available:
        raise ResourceError(
            f"{path} holds {need / 2**30:.1f} GiB ({list(shape)} {dtype}); {available / 2**30:.1f} GiB of memory "
            "is available",
            "feed a smaller array",
        )
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise UsageError(f"{path} is not a readable .npy array ({first_line(exc)[:120]})", fix) from None


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


@dataclass
class RunResult:
    outputs: dict[str, np.ndarray]
    warnings: list[str]  # sizes outside the verified range, providers dropped under --fallback allow
    runner: dict[str, Any]  # what the backend really got: runner.describe()
    placement: PlacementReport | None = None
    fed: str = "given"  # "given", or "example" when no feed was passed and a random one was made

    def to_json(self) -> dict[str, Any]:
        return {
            "backend": self.runner,
            "feed": self.fed,
            "warnings": self.warnings,
            "placement": self.placement.to_json() if self.placement else None,
        }


def run(
    target: Bundle | str | Path,
    feeds: dict[str, np.ndarray],
    backend: str = "ort:cpu",
    *,
    threads: int | None = None,
    fallback: str = "refuse",
    placement: bool = False,
    strict: bool = False,
) -> RunResult:
    """Outputs by name, with what the backend really got.

    ``target`` is a bundle (feeds checked against its manifest first) or a bare ``.onnx`` file from
    anywhere (checked by the runtime, whose errors come back translated into fixes). No feeds: a random
    feed at the example sizes. ``placement`` (ONNX Runtime only) adds where each node ran; ``strict``
    fails when any node left the first-choice provider."""
    if (placement or strict) and parse_backend(backend).family != "ort":
        raise UsageError(
            f"node placement is an ONNX Runtime report; backend {backend} has none", "use an ort:PROVIDERS backend"
        )
    warnings: list[str] = []
    if isinstance(target, Bundle) or not Path(target).is_file():
        target = target if isinstance(target, Bundle) else Bundle.open(target)
        if feeds:
            warnings = check_feed(target.signature, feeds)
    else:
        from modelport.diagnose.load import open_onnx

        target, _ = open_onnx(target)  # a file that is not ONNX gets its one line here
    runner = create(backend, target, threads=threads, fallback=fallback)
    with runner:
        if feeds:
            check_names(runner.inputs(), feeds)
        feed = feeds or runner.example_feed()
        outputs = runner.infer(feed)
        report = runner.placement(feed, strict=strict) if placement or strict else None  # type: ignore[attr-defined]
        return RunResult(
            outputs, runner.warnings + warnings, runner.describe(), report, "given" if feeds else "example"
        )
