"""ONNX Runtime on the CPU: the runtime that verification trusts.

Sessions are always created from the file path (so external data resolves next to the model),
never from bytes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from modelport.errors import BundleError, FeedError, first_line

__all__ = ["OrtRunner", "OPT_LEVELS"]

OPT_LEVELS = ("all", "disabled")


class OrtRunner:
    """``load()`` creates the session; ``infer(feed)`` returns outputs by name."""

    def __init__(self, path: str | Path, optimization: str = "all", threads: int | None = None) -> None:
        self.path = Path(path)
        self.optimization = optimization
        self.threads = threads
        self.session: Any = None

    def load(self) -> OrtRunner:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = {
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
            "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        }[self.optimization]
        options.log_severity_level = 3
        if self.threads:
            options.intra_op_num_threads = self.threads
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise BundleError(
                f"ONNX Runtime cannot load {self.path.name}: {first_line(exc)}",
                "run `modelport doctor` on the file, or re-export it",
            ) from exc
        return self

    def inputs(self) -> list[tuple[str, list[Any], str]]:
        return [(i.name, list(i.shape), i.type) for i in self.session.get_inputs()]

    def outputs(self) -> list[tuple[str, list[Any], str]]:
        return [(o.name, list(o.shape), o.type) for o in self.session.get_outputs()]

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        names = [o.name for o in self.session.get_outputs()]
        try:
            values = self.session.run(names, feed)
        except Exception as exc:
            raise FeedError(
                f"ONNX Runtime failed: {first_line(exc)}",
                "check the feed's names, shapes and dtypes against `modelport run --help`",
            ) from exc
        return dict(zip(names, values, strict=True))

    def close(self) -> None:
        self.session = None

    def __enter__(self) -> OrtRunner:
        return self.load()

    def __exit__(self, *exc: object) -> None:
        self.close()
