"""The README's Python example, run verbatim, and what it promises: the public API a notebook user meets
first, ``modelport.ParityError`` when ONNX Runtime disagrees, and every ``modelport.NAME`` it mentions."""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Any

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
TEXT = README.read_text()


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], list[str], Path]:
    """The README's first Python block run in an empty folder: its namespace, what it printed, the folder."""
    import contextlib
    import io

    blocks = re.findall(r"```python\n(.*?)```", TEXT, re.S)
    assert blocks, "the README has no Python example"
    folder = tmp_path_factory.mktemp("readme")
    namespace: dict[str, Any] = {"__name__": "readme"}
    printed = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(printed):
        patch.chdir(folder)
        exec(compile(blocks[0], "README.md", "exec"), namespace)
    return namespace, printed.getvalue().splitlines(), folder


def test_readme_python_example_runs_as_written(example) -> None:
    _, printed, folder = example
    assert printed[0].endswith("checks passed (atol 0.0001, rtol 0.001)")
    assert printed[-1] == "(3, 4)"
    assert (folder / "out" / "tiny" / "model.onnx").is_file()


def test_verify_raises_parity_error_once_the_model_no_longer_matches_its_onnx(example, monkeypatch) -> None:
    """The README's promise: ``verify`` "raises modelport.ParityError if ONNX Runtime disagrees"."""
    import torch

    import modelport

    namespace, _, folder = example
    monkeypatch.chdir(folder)
    net = namespace["net"]
    with torch.no_grad():
        net.proj.weight[0] += 1.0  # the model the bundle was exported from, changed after export
    with pytest.raises(modelport.ParityError, match="output 'output'") as info:
        modelport.verify("out/tiny", model=net)
    assert info.value.exit_code == 1


def test_every_modelport_name_the_readme_mentions_exists() -> None:
    """A reader who types a ``modelport.NAME`` the README mentions gets it: a public name from ``__all__``
    (also what ``from modelport import *`` binds) or a module."""
    import modelport

    names = set(re.findall(r"modelport\.([A-Za-z_][\w.]*\w)", TEXT)) - {"json"}  # modelport.json: the manifest
    assert {"export", "verify", "load", "ParityError"} <= names
    star: dict[str, Any] = {}
    exec("from modelport import *", star)
    for name in sorted(names):
        top = name.split(".")[0]
        if name == top and top in modelport.__all__:
            assert star[top] is getattr(modelport, top), name
        elif name != "__all__":
            importlib.import_module(f"modelport.{name}")  # ModuleNotFoundError names what the README got wrong
    # "Each CLI command is one call of this API: export, verify, load/run, doctor, optimize, bench"
    assert all(callable(star[n]) for n in ("export", "verify", "load", "run", "doctor", "optimize", "bench"))
    assert issubclass(star["ParityError"], star["ModelportError"])
