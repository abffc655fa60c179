"""The errors users meet after export, hit through modelport, come back as one line with cause and fix;
and a low --opset never yields a model that answers wrong."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

import modelport
from modelport.diagnose.translate import ort_run_error
from modelport.errors import FeedError
from tests.conftest import error_lines, run_cli, zoo_cli_args
from tests.models.broken import external_data_missing, static_dims, weights_as_inputs


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("files")
    return {
        "static": static_dims(folder),
        "no_params": weights_as_inputs(folder),
        "no_data": external_data_missing(folder),
        "folder": folder,
    }


def feed(folder: Path, name: str, array: np.ndarray) -> str:
    path = folder / f"{name}.npy"
    np.save(path, array)
    return f"{name.split('-')[0]}={path}"


def one_line(proc) -> str:
    lines = error_lines(proc)
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1, proc.stderr
    return lines[0]


@pytest.mark.slow
def test_invalid_dimensions_names_axis_and_the_reexport(files: dict[str, Path]) -> None:
    x = feed(files["folder"], "x", np.zeros((2, 3, 20, 16), np.float32))
    line = one_line(run_cli("run", str(files["static"]), "--feed", x))
    assert "input 'x': axis 0 was fixed to 1 at export, the feed has 2, axis 2 was fixed to 16" in line
    assert "--input x:batch,3,h,16 --dim batch=1..4 --dim h=1..40" in line
    assert "Got invalid dimensions" not in line


@pytest.mark.slow
def test_weights_as_inputs_says_export_params(files: dict[str, Path]) -> None:
    x = feed(files["folder"], "x", np.zeros((1, 3, 16, 16), np.float32))
    line = one_line(run_cli("run", str(files["no_params"]), "--feed", x))
    assert "are weights" in line and "export_params=False" in line and "export_params=True" in line


def linear_with_weights_as_inputs(folder: Path) -> Path:
    """What ``torch.onnx.export(..., export_params=False)`` writes for ``nn.Linear(4, 2)`` named ``fc``: its
    weight and bias are graph inputs, not initializers."""
    from onnx import TensorProto, helper

    def tensor(name: str, dims: list[int | str]) -> onnx.ValueInfoProto:
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, dims)

    node = helper.make_node("Gemm", ["x", "fc.weight", "fc.bias"], ["y"], transB=1)
    graph = helper.make_graph(
        [node], "linear", [tensor("x", ["batch", 4]), tensor("fc.weight", [2, 4]), tensor("fc.bias", [2])],
        [tensor("y", ["batch", 2])],
    )  # fmt: skip
    path = folder / "linear.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_feeding_only_x_to_a_model_that_wants_its_weights_says_export_params(tmp_path: Path) -> None:
    """ONNX Runtime's own refusal from a real session (a feed of 1 of the 3 inputs), as modelport words it:
    if onnxruntime's wording changes, the translation misses and this fails."""
    import onnxruntime as ort

    path = linear_with_weights_as_inputs(tmp_path)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = {"x": np.zeros((1, 4), np.float32)}
    with pytest.raises(Exception) as raised:  # noqa: PT011 - whatever onnxruntime raises is what is translated
        session.run(None, feed)
    error = ort_run_error(raised.value, session.get_inputs(), feed, path)
    assert isinstance(error, FeedError) and error.message == (
        "the model wants 3 inputs but 1 were fed: 2 of them are weights (fc.weight, fc.bias) — it was exported "
        "with export_params=False"
    )
    assert error.hint == "re-export with export_params=True (torch.onnx.export's default) or with modelport export"
    with modelport.load(path) as runner:  # the same through the public API, as a user meets it
        with pytest.raises(FeedError, match=r"2 of them are weights \(fc\.weight, fc\.bias\)"):
            runner.infer(feed)


@pytest.mark.slow
def test_wrong_dtype_and_unknown_name(files: dict[str, Path]) -> None:
    x64 = feed(files["folder"], "x-64", np.zeros((1, 3, 16, 16), np.float64))
    line = one_line(run_cli("run", str(files["static"]), "--feed", x64))
    assert "input 'x' is float64, the model expects float32" in line and "astype('float32')" in line
    typo = feed(files["folder"], "xx", np.zeros((1, 3, 16, 16), np.float32))
    line = one_line(run_cli("run", str(files["static"]), "--feed", typo))
    assert "no input 'xx'" in line and "did you mean 'x'" in line


@pytest.mark.slow
def test_missing_external_data_names_the_file(files: dict[str, Path]) -> None:
    a = feed(files["folder"], "a", np.zeros(4096, np.float32))
    line = one_line(run_cli("run", str(files["no_data"]), "--feed", a))
    assert "external_data_missing.data" in line and "next to" in line


@pytest.mark.slow
@pytest.mark.parametrize(("exporter", "raised"), [("trace", 11), ("dynamo", 13)])
def test_low_opset_is_raised_and_the_model_answers_right(tmp_path: Path, exporter: str, raised: int) -> None:
    out = tmp_path / "b"
    proc = run_cli("export", *zoo_cli_args("upsample"), "--opset", "9", "--exporter", exporter, "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((out / "modelport.json").read_text())
    assert manifest["opset"] == {"requested": 9, "actual": raised}
    assert manifest["parity"]["passed"]
    assert any(n.startswith(f"opset raised from 9 to {raised}:") for n in manifest["notes"])


@pytest.mark.slow
def test_strict_opset_refuses_and_names_the_minimum(tmp_path: Path) -> None:
    proc = run_cli(
        "export",
        *zoo_cli_args("upsample"),
        "--opset",
        "9",
        "--exporter",
        "trace",
        "--strict-opset",
        "-o",
        str(tmp_path / "b"),
    )
    assert proc.returncode == 1
    line = error_lines(proc)[-1]
    assert "--opset 9 cannot express this model" in line and "use --opset 11" in line
    assert not (tmp_path / "b").exists()
