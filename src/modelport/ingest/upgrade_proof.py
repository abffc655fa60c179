"""The proof behind ``modelport upgrade``: the original file's answers, which the upgraded file must give
in onnxruntime (``upgrade`` compares them; ``first_difference`` finds the node when they differ).

The original's answers come from ONNX's test data beside the file when there is any
(``test_data_set_*/input_N.pb`` and ``output_N.pb``: TensorProtos, parsed as protobuf, never unpickled),
otherwise from ONNX's reference evaluator run on the original, on generated feeds (fixed dims as
declared, every symbolic dim at each of ``FEED_SIZES``), with the rules of opset < 7 for files that old
(``evaluator.legacy_ops``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from modelport.deadline import within
from modelport.diagnose.graph import default_opset, numpy_dtype
from modelport.errors import ModelportError, first_line
from modelport.feeds import make_feed
from modelport.ingest.evaluator import EVALUATOR, legacy_ops
from modelport.spec import InputSpec, Signature

__all__ = ["Case", "FEED_SIZES", "TEST_DATA", "ON_ORIGINAL", "cases_for", "data_inputs", "reference_evaluator"]

FEED_SIZES = (1, 3)  # every symbolic dim at each of these sizes; the files are small and so are the feeds
TEST_DATA = "the test data beside the file"
ON_ORIGINAL = f"{EVALUATOR} on the original"
_FEEDABLE = ("float", "int", "uint", "bool")


@dataclass
class Case:
    """One feed and the original's answers to it."""

    label: str  # "test_data_set_0", "generated, symbolic dims = 3"
    answers_from: str  # TEST_DATA or ON_ORIGINAL
    feed: dict[str, np.ndarray]
    expected: dict[str, np.ndarray]

    def to_json(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "answers_from": self.answers_from,
            "inputs": {n: {"shape": list(a.shape), "dtype": str(a.dtype)} for n, a in self.feed.items()},
        }


def data_inputs(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    weights = {t.name for t in model.graph.initializer}  # IR 3 lists weights among the inputs
    return [v for v in model.graph.input if v.name not in weights]


def cases_for(model_path: Path, model: onnx.ModelProto, timeout: float | None) -> list[Case]:
    folders = sorted((p for p in model_path.parent.glob("test_data_set_*") if p.is_dir()), key=_number)
    if folders:
        return [_test_data(folder, model) for folder in folders]
    return _generated(model, timeout)


def _number(path: Path) -> tuple[int, str]:
    digits = re.findall(r"\d+", path.name)
    return (int(digits[-1]) if digits else -1, path.name)


def _test_data(folder: Path, model: onnx.ModelProto) -> Case:
    inputs = [v.name for v in data_inputs(model)]
    outputs = [v.name for v in model.graph.output]
    return Case(folder.name, TEST_DATA, _tensors(folder, "input", inputs), _tensors(folder, "output", outputs))


def _tensors(folder: Path, kind: str, names: list[str]) -> dict[str, np.ndarray]:
    files = sorted(folder.glob(f"{kind}_*.pb"), key=_number)
    fix = f"move {folder} away to prove against {EVALUATOR} instead, or fix its files"
    if len(files) != len(names):
        raise ModelportError(f"{folder} holds {len(files)} {kind}s, the model has {len(names)}", fix)
    tensors = []
    for file in files:
        tensor = onnx.TensorProto()
        try:
            tensor.ParseFromString(file.read_bytes())
            array = numpy_helper.to_array(tensor, base_dir=str(folder))
        except Exception as exc:  # protobuf's DecodeError, numpy's errors on a tensor that lies about its size
            raise ModelportError(f"{file} is not a readable ONNX tensor ({first_line(exc)[:120]})", fix) from None
        tensors.append((tensor.name, array))
    if all(name in names for name, _ in tensors) and len({n for n, _ in tensors}) == len(names):
        return dict(tensors)
    return {name: array for name, (_, array) in zip(names, tensors, strict=True)}  # unnamed: by position


def _generated(model: onnx.ModelProto, timeout: float | None) -> list[Case]:
    specs = [_spec(v) for v in data_inputs(model)]
    symbols = sorted({s for spec in specs for s in spec.symbols})
    evaluator = reference_evaluator(model)
    rng = np.random.default_rng(0)
    cases: list[Case] = []
    failures: list[str] = []
    for size in FEED_SIZES if symbols else FEED_SIZES[:1]:
        label = f"generated, symbolic dims = {size}" if symbols else "generated"
        feed = make_feed(Signature(specs), dict.fromkeys(symbols, size), rng).arrays
        try:
            answers = within(lambda f=feed: evaluator.run(None, f), timeout, EVALUATOR, label)
        except ModelportError:
            raise
        except Exception as exc:  # the original cannot take this size (a kernel larger than it, say)
            failures.append(f"{label}: {first_line(exc)[:160]}")
            continue
        expected = {n: np.asarray(a) for n, a in zip(evaluator.output_names, answers, strict=True)}
        cases.append(Case(label, ON_ORIGINAL, feed, expected))
    if not cases:
        raise ModelportError(
            f"{EVALUATOR} cannot run the original on generated feeds ({failures[0]}), and no test_data_set_* "
            "lies beside it to compare with",
            "put ONNX test data beside the file (test_data_set_0/input_0.pb ... output_0.pb) and run again",
        )
    return cases


def _spec(value: onnx.ValueInfoProto) -> InputSpec:
    kind = value.type.WhichOneof("value")
    dtype = numpy_dtype(value.type.tensor_type.elem_type) if kind == "tensor_type" else str(kind)
    if not dtype.startswith(_FEEDABLE) or not value.type.tensor_type.HasField("shape"):
        what = f"is of type {dtype}" if not dtype.startswith(_FEEDABLE) else "declares no shape, not even its rank"
        raise ModelportError(
            f"input {value.name!r} {what}, for which modelport cannot make feeds",
            "put ONNX test data beside the file (test_data_set_0/input_0.pb ... output_0.pb) and run again",
        )
    dims: list[int | str] = []
    for axis, dim in enumerate(value.type.tensor_type.shape.dim):
        dims.append(dim.dim_value if dim.dim_value > 0 else dim.dim_param or f"{value.name}.{axis}")
    return InputSpec(value.name, tuple(dims), dtype)


def reference_evaluator(model: onnx.ModelProto) -> Any:
    """The evaluator for the original, with the rules of opset < 7 when the file is that old."""
    from onnx.reference import ReferenceEvaluator

    legacy = (default_opset(model) or 0) < 7
    try:
        return ReferenceEvaluator(model, new_ops=legacy_ops() if legacy else None)
    except Exception as exc:  # NotImplementedError, TypeError... for an op it lacks
        raise ModelportError(
            f"{EVALUATOR} cannot load the original ({first_line(exc)[:160]}), and no test_data_set_* lies beside "
            "it to compare with",
            "put ONNX test data beside the file (test_data_set_0/input_0.pb ... output_0.pb) and run again",
        ) from None
