"""``modelport.bench``: the Python entry point of a benchmark, and every decision ``modelport bench`` makes.

A bundle is benchmarked as it is; anything else (a model object or a MODEL string) is exported and
verified first, into a temporary folder. Backends default to eager, ort:cpu and both OpenVINO
precisions when OpenVINO is installed (``choose_backends``: an optimized bundle gets eager and its own
backend, an imported one no eager); threads to the physical cores.
"""

from __future__ import annotations

import importlib.util
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from modelport.benchmark.shapes import shape_grid
from modelport.benchmark.timing import DEFAULT_BACKENDS, BenchConfig, BenchResult
from modelport.benchmark.timing import bench as run_bench
from modelport.bundle import Bundle
from modelport.errors import UsageError
from modelport.exporting import as_bundle
from modelport.machine import physical_cores

__all__ = ["bench", "choose_backends", "default_backends"]


def default_backends() -> tuple[list[str], list[str]]:
    """The default backends this machine can run, and a note for each one left out."""
    if importlib.util.find_spec("openvino") is None:
        kept = [n for n in DEFAULT_BACKENDS if not n.startswith("openvino")]
        return kept, ["openvino is not installed, so the default backends skip it (pip install 'modelport[openvino]')"]
    return list(DEFAULT_BACKENDS), []


def bench(
    model: Any,
    backends: list[str] | str | None = None,
    *,
    batch: list[int] | None = None,
    seq: list[int] | None = None,
    shapes: list[str] | None = None,
    inputs: Any = None,
    dims: Any = None,
    threads: int | None = None,
    peak_gflops: float | None = None,
    progress: Callable[[str, float], None] | None = None,
    on_export: Callable[[str], None] | None = None,
    **timing: Any,
) -> BenchResult:
    """Time ``backends`` side by side on the same feeds, with parity against eager.

    ``model``: a bundle (``Bundle`` or its directory; one written by ``optimize`` defaults to eager and its own
    backend) or anything ``modelport.export`` takes (exported and
    verified first, with ``inputs``/``dims``). ``batch``/``seq`` sizes and ``shapes`` (``"NAME=SIZE,..."``)
    make the grid; ``timing`` sets ``BenchConfig``'s fields (``warmup``, ``min_runs``, ``min_seconds``,
    ``block_seconds``, ``settle_seconds``)."""
    asked = _backend_list(backends)  # refused before a model is exported
    threads = threads or physical_cores()
    with tempfile.TemporaryDirectory(prefix="modelport-bench-") as tmp:
        bundle = as_bundle(model, Path(tmp) / "bundle", inputs, dims, on_export)
        names, notes = choose_backends(asked, bundle)
        config = BenchConfig(
            backends=names,
            shapes=shape_grid(bundle.signature, batch, seq, shapes),
            threads=threads,
            peak_gflops=peak_gflops,
            **timing,
        )
        result = run_bench(bundle, config, progress)
    result.notes = notes + result.notes
    result.model = model if isinstance(model, str) else str(getattr(model, "path", type(model).__name__))
    return result


def choose_backends(backends: list[str] | str | None, bundle: Bundle) -> tuple[list[str], list[str]]:
    """The backends to time ``bundle`` on, and a note for each default left out. ``backends``: names (a list or
    a comma-separated string, as ``--backends`` takes them); None or exactly the default list means the
    default: ``default_backends()``, but for a bundle written by ``optimize`` eager and the backend it chose,
    and without eager for one imported from ONNX (no PyTorch to time or compare with)."""
    names = _backend_list(backends)
    if names is not None:
        return names, []
    names, notes = default_backends()
    if bundle.optimization is not None:
        names, notes = ["eager", bundle.backend], []
    if not bundle.source:
        names = [n for n in names if n != "eager"]
    return names, notes


def _backend_list(backends: list[str] | str | None) -> list[str] | None:
    """The names asked for, or None for the default."""
    if backends is None:
        return None
    names = [n.strip() for n in backends.split(",")] if isinstance(backends, str) else list(backends)
    names = [n for n in names if n]
    if not names:
        raise UsageError("--backends is empty", f"e.g. --backends {','.join(DEFAULT_BACKENDS)}")
    return None if names == list(DEFAULT_BACKENDS) else names
