"""The reliability corpus: hostile and broken inputs through the real CLI, in subprocesses.

Every case asserts the exit code class (2 usage/input/environment, 1 unsafe model, 130 interrupted),
one line on stderr, no traceback, and that nothing of the user's was lost or run. The README's
"Safety" section lists these cases.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from modelport.bundle import TEMP_MARK
from tests.conftest import (
    ROOT,
    SPEC,
    ZOO,
    edit_manifest,
    error_lines,
    one_error,
    run_cli,
    subprocess_env,
    tree,
    usage_error,
)

pytestmark = pytest.mark.slow

# -- usage: click's own messages, exit 2 -------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["frobnicate"], "No such command 'frobnicate'"),
        (["export", f"{ZOO}:multi_output", *SPEC], "Missing option '--output'"),
        (["run", "x.onnx", "--threads", "abc"], "Invalid value for '--threads'"),
        (["export", f"{ZOO}:multi_output", "--atol"], "requires an argument"),
    ],
)
def test_usage_errors_keep_clicks_message(args, fragment):
    usage_error(run_cli(*args), fragment)


# -- specs and options: one line, exit 2, no bundle --------------------------------------------------


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--input", "x:batch,,4"], "empty dimension"),
        (["--input", "x:0,4"], "every size must be at least 1"),
        (["--input", "x:batch,4:float32:0..nan"], "must be finite"),
        ([*SPEC, "--atol", "inf"], "--atol inf is not a finite number >= 0"),
        ([*SPEC, "--atol", "nan"], "--atol nan is not a finite number >= 0"),
        ([*SPEC, "--rtol", "-1"], "--rtol -1.0 is not a finite number >= 0"),
        ([*SPEC, "--opset", "999"], "--opset 999 is outside"),
        ([*SPEC, "--dim", "batch=0..4"], "need 1 <= MIN < MAX"),
        (["--input", "x:100000,100000,8"], "of memory is available"),
    ],
)
def test_bad_specs_and_options_are_refused_before_any_work(tmp_path, args, fragment):
    out = tmp_path / "b"
    one_error(run_cli("export", f"{ZOO}:multi_output", *args, "-o", str(out)), 2, fragment)
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_threads_below_one_are_refused(bundle):
    one_error(run_cli("run", str(bundle), "--threads", "-3"), 2, "--threads -3 is not a thread count")


@pytest.mark.parametrize(
    ("model", "fragment"),
    [
        ("missing.py:make", "does not exist"),
        (f"{ZOO}:not_a_module", "not a torch.nn.Module"),
        (f"{ZOO}:broken_factory", "broken_factory() raised"),
        ("no.such.module:make", "cannot import module"),
        ("what", "cannot tell what kind of model"),
    ],
)
def test_bad_models_are_one_line(tmp_path, model, fragment):
    one_error(run_cli("export", model, *SPEC, "-o", str(tmp_path / "b")), 2, fragment)


# -- nothing of the user's is deleted ---------------------------------------------------------------


def test_export_onto_a_project_directory_with_a_stray_manifest_deletes_nothing(tmp_path):
    project = tmp_path / "proj"
    (project / "src").mkdir(parents=True)
    (project / "src" / "train.py").write_text("print('my training code')\n")
    (project / "modelport.json").write_text("{}")
    before = tree(project)
    one_error(run_cli("export", f"{ZOO}:multi_output", *SPEC, "-o", str(project)), 2, "refusing to replace it")
    assert tree(project) == before


def test_reexport_onto_a_bundle_the_user_added_files_to_keeps_them(copy):
    (copy / "README.md").write_text("my notes about this model")
    one_error(
        run_cli("export", f"{ZOO}:multi_output", *SPEC, "-o", str(copy)), 2, "does not list (README.md)", "refusing"
    )
    assert (copy / "README.md").read_text() == "my notes about this model"


def test_reexport_onto_an_untouched_bundle_replaces_it(copy):
    proc = run_cli("export", f"{ZOO}:multi_output", *SPEC, "-o", str(copy))
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in copy.iterdir()) == ["model.onnx", "modelport.json"]


def test_output_onto_the_current_directory_is_refused(tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    proc = run_cli("export", f"{ZOO}:multi_output", *SPEC, "-o", ".", cwd=tmp_path)
    one_error(proc, 2, "is the current directory")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]
    assert not any(p.name.startswith(".") for p in tmp_path.parent.iterdir() if tmp_path.name in p.name)


def test_output_under_a_file_is_an_environment_error(tmp_path):
    (tmp_path / "file").write_text("x")
    one_error(run_cli("export", f"{ZOO}:multi_output", *SPEC, "-o", str(tmp_path / "file" / "b")), 2)
    assert (tmp_path / "file").read_text() == "x"


def test_a_dead_runs_leftovers_are_removed_and_a_live_ones_and_the_users_kept(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".b.partial-{dead.pid}-abc123_x"
    live = tmp_path / f".b.partial-{os.getpid()}-def456_y"
    users = tmp_path / f".b.old-{dead.pid}-jan2024x"  # looks like ours, but modelport did not make it
    for folder in (stale, live, users):
        folder.mkdir()
        (folder / "model.onnx").write_bytes(b"half")
    for folder in (stale, live):
        (folder / TEMP_MARK).write_text("")
    proc = run_cli("export", f"{ZOO}:multi_output", *SPEC, "-o", str(tmp_path / "b"))
    assert proc.returncode == 0, proc.stderr
    assert not stale.exists() and live.exists() and (users / "model.onnx").read_bytes() == b"half"
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["model.onnx", "modelport.json"]


def test_a_very_long_output_name_fits_its_temporary_directory(tmp_path):
    out = tmp_path / ("m" * 240)
    proc = run_cli("export", f"{ZOO}:multi_output", *SPEC, "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert (out / "model.onnx").is_file()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_export_exits_130_and_leaves_nothing(tmp_path, sig):
    model = tmp_path / "slow.py"
    model.write_text(
        "import time, torch\n"
        "class Slow(torch.nn.Module):\n"
        "    def forward(self, x):\n"
        "        time.sleep(0.3)\n"
        "        return x + 1\n"
        "def make():\n"
        "    return Slow()\n"
    )
    out = tmp_path / "out" / "b"
    env = subprocess_env()
    proc = subprocess.Popen(
        [sys.executable, "-m", "modelport", "export", f"{model}:make", *SPEC, "-o", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    deadline = time.monotonic() + 60
    while not any(out.parent.glob(".b.partial-*")) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert any(out.parent.glob(".b.partial-*")), "the export never started writing"
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=60)
    done = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    assert done.returncode == 130, stderr
    assert error_lines(done) == ["interrupted; nothing was written"]
    assert sorted(p.name for p in out.parent.iterdir()) == []


# -- run: bad feeds -----------------------------------------------------------------------------------


def _feed(tmp_path: Path, content) -> str:
    path = tmp_path / "x.npy"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        np.save(path, content)
    return f"x={path}"


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"just some text\n", "is not a .npy array file"),
        (b"", "is not a .npy array file"),
        (np.ones((3, 4), np.float64), "is float64, the model expects float32"),
        (np.ones((3, 5), np.float32), "axis 1 is 5, the model was exported with it fixed to 4"),
        (np.ones((3,), np.float32), "the model expects rank 2"),
        (np.array([{"a": 1}], dtype=object), "holds Python objects"),
    ],
)
def test_bad_feeds_are_one_line(bundle, tmp_path, content, fragment):
    line = one_error(run_cli("run", str(bundle), "--feed", _feed(tmp_path, content)), 2, fragment)
    assert "allow_pickle" not in line


def test_npy_header_claiming_a_terabyte_is_refused_unread(bundle, tmp_path):
    path = tmp_path / "x.npy"
    with open(path, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, {"descr": "<f4", "fortran_order": False, "shape": (10**12, 4)})
        fh.write(b"\0" * 64)
    one_error(run_cli("run", str(bundle), "--feed", f"x={path}"), 2, "is truncated")


def test_npz_and_missing_feeds(bundle, tmp_path):
    np.savez(tmp_path / "two.npz", a=np.ones(2), b=np.ones(2))
    one_error(run_cli("run", str(bundle), "--feed", f"x={tmp_path / 'two.npz'}"), 2, "several arrays")
    one_error(run_cli("run", str(bundle), "--feed", f"x={tmp_path / 'nope.npy'}"), 2, "does not exist")
    one_error(run_cli("run", str(bundle), "--feed", "x=" + str(tmp_path)), 2, "is a directory")
    np.save(tmp_path / "y.npy", np.ones((2, 4), np.float32))
    one_error(run_cli("run", str(bundle), "--feed", f"y={tmp_path / 'y.npy'}"), 2, "no input 'y'")


def test_save_onto_a_directory_is_refused_and_the_directory_kept(bundle, tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    one_error(run_cli("run", str(bundle), "--save", str(tmp_path)), 2, "is a directory")
    assert (tmp_path / "keep.txt").read_text() == "mine"


@pytest.mark.parametrize("content", [b"", b"not onnx at all", b"\x08\x07\x12\x05hello" * 3])
def test_files_that_are_not_onnx(tmp_path, content):
    path = tmp_path / "model.onnx"
    path.write_bytes(content)
    for command in ("run", "graph"):
        one_error(run_cli(command, str(path)), 2)
    proc = run_cli("doctor", str(path))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


# -- tampered bundles: refused with exit 2, nothing outside the bundle read --------------------------


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        (lambda m: m.pop("files"), "'files' (the sha256 of every file) is missing"),
        (lambda m: m["files"].pop("model.onnx"), "model.onnx is not listed in 'files'"),
        (lambda m: m["files"].update({"../other/model.onnx": m["files"]["model.onnx"]}), "not a plain name"),
        (lambda m: m["files"]["model.onnx"].pop("sha256"), "has no valid sha256"),
        (lambda m: m.update(inputs="garbage"), "'inputs' is not a non-empty list"),
        (lambda m: m["inputs"][0].update(dtype="complex256"), "unknown dtype"),
        (lambda m: m["inputs"][0]["dims"].__setitem__(1, 0), "dimension 0"),
        (lambda m: m.update(surprise=1), "unknown field 'surprise'"),
        (lambda m: m["parity"].update(atol=-1), "parity atol -1"),
    ],
)
def test_tampered_manifest_is_refused(copy, change, fragment):
    edit_manifest(copy, change)
    for command in ("run", "verify"):
        one_error(run_cli(command, str(copy)), 2, "is malformed", fragment)


def test_manifest_with_nan_or_not_json(copy):
    path = copy / "modelport.json"
    path.write_text(path.read_text().replace('"atol": 0.0001', '"atol": NaN'))
    one_error(run_cli("run", str(copy)), 2, "is not valid JSON", "NaN is not JSON")
    path.write_text("{ half a manifest")
    one_error(run_cli("run", str(copy)), 2, "is not valid JSON")


def test_swapped_model_file_is_caught_by_its_sha256(copy, tmp_path):
    other = tmp_path / "other"
    proc = run_cli("export", f"{ZOO}:dynamic_cnn", "--input", "x:1,3,8,8", "-o", str(other))
    assert proc.returncode == 0, proc.stderr
    shutil.copy(other / "model.onnx", copy / "model.onnx")
    one_error(run_cli("run", str(copy)), 2, "model.onnx changed since export")


def test_written_manifests_are_strict_json(bundle):
    text = (bundle / "modelport.json").read_text()
    json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} in the manifest"))


# -- verify never runs code the user did not name ---------------------------------------------------


def test_verify_refuses_a_source_shipped_inside_the_bundle(copy, tmp_path):
    marker = tmp_path / "pwned"
    evil = copy / "evil.py"
    evil.write_text(f"import pathlib\npathlib.Path({str(marker)!r}).touch()\ndef make():\n    return None\n")
    from modelport.bundle import sha256

    edit_manifest(copy, lambda m: m["source"].update(model=f"{evil}:make", sha256=sha256(evil)))
    one_error(run_cli("verify", str(copy)), 2, "will not run code shipped inside a bundle", "--model")
    assert not marker.exists()


def test_verify_refuses_a_source_file_changed_since_export(tmp_path):
    source = tmp_path / "mymodel.py"
    shutil.copy(ROOT / "tests" / "models" / "zoo.py", source)
    out = tmp_path / "b"
    assert run_cli("export", f"{source}:multi_output", *SPEC, "-o", str(out)).returncode == 0
    marker = tmp_path / "pwned"
    source.write_text(source.read_text() + f"\nimport pathlib\npathlib.Path({str(marker)!r}).touch()\n")
    one_error(run_cli("verify", str(out)), 2, "changed since the export (sha256 differs)", "--model")
    assert not marker.exists()
    proc = run_cli("verify", str(out), "--model", f"{ZOO}:multi_output")  # the user's explicit choice
    assert proc.returncode == 0, proc.stderr


def test_verify_says_which_file_it_imports(bundle):
    proc = run_cli("verify", str(bundle))
    assert proc.returncode == 0, proc.stderr
    assert "importing " + str(ROOT / "tests" / "models" / "zoo.py") in proc.stderr


def test_verify_refuses_a_manifest_without_a_source_digest(copy):
    edit_manifest(copy, lambda m: m["source"].pop("sha256"))
    one_error(run_cli("verify", str(copy)), 2, "records no sha256 for its source")


# -- bench and graph --------------------------------------------------------------------------------


def test_bench_and_graph_on_missing_paths(tmp_path):
    one_error(run_cli("bench", str(tmp_path / "nope")), 2)
    one_error(run_cli("graph", str(tmp_path / "nope.onnx")), 2, "does not exist")


def test_bench_with_an_unknown_backend(bundle):
    one_error(run_cli("bench", str(bundle), "--backends", "warp-drive"), 2, "warp-drive")
