"""What makes a GPU run test something, checked where CI can (issue 17): ONNX Runtime comes from an
extra (cpu or gpu) and its absence is one line with the pip command; ``make test-gpu`` refuses a machine
without a GPU in one line before it creates anything; under ``make test-gpu`` a gpu test that would skip
fails; the TensorRT pin and the hints that name it agree."""

from __future__ import annotations

import email.parser
import os
import re
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
def requirements_by_extra(scratch: Path) -> dict[str, set[str]]:
    """The distributions pip installs for ``modelport`` ("") and for each extra: the Requires-Dist of the
    wheel metadata setuptools builds from pyproject.toml (in a scratch copy: the checkout gets no egg-info)."""
    (scratch / "src" / "modelport").mkdir(parents=True)
    shutil.copy(ROOT / "pyproject.toml", scratch)
    shutil.copy(ROOT / "README.md", scratch)
    (scratch / "src" / "modelport" / "__init__.py").touch()
    build = "import sys; from setuptools import build_meta; print(build_meta.prepare_metadata_for_build_wheel('meta'))"
    (scratch / "meta").mkdir()
    proc = subprocess.run([sys.executable, "-c", build], capture_output=True, text=True, cwd=scratch, timeout=120)
    assert proc.returncode == 0, proc.stderr
    metadata = email.parser.Parser().parsestr((scratch / "meta" / proc.stdout.split()[-1] / "METADATA").read_text())
    requires = [Requirement(r) for r in metadata.get_all("Requires-Dist") or []]
    extras = [""] + (metadata.get_all("Provides-Extra") or [])
    return {e: {r.name for r in requires if r.marker is None or r.marker.evaluate({"extra": e})} for e in extras}


def make_installs(target: str, tmp_path: Path) -> list[str]:
    """The extras each `pip install -e '.[...]'` of a make target asks for, from `make -n` (nothing runs);
    a stand-in nvidia-smi lists a GPU so the GPU venv's recipe is printed here too."""
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'GPU 0: stand-in'\n")
    smi.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    proc = subprocess.run(
        ["make", "-n", "-B", "--no-print-directory", "-C", str(ROOT), target, f"NVIDIA_SMI={smi}"],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return [e for line in proc.stdout.splitlines() for e in re.findall(r"pip install -e '\.\[([^\]]*)\]'", line)]


@pytest.mark.skipif(shutil.which("make") is None, reason="no make")
def test_each_venv_gets_one_onnxruntime_and_no_extra_brings_the_other(tmp_path: Path) -> None:
    """onnxruntime and onnxruntime-gpu install the same module, and whichever comes last overwrites the other:
    only the cpu extra asks for the first, only the gpu extra for the second, so any extras a user combines
    with one of them bring no second copy; `make test`'s venv and `make test-gpu`'s each install one."""
    wants = requirements_by_extra(tmp_path / "scratch")
    assert [e for e, names in wants.items() if "onnxruntime" in names] == ["cpu"]
    assert [e for e, names in wants.items() if "onnxruntime-gpu" in names] == ["gpu"]
    for target, runtime, other in ((".venv/.installed", "onnxruntime", "onnxruntime-gpu"),
                                   (".venv-gpu/.installed", "onnxruntime-gpu", "onnxruntime")):  # fmt: skip
        [extras] = make_installs(target, tmp_path)
        installed = set().union(wants[""], *(wants[e] for e in extras.split(",")))
        assert runtime in installed and other not in installed, (target, extras)


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
