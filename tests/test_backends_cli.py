"""`modelport run` and `modelport verify` with --backend, through the CLI as a user types them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from tests.conftest import error_lines, run_cli, zoo_cli_args

HAS_CUDA = "CUDAExecutionProvider" in ort.get_available_providers()
pytestmark = pytest.mark.slow  # CLI subprocesses


@pytest.fixture(scope="module")
def cnn(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("backends") / "cnn"
    proc = run_cli("export", *zoo_cli_args("dynamic_cnn"), "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.mark.skipif(HAS_CUDA, reason="this onnxruntime has CUDA")
def test_missing_cuda_is_one_line_naming_the_package_and_the_providers_here(cnn: Path) -> None:
    proc = run_cli("run", str(cnn), "--backend", "ort:cuda")
    assert proc.returncode == 2
    [line] = error_lines(proc)
    assert "CUDAExecutionProvider is not available" in line
    assert "pip install onnxruntime-gpu" in line and "available: " in line and "CPUExecutionProvider" in line
    assert "Traceback" not in proc.stderr


@pytest.mark.skipif(HAS_CUDA, reason="this onnxruntime has CUDA")
def test_fallback_allow_runs_on_the_cpu_and_says_so(cnn: Path) -> None:
    proc = run_cli("run", str(cnn), "--backend", "ort:cuda", "--fallback", "allow", "--json")
    assert proc.returncode == 0, proc.stderr
    assert "warning: CUDAExecutionProvider is not available here" in proc.stderr
    report = json.loads(proc.stdout)
    assert report["backend"]["providers"] == ["CPUExecutionProvider"]
    assert any("CUDAExecutionProvider" in w for w in report["warnings"])
    assert report["placement"]["by_provider"] == {"CPUExecutionProvider": report["placement"]["nodes"]}


def test_show_placement_prints_the_per_provider_table(cnn: Path) -> None:
    proc = run_cli("run", str(cnn), "--show-placement")
    assert proc.returncode == 0, proc.stderr
    assert "node placement" in proc.stdout and "CPUExecutionProvider ┃" in proc.stdout
    assert "Conv" in proc.stdout and "total" in proc.stdout
    assert "100% of compute-heavy ops on CPUExecutionProvider; 0 Memcpy" in proc.stdout
    assert "no --feed: a random feed at the example sizes" in proc.stdout


def test_placement_is_refused_for_a_backend_that_has_none(cnn: Path) -> None:
    proc = run_cli("run", str(cnn), "--backend", "openvino", "--show-placement")
    assert proc.returncode == 2
    assert error_lines(proc) == [
        "error: node placement is an ONNX Runtime report; backend openvino:f32 has none — use an ort:PROVIDERS backend"
    ]


@pytest.mark.parametrize("backend", ["ort:cpu", "openvino:f32", "torchscript"])
def test_run_gives_the_same_outputs_on_every_backend(cnn: Path, tmp_path: Path, backend: str) -> None:
    x = np.random.default_rng(0).standard_normal((2, 3, 20, 24)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    saved = tmp_path / "o.npz"
    proc = run_cli("run", str(cnn), "--backend", backend, "--feed", f"x={tmp_path / 'x.npy'}", "--save", str(saved))
    assert proc.returncode == 0, proc.stderr
    assert f"ran {backend}" in proc.stdout
    session = ort.InferenceSession(str(cnn / "model.onnx"))
    want = dict(zip([o.name for o in session.get_outputs()], session.run(None, {"x": x}), strict=True))
    got = np.load(saved)
    assert sorted(got.files) == sorted(want)
    for name, value in want.items():
        np.testing.assert_allclose(got[name], value, atol=1e-4, rtol=1e-3)


def test_strict_passes_when_every_node_stays_on_the_first_choice(cnn: Path) -> None:
    # ort:cpu keeps every node on the CPU, so strict passes there; the failing side is covered with a
    # real profile in test_runtime (a provider list whose first choice has no kernels)
    proc = run_cli("run", str(cnn), "--strict")
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("backend", ["ort:cpu", "openvino:f32", "openvino:default", "torchscript"])
def test_verify_on_a_backend_reports_that_backend(cnn: Path, backend: str) -> None:
    proc = run_cli("verify", str(cnn), "--backend", backend, "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["backend"] == backend and report["passed"]
    settings = {r["optimization"] for r in report["results"]}
    assert settings == ({"all", "disabled"} if backend == "ort:cpu" else {backend})
    assert report["precision"] == ("default" if backend == "openvino:default" else "fp32")


def test_verify_fails_on_a_backend_that_answers_wrong(cnn: Path) -> None:
    # a tolerance no fp32 runtime can meet against PyTorch: the failure names the backend
    proc = run_cli("verify", str(cnn), "--backend", "openvino:f32", "--atol", "0", "--rtol", "0")
    assert proc.returncode == 1
    [note, line] = error_lines(proc)  # which file verify imports, said before it imports it; then the error
    assert note.startswith("importing ") and note.endswith("(the source recorded in the bundle; its sha256 matches)")
    assert line.startswith("error: openvino:f32 disagrees with PyTorch on feed")


def test_unknown_backend_names_the_closest(cnn: Path) -> None:
    proc = run_cli("verify", str(cnn), "--backend", "openvin")
    assert proc.returncode == 2
    [line] = error_lines(proc)
    assert "unknown backend 'openvin'" in line and "did you mean 'openvino'" in line


@pytest.mark.hf
def test_minilm_verifies_on_openvino_and_ort_cpu_and_shows_its_placement(minilm_bundle: Path) -> None:
    for backend in ("openvino", "ort:cpu"):
        proc = run_cli("verify", str(minilm_bundle), "--backend", backend)
        assert proc.returncode == 0, proc.stderr
        assert "parity: PASS" in proc.stdout
    proc = run_cli("run", str(minilm_bundle), "--show-placement")
    assert proc.returncode == 0, proc.stderr
    assert "SkipLayerNormalization" in proc.stdout and "MatMul" in proc.stdout
    assert "100% of compute-heavy ops on CPUExecutionProvider" in proc.stdout
