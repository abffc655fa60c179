"""``run``: feed a bundle (or any ONNX file) to a backend and get its outputs, with the feed checked first."""

from __future__ import annotations

import math
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modelport.bundle import Bundle
from modelport.diagnose.open_model import open_onnx
from modelport.errors import FeedError, ResourceError, UsageError, first_line
from modelport.feeds import as_arrays, check_feed
from modelport.machine import available_memory
from modelport.options import check_timeout
from modelport.runtime.base import Placement
from modelport.runtime.placement import PlacementReport
from modelport.runtime.registry import create

__all__ = ["run", "RunResult", "parse_feeds", "read_npy"]


def parse_feeds(pairs: list[str]) -> dict[str, Path]:
    """``NAME=FILE.npy`` pairs (the CLI's ``--feed``) → paths by input name; ``run`` reads them."""
    feeds = {}
    for pair in pairs:
        name, sep, file = pair.partition("=")
        if not sep or not name or not file:
            raise UsageError(f"bad --feed {pair!r}", "expected NAME=FILE.npy")
        if name in feeds:
            raise UsageError(f"--feed {name} is given twice", "give one --feed per input")
        feeds[name] = Path(file)
    return feeds


def read_npy(path: Path) -> np.ndarray:
    """A ``.npy`` file as an array, never unpickled (``allow_pickle=False``). The header is read first, so a
    file that claims more data than it holds, or more than memory, is refused unread."""
    fix = "save one array with numpy.save(FILE, array)"
    if not path.is_file():
        why = "is a directory" if path.is_dir() else "is not a regular file" if path.exists() else "does not exist"
        raise UsageError(f"feed {str(path)!r} {why}", fix)
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
    if available is not None and 2 * need > available:  # the array, and the runtime's copy or outputs
        raise ResourceError(
            f"{path} holds {need / 2**30:.1f} GiB ({list(shape)} {dtype}); {available / 2**30:.1f} GiB of memory "
            "is available",
            "feed a smaller array",
        )
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise UsageError(f"{path} is not a readable .npy array ({first_line(exc)[:120]})", fix) from None


@dataclass
class RunResult:
    outputs: dict[str, np.ndarray]
    warnings: list[str]  # sizes or values outside the declared ranges (check_ranges=False), dropped providers
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
    feeds: dict[str, Any] | None = None,
    backend: str | None = None,
    *,
    threads: int | None = None,
    fallback: str = "refuse",
    placement: bool | None = False,
    strict: bool = False,
    timeout: float | None = None,
    check_ranges: bool = True,
) -> RunResult:
    """Outputs by name, with what the backend really got.

    ``target`` is a bundle (feeds checked against its manifest first) or a bare ``.onnx`` file from
    anywhere (checked by the runtime, whose errors come back translated into fixes). ``feeds``: arrays,
    tensors or ``.npy`` paths by input name (the bundle is opened first, so its errors come first); none: a
    random feed at the example sizes. ``placement`` adds where each node ran (True: required, so an error
    on a backend without the report; None: when the backend has it); ``strict`` fails when any node left
    the first-choice provider. ``timeout`` (seconds) stops a run that has not finished by then.
    ``check_ranges=False`` runs a feed outside the bundle's declared sizes or value ranges (each such size
    or value is listed in the warnings) instead of refusing it."""
    if timeout is not None:
        check_timeout(timeout, "--timeout")
    if feeds is not None and not isinstance(feeds, dict):
        raise FeedError(f"feeds go by input name, not as a {type(feeds).__name__}", "pass {name: array or .npy path}")
    warnings: list[str] = []
    if isinstance(target, Bundle) or not Path(target).is_file():
        target = target if isinstance(target, Bundle) else Bundle.open(target)
    else:
        target, _ = open_onnx(target)  # a file that is not ONNX gets its one line here
    feeds = as_arrays({k: read_npy(Path(v)) if isinstance(v, (str, Path)) else v for k, v in (feeds or {}).items()})
    if isinstance(target, Bundle):
        if feeds:
            warnings = check_feed(target.signature, feeds, check_ranges)  # before the runtime loads: cheap errors first
    runner = create(backend, target, threads=threads, fallback=fallback, check_ranges=check_ranges)
    if (placement or strict) and not isinstance(runner, Placement):
        raise UsageError(
            f"node placement is an ONNX Runtime report; backend {runner.name} has none", "use an ort:PROVIDERS backend"
        )
    with runner:
        feed = feeds or runner.example_feed()
        outputs = runner.infer(feed, timeout=timeout, label="given" if feeds else "example")
        wanted = isinstance(runner, Placement) and (placement is not False or strict)
        report = runner.placement(feed, strict=strict) if wanted else None
        return RunResult(
            outputs, runner.warnings + warnings, runner.describe(), report, "given" if feeds else "example"
        )
