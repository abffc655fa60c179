"""What makes a GPU run test something, checked where CI can (issue 17): ONNX Runtime comes from an
extra (cpu or gpu) and its absence is one line with the pip command; ``make test-gpu`` refuses a machine
without a GPU in one line before it creates anything; under ``make test-gpu`` a gpu test that would skip
fails; the TensorRT pin and the hints that name it agree."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from modelport.runtime import providers, tensorrt
from tests.conftest import REQUIRE_GPU, ROOT, ZOO, error_lines, subprocess_env

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
NO_ORT = "import sys; sys.modules['onnxruntime'] = None\n"  # `import onnxruntime` now fails as if not installed
PIP_CPU = "pip install 'modelport[cpu]'"


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from modelport.exporting import export

    out = tmp_path_factory.mktemp("gpu-setup") / "mo"
    export(f"{ZOO}:multi_output", out, inputs=["x:batch,4"], dims=["batch=1..8"])
    return out


def python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = subprocess_env()
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=ROOT, env=env, timeout=300
    )


# -- ONNX Runtime from an extra ---------------------------------------------------------------------
def test_onnxruntime_comes_from_the_cpu_or_the_gpu_extra() -> None:
    """The CPU wheel installed after onnxruntime-gpu overwrites it, so nothing but the cpu extra asks for it."""
    project = PYPROJECT["project"]
    names = {key: [Requirement(d).name for d in deps] for key, deps in project["optional-dependencies"].items()}
    names["(dependencies)"] = [Requirement(d).name for d in project["dependencies"]]
    assert [key for key, deps in names.items() if "onnxruntime" in deps] == ["cpu"]
    assert [key for key, deps in names.items() if "onnxruntime-gpu" in deps] == ["gpu"]
    makefile = (ROOT / "Makefile").read_text()
    assert "-e '.[cpu,$(EXTRAS)]'" in makefile and "-e '.[gpu,$(EXTRAS)]'" in makefile


def test_without_onnxruntime_the_api_fails_in_one_line_with_the_pip_command(bundle: Path) -> None:
    code = NO_ORT + (
        "import modelport\n"
        "try:\n"
        "    modelport.load(sys.argv[1])\n"
        "except modelport.ModelportError as exc:\n"
        "    print(type(exc).__name__, exc.exit_code, exc, sep='|')\n"
    )
    proc = python(code, str(bundle))
    assert proc.returncode == 0, proc.stderr
    name, code_, line = proc.stdout.rstrip("\n").split("|")
    assert name == "MissingOnnxRuntimeError" and code_ == "2" and "\n" not in line
    assert line.startswith("ONNX Runtime is not installed") and PIP_CPU in line and "'modelport[gpu]'" in line


def test_without_onnxruntime_the_cli_fails_in_one_line_with_the_pip_command(bundle: Path) -> None:
    code = NO_ORT + "from modelport.cli.main import main\nsys.argv = ['modelport', *sys.argv[1:]]\nmain()\n"
    proc = python(code, "run", str(bundle))
    lines = error_lines(proc)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ONNX Runtime is not installed") and PIP_CPU in lines[0]


# -- make test-gpu ----------------------------------------------------------------------------------
@pytest.mark.skipif(shutil.which("make") is None, reason="no make")
def test_make_test_gpu_without_a_gpu_says_so_in_one_line_and_creates_nothing(tmp_path: Path) -> None:
    """A machine whose nvidia-smi is missing has no GPU (NVIDIA_SMI names a program that does not exist, so
    this holds on a GPU machine too); the venv must not appear."""
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    venv = ROOT / ".venv-gpu"
    existed = venv.exists()
    proc = subprocess.run(
        ["make", "--no-print-directory", "-C", str(ROOT), "test-gpu", f"NVIDIA_SMI={tmp_path / 'nvidia-smi'}"],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip()]
    assert proc.returncode != 0
    assert len(lines) == 1 and "make test-gpu needs an NVIDIA GPU and there is none here" in lines[0], lines
    assert venv.exists() == existed


def test_under_make_test_gpu_a_gpu_test_that_would_skip_fails(bundle: Path) -> None:
    """The conftest switch, on a gpu test that skips here (no CUDAExecutionProvider in this onnxruntime)."""
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has CUDA: the test would not skip")
    args = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "gpu",
            "tests/test_gpu.py::test_cuda_agrees_binds_io_and_keeps_compute_on_the_gpu"]  # fmt: skip
    env = subprocess_env()
    env.pop(REQUIRE_GPU, None)
    plain = subprocess.run(args, capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert plain.returncode == 0 and "1 skipped" in plain.stdout, plain.stdout
    strict = subprocess.run(args, capture_output=True, text=True, cwd=ROOT, env={**env, REQUIRE_GPU: "1"}, timeout=300)
    assert strict.returncode == 1, strict.stdout
    assert "would skip: no CUDAExecutionProvider" in strict.stdout


# -- the TensorRT pin and the lines that name it --------------------------------------------------------
def test_the_tensorrt_pin_is_10_and_every_hint_names_it() -> None:
    extras = PYPROJECT["project"]["optional-dependencies"]
    pin = "tensorrt>=10,<11"
    assert pin in extras["tensorrt"] and pin in extras["gpu"]
    assert tensorrt.PIP == f"pip install '{pin}'"
    assert f"pip install '{pin}'" in providers._LIBRARIES["TensorrtExecutionProvider"]


def test_a_tensorrt_other_than_10_is_refused_with_the_pip_line(monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    from modelport.errors import ModelportError

    monkeypatch.setitem(sys.modules, "tensorrt", SimpleNamespace(__version__="11.0.0.1"))
    with pytest.raises(ModelportError, match="TensorRT 11.0.0.1 is installed") as info:
        tensorrt._import_tensorrt()
    assert info.value.hint == tensorrt.PIP
    monkeypatch.setitem(sys.modules, "tensorrt", SimpleNamespace(__version__="10.16.1.11"))
    assert tensorrt._import_tensorrt().__version__.startswith("10.")
