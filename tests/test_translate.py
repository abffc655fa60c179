"""The errors users meet after export, hit through modelport, come back as one line with cause and fix;
and a low --opset never yields a model that answers wrong."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from modelport.diagnose.translate import ort_run_error
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


def test_model_requires_n_inputs_message_is_translated() -> None:
    inputs = [SimpleNamespace(name=n, shape=[4]) for n in ("x", "fc.weight", "fc.bias")]
    error = ort_run_error(
        RuntimeError("Model requires 3 inputs. Input Feed contains 1"), inputs, {"x": np.zeros(4)}, Path("m.onnx")
    )
    assert "2 of them are weights (fc.weight, fc.bias)" in str(error) and "export_params=True" in error.hint


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
