"""The README's Python example, run verbatim: the public API a notebook user meets first."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_example_runs_as_written(tmp_path, monkeypatch, capsys):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert blocks, "the README has no Python example"
    monkeypatch.chdir(tmp_path)
    exec(compile(blocks[0], "README.md", "exec"), {"__name__": "readme"})
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].endswith("checks passed (atol 0.0001, rtol 0.001)")
    assert printed[-1] == "(3, 4)"
    assert (tmp_path / "out" / "tiny" / "model.onnx").is_file()


def test_public_api_is_explicit_and_resolves():
    import modelport

    for name in modelport.__all__:
        assert getattr(modelport, name) is not None, name
    assert callable(modelport.export) and callable(modelport.verify) and callable(modelport.bench)
