"""Runtime errors from ONNX Runtime, rewritten in terms of what the user did and what to change."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from modelport.errors import FeedError, ModelportError, first_line

__all__ = ["ort_run_error"]


def ort_run_error(exc: BaseException, inputs: list[Any], feed: dict[str, np.ndarray], path: Path) -> ModelportError:
    """``exc`` raised by ``InferenceSession.run``; ``inputs`` the session's TensorInfo list."""
    return FeedError(
        f"ONNX Runtime failed: {first_line(exc)}",
        "check the feed's names, shapes and dtypes against `modelport doctor`",
    )
