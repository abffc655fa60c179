"""Files given to modelport never run code: live payloads in .pt2, TorchScript .pt, torch.save .pt and .npy.

Each payload really runs when unpickled or evaluated the way torch would without modelport's checks
(the ``*_are_live`` tests show it); modelport must refuse the file with one line, exit code 2, no
traceback, no output directory, and the marker file the payload would create must never appear.
"""

from __future__ import annotations

import io
import json
import os
import pathlib
import pickle
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import sympy
import torch
from torch import nn

from modelport.errors import SourceError, UsageError
from modelport.sources import load_model
from tests.conftest import ZOO, error_lines, run_cli, zoo_specs


class Touch:
    """Unpickling this creates the marker file: pathlib.Path(marker).touch()."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


class Shell:
    """Unpickling this runs a shell command: os.system('touch marker')."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


class WithConstant(nn.Module):
    """Parameters, a buffer and a tensor constant: every payload section of a .pt2 is present."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.lin = nn.Linear(4, 3)
        self.register_buffer("shift", torch.ones(3))
        self.scale = torch.full((3,), 2.0)  # a plain tensor attribute: saved as a constant

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x) * self.scale + self.shift


def torch_saved(obj: object) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def good_pt2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("pt2") / "good.pt2"
    batch = torch.export.Dim("batch", min=1, max=16)
    program = torch.export.export(WithConstant(), (torch.randn(4, 4),), dynamic_shapes={"x": {0: batch}})
    torch.export.save(program, str(path))
    return path


def entries(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {info.filename: archive.read(info.filename) for info in archive.infolist()}


def root_of(path: Path) -> str:
    return next(iter(entries(path))).split("/", 1)[0] + "/"


def write_archive(path: Path, items: list[tuple[str, bytes]]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # duplicate_entry writes one name twice on purpose
        for name, data in items:
            archive.writestr(name, data)
    return path


def tampered(src: Path, dst: Path, replace: dict[str, bytes], add: dict[str, bytes] | None = None) -> Path:
    """A copy of src with entries (named relative to its root folder) replaced or added."""
    root = root_of(src)
    items = [(name, replace.get(name[len(root) :], data)) for name, data in entries(src).items()]
    items += [(root + rel, data) for rel, data in (add or {}).items()]
    return write_archive(dst, items)


def edited_json(src: Path, rel: str, edit) -> bytes:
    doc = json.loads(entries(src)[root_of(src) + rel])
    edit(doc)
    return json.dumps(doc).encode()


def mark_pickled(config_rel: str, fqn: str, path_name: str | None = None):
    def edit(doc):
        doc["config"][fqn]["use_pickle"] = True
        if path_name is not None:
            doc["config"][fqn]["path_name"] = path_name

    return config_rel, edit


# --- every way a .pt2 could run code, each as (name, builder(good, dst, marker) -> evil.pt2) ------


def sample_inputs_pickle(good, dst, marker):
    return tampered(good, dst, {"data/sample_inputs/model.pt": torch_saved((Touch(marker),))})


def sample_inputs_shell(good, dst, marker):
    return tampered(good, dst, {"data/sample_inputs/model.pt": torch_saved(((Shell(marker),), {}))})


def sample_inputs_raw_pickle(good, dst, marker):  # a bare pickle, not torch.save's zip
    return tampered(good, dst, {"data/sample_inputs/model.pt": pickle.dumps(Touch(marker), protocol=2)})


def weight_pickle(good, dst, marker):
    rel, edit = mark_pickled("data/weights/model_weights_config.json", "lin.weight")
    weight_file = json.loads(entries(good)[root_of(good) + rel])["config"]["lin.weight"]["path_name"]
    return tampered(
        good,
        dst,
        {rel: edited_json(good, rel, edit), f"data/weights/{weight_file}": torch_saved(Touch(marker))},
    )


def constant_pickle(good, dst, marker):
    rel, edit = mark_pickled("data/constants/model_constants_config.json", "scale")
    return tampered(
        good, dst, {rel: edited_json(good, rel, edit), "data/constants/tensor_0": torch_saved(Touch(marker))}
    )


def constant_opaque_object(good, dst, marker):  # torch reads opaque_obj_* with pickle.loads
    rel, edit = mark_pickled("data/constants/model_constants_config.json", "scale", "opaque_obj_0")
    return tampered(
        good, dst, {rel: edited_json(good, rel, edit)}, {"data/constants/opaque_obj_0": pickle.dumps(Touch(marker))}
    )


def legacy_weights_file(good, dst, marker):  # data/weights/model.pt: read as one pickle when present
    return tampered(good, dst, {}, {"data/weights/model.pt": torch_saved({"lin.weight": Touch(marker)})})


def legacy_layout(good, dst, marker):  # the pre-2.8 layout torch.export.load falls back to
    program = entries(good)[root_of(good) + "models/model.json"]
    return write_archive(
        dst,
        [
            ("version", b"8.13"),
            ("serialized_exported_program.json", program),
            ("serialized_state_dict.pt", torch_saved({})),
            ("serialized_constants.pt", torch_saved({"scale": Touch(marker)})),
            ("serialized_example_inputs.pt", torch_saved(((torch.randn(2, 4),), {}))),
        ],
    )


def aoti_library(good, dst, marker):
    return tampered(good, dst, {}, {"data/aotinductor/model/model.so": b"\x7fELF not really"})


def sympy_expression(good, dst, marker):  # expr_str goes to sympy.sympify, which is eval
    code = f"__import__('pathlib').Path({str(marker)!r}).touch()"

    def edit(doc):
        values = doc["graph_module"]["graph"]["tensor_values"]
        values["x"]["sizes"][0] = {"as_expr": {"expr_str": code, "hint": {"as_int": 4}}}

    return tampered(good, dst, {"models/model.json": edited_json(good, "models/model.json", edit)})


def guards_code(good, dst, marker):  # guards_code is exec'd when the module is built
    code = f"__import__('pathlib').Path({str(marker)!r}).touch() is None"
    return tampered(
        good, dst, {"models/model.json": edited_json(good, "models/model.json", lambda d: d.update(guards_code=[code]))}
    )


def call_target(good, dst, marker):  # a target looked up from `torch`: os.system (torch's verifier stops this one)
    def edit(doc):
        node = doc["graph_module"]["graph"]["nodes"][0]
        node["target"] = "torch.serialization.os.system"
        node["inputs"] = [{"name": "", "arg": {"as_string": f"touch '{marker}'"}, "kind": 1}]

    return tampered(good, dst, {"models/model.json": edited_json(good, "models/model.json", edit)})


def injected_name(good, dst, marker):  # a parameter name written into generated code: getattr(self.lin, "...")
    touch = f'getattr(getattr(__import__("pathlib"),"Path")("{marker.name}"),"touch")()'
    evil = f'lin.bias"),{touch},getattr(getattr(self,"lin"),"bias'
    files = {}
    for rel in ("models/model.json", "data/weights/model_weights_config.json"):
        text = entries(good)[root_of(good) + rel].decode()
        files[rel] = text.replace('"lin.weight"', json.dumps(evil)).encode()
    return tampered(good, dst, files)


def duplicate_entry(good, dst, marker):  # zipfile reads the last copy, a C reader may read the first
    root = root_of(good)
    items = list(entries(good).items())
    items.insert(0, (root + "data/sample_inputs/model.pt", torch_saved((Touch(marker),))))
    return write_archive(dst, items)


PT2_PAYLOADS = {
    f.__name__: f
    for f in (
        sample_inputs_pickle,
        sample_inputs_shell,
        sample_inputs_raw_pickle,
        weight_pickle,
        constant_pickle,
        constant_opaque_object,
        legacy_weights_file,
        legacy_layout,
        aoti_library,
        sympy_expression,
        guards_code,
        call_target,
        injected_name,
        duplicate_entry,
    )
}


def assert_refused_one_line(message: str, file_name: str) -> None:
    assert "\n" not in message and "Traceback" not in message
    assert file_name in message and "refused" in message
    assert "torch version" not in message  # the cause is the entry, not an incompatible torch


@pytest.mark.parametrize("payload", PT2_PAYLOADS)
def test_a_pt2_that_would_run_code_is_refused(good_pt2, tmp_path, monkeypatch, payload):
    monkeypatch.chdir(tmp_path)  # injected_name touches a relative path
    marker = tmp_path / "pwned"
    evil = PT2_PAYLOADS[payload](good_pt2, tmp_path / "evil.pt2", marker)
    with pytest.raises(SourceError) as info:
        load_model(str(evil))
    assert info.value.exit_code == 2
    assert_refused_one_line(str(info.value), "evil.pt2")
    assert not marker.exists()


@pytest.mark.parametrize("payload", ["sample_inputs_shell", "weight_pickle", "sympy_expression"])
def test_the_cli_refuses_a_pt2_that_would_run_code(good_pt2, tmp_path, payload):
    marker = tmp_path / "pwned"
    evil = PT2_PAYLOADS[payload](good_pt2, tmp_path / "evil.pt2", marker)
    out = tmp_path / "out"
    proc = run_cli("export", str(evil), "--input", "x:batch,4", "--dim", "batch=1..16", "-o", str(out), cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = error_lines(proc)
    assert len(lines) == 1, proc.stderr
    assert_refused_one_line(lines[0], "evil.pt2")
    assert "Traceback" not in proc.stderr
    assert not out.exists() and not marker.exists()


@pytest.mark.parametrize("payload", ["sample_inputs_pickle", "sample_inputs_shell", "weight_pickle", "constant_pickle"])
def test_torch_loads_tensors_only_even_past_the_archive_check(good_pt2, tmp_path, monkeypatch, payload):
    """The second lock on its own: with the entry scan skipped, torch's TORCH_FORCE_WEIGHTS_ONLY_LOAD
    switch, set around torch.export.load, still stops every pickle payload."""
    from modelport.sources import exported_program

    monkeypatch.setattr(exported_program, "check_archive", lambda path: None)
    marker = tmp_path / "pwned"
    evil = PT2_PAYLOADS[payload](good_pt2, tmp_path / "evil.pt2", marker)
    with pytest.raises(SourceError, match="evil.pt2 was refused: torch.export.load needed to unpickle more") as info:
        load_model(str(evil))
    assert_refused_one_line(str(info.value), "evil.pt2")
    assert not marker.exists()


# --- the payloads are live: without modelport's checks, torch runs them ------------------------------


def test_pickle_payloads_are_live(tmp_path):
    marker = tmp_path / "pwned"
    for payload in (torch_saved((Touch(marker),)), torch_saved(((Shell(marker),), {}))):
        torch.load(io.BytesIO(payload), weights_only=False)
        assert marker.exists()
        marker.unlink()


LIVE_IN_TORCH = [
    "sample_inputs_pickle",
    "weight_pickle",
    "constant_pickle",
    "constant_opaque_object",
    "legacy_weights_file",
    "legacy_layout",
]


@pytest.mark.parametrize("payload", LIVE_IN_TORCH)
def test_torch_export_load_alone_runs_the_pickle_payloads(good_pt2, tmp_path, payload):
    """Why the checks exist: torch.export.load unpickles these entries beyond weights_only."""
    marker = tmp_path / "pwned"
    evil = PT2_PAYLOADS[payload](good_pt2, tmp_path / "evil.pt2", marker)
    try:
        torch.export.load(str(evil))
    except Exception:
        pass
    assert marker.exists()


@pytest.mark.parametrize("payload", ["sympy_expression", "guards_code", "injected_name"])
def test_program_payloads_are_live(good_pt2, tmp_path, monkeypatch, payload):
    """torch.export.load, .module() and a call, unchecked, run each program (JSON) payload."""
    monkeypatch.chdir(tmp_path)
    marker = tmp_path / "pwned"
    evil = PT2_PAYLOADS[payload](good_pt2, tmp_path / "evil.pt2", marker)
    try:
        torch.export.load(str(evil)).module()(torch.randn(2, 4))
    except Exception:
        pass
    assert marker.exists()


def test_sympify_payload_is_live(tmp_path):
    marker = tmp_path / "pwned"
    sympy.sympify(f"__import__('pathlib').Path({str(marker)!r}).touch()")
    assert marker.exists()


# --- what is not refused --------------------------------------------------------------------------


def test_a_rewritten_but_untampered_archive_still_loads(good_pt2, tmp_path):
    """The tampering helpers alone do not make torch (or the checks) refuse an archive."""
    copy = tampered(good_pt2, tmp_path / "copy.pt2", {})
    loaded = load_model(str(copy))
    assert loaded.kind == "exported_program" and [s.name for s in loaded.signature.inputs] == ["x"]
    assert torch.allclose(loaded.module(torch.ones(2, 4)), WithConstant()(torch.ones(2, 4)))


def test_loading_leaves_torch_load_as_it_was(good_pt2, monkeypatch):
    monkeypatch.delenv("TORCH_FORCE_WEIGHTS_ONLY_LOAD", raising=False)
    load_model(str(good_pt2))
    assert "TORCH_FORCE_WEIGHTS_ONLY_LOAD" not in os.environ


def test_a_truncated_pt2_is_a_one_line_source_error(good_pt2, tmp_path):
    data = bytearray(good_pt2.read_bytes())
    start = data.index(b"{", data.index(b"models/model.json"))
    data[start : start + 40] = b"#" * 40  # the program's bytes damaged, the zip directory intact
    path = tmp_path / "damaged.pt2"
    path.write_bytes(bytes(data))
    with pytest.raises(SourceError) as info:
        load_model(str(path))
    message = str(info.value)
    assert "damaged.pt2" in message and "\n" not in message and "refused" not in message


def test_a_cut_off_pt2_or_a_zip_without_a_program_is_a_one_line_source_error(good_pt2, tmp_path):
    half = tmp_path / "half.pt2"
    half.write_bytes(good_pt2.read_bytes()[: good_pt2.stat().st_size // 2])
    other = write_archive(tmp_path / "other.pt2", [("notes/readme.txt", b"hello")])
    for path, message in ((half, "not an ExportedProgram archive"), (other, "without an ExportedProgram in it")):
        with pytest.raises(SourceError, match=message) as info:
            load_model(str(path))
        assert path.name in str(info.value) and "refused" not in str(info.value)


def test_a_pt2_from_another_archive_version_blames_the_version(good_pt2, tmp_path):
    path = tampered(good_pt2, tmp_path / "future.pt2", {"archive_version": b"99"})
    with pytest.raises(SourceError, match="torch.export.load could not read future.pt2: .*version") as info:
        load_model(str(path))
    assert "refused" not in str(info.value)


# --- TorchScript, torch.save checkpoints and .npy feeds: safe already, kept so --------------------


@pytest.fixture(scope="module")
def good_script(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ts") / "good.pt"
    torch.jit.save(torch.jit.script(WithConstant()), str(path))
    return path


def script_with(good: Path, dst: Path, entry_suffix: str, payload: bytes, add: bool = False) -> Path:
    items = list(entries(good).items())
    if add:
        items.append((items[0][0].split("/", 1)[0] + "/" + entry_suffix, payload))
    else:
        items = [(n, payload if n.endswith("/" + entry_suffix) else d) for n, d in items]
    return write_archive(dst, items)


SCRIPT_PAYLOADS = {  # name -> (builder, whether torch.jit.load reads the entry at all)
    "data_pkl": (lambda good, dst, m: script_with(good, dst, "data.pkl", pickle.dumps(Touch(m), protocol=2)), True),
    "constants_pkl": (
        lambda good, dst, m: script_with(good, dst, "constants.pkl", pickle.dumps((Shell(m),), protocol=2)),
        True,
    ),
    "debug_pkl": (
        lambda good, dst, m: script_with(good, dst, "linear.py.debug_pkl", pickle.dumps((Touch(m),), protocol=2)),
        False,
    ),
    "extra_pickle": (
        lambda good, dst, m: script_with(good, dst, "extra/evil.pkl", pickle.dumps(Touch(m)), add=True),
        False,
    ),
}


@pytest.mark.parametrize("payload", SCRIPT_PAYLOADS)
def test_a_torchscript_file_with_a_pickle_payload_runs_nothing(good_script, tmp_path, payload):
    marker = tmp_path / "pwned"
    build, read = SCRIPT_PAYLOADS[payload]
    evil = build(good_script, tmp_path / "evil.pt", marker)
    if read:  # TorchScript's own unpickler knows no Python callables: it stops at the first one
        with pytest.raises(SourceError, match="evil.pt") as info:
            load_model(str(evil))
        assert info.value.exit_code == 2 and "\n" not in str(info.value)
    else:  # an entry TorchScript never reads is never unpickled
        assert load_model(str(evil)).kind == "torchscript"
    assert not marker.exists()


def test_the_cli_runs_nothing_from_a_torchscript_payload(good_script, tmp_path):
    marker = tmp_path / "pwned"
    evil = SCRIPT_PAYLOADS["data_pkl"][0](good_script, tmp_path / "evil.pt", marker)
    out = tmp_path / "out"
    proc = run_cli("export", str(evil), "--input", "x:batch,4", "-o", str(out), cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = error_lines(proc)
    assert len(lines) == 1 and "evil.pt" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert not out.exists() and not marker.exists()


def test_a_torch_save_checkpoint_with_a_payload_is_refused_unread(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "weights.pt"
    torch.save({"lin.weight": Touch(marker), "hook": Shell(marker)}, path)
    with pytest.raises(SourceError, match="weights.pt looks like a torch.save checkpoint.*does not unpickle"):
        load_model(str(path))
    out = tmp_path / "out"
    proc = run_cli("export", str(path), "--input", "x:batch,4", "-o", str(out), cwd=tmp_path)
    assert proc.returncode == 2 and len(error_lines(proc)) == 1 and "does not unpickle" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not out.exists() and not marker.exists()


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from modelport.exporting import export

    out = tmp_path_factory.mktemp("bundle") / "multi"
    export(f"{ZOO}:multi_output", out, *zoo_specs("multi_output"))
    return out


def test_an_npy_feed_of_objects_runs_nothing(bundle, tmp_path):
    marker = tmp_path / "pwned"
    feed = tmp_path / "evil.npy"
    np.save(feed, np.array([Touch(marker), Shell(marker)], dtype=object), allow_pickle=True)
    np.load(feed, allow_pickle=True)  # live: numpy's own pickle path runs it
    assert marker.exists()
    marker.unlink()

    from modelport.runtime.run import run

    with pytest.raises(UsageError, match="evil.npy holds Python objects"):
        run(bundle, {"x": feed})
    proc = run_cli("run", str(bundle), "--feed", f"x={feed}", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = error_lines(proc)
    assert len(lines) == 1 and "evil.npy" in lines[0] and "never unpickles" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert not marker.exists()
