"""doctor on a corpus of broken files (tests/models/broken.py), graph, and every command on every file."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from modelport.errors import ModelFileError
from modelport.ingest.doctor import doctor
from tests.conftest import cli
from tests.models.broken import DEFECTS, UNREADABLE


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("broken")
    built = {name: build(folder) for name, (build, _, _) in DEFECTS.items()}
    built |= {name: build(folder) for name, (build, _) in UNREADABLE.items()}
    return built


def test_corpus_is_big_enough() -> None:
    assert len(DEFECTS) + len(UNREADABLE) >= 15


@pytest.mark.parametrize("name", sorted(DEFECTS))
def test_doctor_finds_the_planted_defect(corpus: dict[str, Path], name: str) -> None:
    _, code, phrase = DEFECTS[name]
    report = doctor(corpus[name])
    found = [f for f in report.findings if f.code == code]
    assert found, f"{name}: expected {code}, got {report.codes()}"
    assert phrase in found[0].one_line()
    assert found[0].fix, "every finding carries its fix"


@pytest.mark.parametrize("name", sorted(UNREADABLE))
def test_unreadable_files_get_one_line(corpus: dict[str, Path], name: str) -> None:
    with pytest.raises(ModelFileError, match=re.escape(UNREADABLE[name][1])):
        doctor(corpus[name])


@pytest.mark.parametrize("command", ["doctor", "graph", "run"])
def test_no_command_prints_a_traceback_on_any_corpus_file(
    corpus: dict[str, Path], capsys: pytest.CaptureFixture[str], command: str, tmp_path: Path
) -> None:
    import numpy as np

    feed = tmp_path / "x.npy"
    np.save(feed, np.zeros((1, 3, 16, 16), np.float32))
    for name, path in corpus.items():
        args = [command, str(path)] + (["--feed", f"x={feed}"] if command == "run" else [])
        code, out, err = cli(capsys, *args)
        assert "Traceback" not in out + err, name
        assert "internal error" not in err, f"{name}: {err}"
        assert code in (0, 1, 2), name
        if code == 2:
            assert len(err.strip().splitlines()) == 1, f"{name}: {err}"


def test_doctor_exit_codes_and_json(corpus: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "doctor", str(corpus["weights_as_inputs"]), "--json")
    payload = json.loads(out)
    assert code == 1 and payload["ok"] is False
    assert {"severity": "error", "code": "weights-as-inputs"}.items() <= payload["findings"][0].items()
    code, out, _ = cli(capsys, "doctor", str(corpus["static_dims"]))
    assert code == 0 and "re-export with them dynamic" in out  # a warning only
    code, _, err = cli(capsys, "doctor", str(corpus["empty"]))
    assert code == 2 and err.startswith("error: ") and "is empty (0 bytes)" in err


def test_clean_export_has_no_errors_and_shows_its_loop(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from modelport.exporting import export
    from modelport.spec import parse_input

    result = export(
        "tests.models.control_flow:range_loop", tmp_path / "b", [parse_input("x:batch,4"), parse_input("n::int64:0..5")]
    )
    report = doctor(result.bundle.path)
    assert report.ok, report.codes()
    assert [f.code for f in report.findings] == ["control-flow"]
    assert "Loop" in report.findings[0].message and "body" in report.findings[0].message
    code, out, _ = cli(capsys, "graph", str(result.bundle.path))
    assert code == 0 and "Loop" in out and "body:" in out


def test_graph_summary(corpus: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "graph", str(corpus["static_dims"]), "--json")
    info = json.loads(out)
    assert code == 0
    assert info["inputs"] == [{"name": "x", "dtype": "float32", "dims": [1, 3, 16, 16]}]
    assert info["ops"]["Conv"] == 1 and info["control_flow"] == []
    assert info["parameters"] > 100


def test_bundle_with_altered_weights_is_an_error(tmp_path: Path) -> None:
    from modelport.exporting import export
    from tests.conftest import zoo_specs

    result = export("tests.models.zoo:dynamic_cnn", tmp_path / "b", *zoo_specs("dynamic_cnn"))
    import onnx

    model = onnx.load(str(result.bundle.model_path))
    model.graph.initializer[0].raw_data = bytes(len(model.graph.initializer[0].raw_data))
    onnx.save(model, str(result.bundle.model_path))
    report = doctor(result.bundle.path)
    assert report.findings[0].code == "bundle" and "changed since export" in report.findings[0].message
