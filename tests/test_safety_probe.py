"""The second hostile corpus: what a probe found after the first was fixed, kept so it stays fixed.

Same contract as tests/test_safety.py: exit code class, one line, no traceback, nothing lost, nothing run
from a file the user did not name as code, no run without an end.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from tests.conftest import SPEC, ZOO, edit_manifest, one_error, run_cli, subprocess_env

pytestmark = pytest.mark.slow


def endless_loop_model(path: Path) -> Path:
    """An ONNX Loop whose condition never turns false and whose trip count is the largest int64."""
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]), helper.make_node("Add", ["v_in", "one"], ["v_out"])],
        "body",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
            helper.make_tensor_value_info("v_in", TensorProto.FLOAT, [1]),
        ],
        [
            helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("v_out", TensorProto.FLOAT, [1]),
        ],
        [helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0])],
    )
    graph = helper.make_graph(
        [helper.make_node("Loop", ["trips", "cond", "x"], ["y"], body=body)],
        "endless",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
        [
            helper.make_tensor("trips", TensorProto.INT64, [], [2**63 - 1]),
            helper.make_tensor("cond", TensorProto.BOOL, [], [True]),
        ],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


# -- code named by a bundle is never run ---------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [["run", "--backend", "torch"], ["bench", "--backends", "ort:cpu", "--min-runs", "2", "--min-seconds", "0.05"]],
)
def test_torch_backends_and_bench_check_the_recorded_source_too(copy, tmp_path, command):
    marker = tmp_path / "pwned"
    evil = copy / "evil.py"
    evil.write_text(f"import pathlib\npathlib.Path({str(marker)!r}).touch()\ndef f():\n    return None\n")
    edit_manifest(copy, lambda m: m["source"].update(model=f"{evil}:f", sha256=None))
    one_error(run_cli(command[0], str(copy), *command[1:]), 2, "--model")
    assert not marker.exists()


@pytest.mark.parametrize("ref", ["os:abort", "http.server:test", "pdb:set_trace"])
def test_a_recorded_source_from_python_or_an_installed_package_is_refused(copy, ref):
    from modelport.bundle import sha256
    from modelport.sources.recorded import source_file

    origin = source_file(ref)  # a file of Python's own: anyone can compute its sha256
    edit_manifest(copy, lambda m: m["source"].update(model=ref, sha256=sha256(origin)))
    for command in (["verify"], ["run", "--backend", "torch"]):
        one_error(run_cli(command[0], str(copy), *command[1:]), 2, "part of Python or an installed package")


def test_bench_report_does_not_replace_a_png_it_did_not_write(bundle, tmp_path):
    photo = tmp_path / "photo.png"
    photo.write_bytes(b"my holiday")
    proc = run_cli("bench", str(bundle), "--backends", "ort:cpu", "--min-runs", "2", "--min-seconds", "0.05",
                   "--report", str(tmp_path / "photo.md"))  # fmt: skip
    one_error(proc, 2, "refusing to replace it")
    assert photo.read_bytes() == b"my holiday"


def test_a_relative_recorded_source_is_refused(copy, tmp_path):
    marker = tmp_path / "pwned"
    (tmp_path / "helper.py").write_text(f"import pathlib\npathlib.Path({str(marker)!r}).touch()\n")
    from modelport.bundle import sha256

    edit_manifest(copy, lambda m: m["source"].update(model="helper.py:f", sha256=sha256(tmp_path / "helper.py")))
    one_error(run_cli("verify", str(copy), cwd=tmp_path), 2, "relative source path")
    assert not marker.exists()


# -- nothing of the user's is lost --------------------------------------------------------------------


@pytest.mark.parametrize("files", [{"thesis.tex": {}, "data.csv": {}}, "ab"])
def test_a_fake_manifest_listing_the_users_files_does_not_make_them_replaceable(tmp_path, files):
    target = tmp_path / "u"
    target.mkdir()
    for name in ("thesis.tex", "data.csv", "a", "b"):
        (target / name).write_text("mine")
    (target / "modelport.json").write_text(json.dumps({"files": files}))
    one_error(run_cli("export", f"{ZOO}:multi_output", *SPEC, "-o", str(target)), 2, "refusing to replace it")
    assert all((target / n).read_text() == "mine" for n in ("thesis.tex", "data.csv", "a", "b"))


def test_save_onto_a_fifo_leaves_it_alone(bundle, tmp_path):
    fifo = tmp_path / "pipe.npz"
    os.mkfifo(fifo)
    one_error(run_cli("run", str(bundle), "--save", str(fifo)), 2, "not a regular file")
    assert fifo.exists() and not fifo.is_file()


# -- answers are right or refused --------------------------------------------------------------------


def test_a_big_endian_feed_gives_the_same_answer(bundle, tmp_path):
    x = np.linspace(-1, 1, 8, dtype=np.float32).reshape(2, 4)
    np.save(tmp_path / "le.npy", x)
    np.save(tmp_path / "be.npy", x.astype(">f4"))
    for kind in ("le", "be"):
        proc = run_cli(
            "run",
            str(bundle / "model.onnx"),
            "--feed",
            f"x={tmp_path / kind}.npy",
            "--save",
            str(tmp_path / f"{kind}.npz"),
        )
        assert proc.returncode == 0, proc.stderr
    little, big = np.load(tmp_path / "le.npz"), np.load(tmp_path / "be.npz")
    for name in little.files:
        np.testing.assert_array_equal(little[name], big[name])


# -- every run ends ---------------------------------------------------------------------------------


def test_an_endless_onnx_loop_is_stopped_by_the_run_timeout(tmp_path):
    model = endless_loop_model(tmp_path / "endless.onnx")
    np.save(tmp_path / "x.npy", np.zeros(1, np.float32))
    start = time.monotonic()
    proc = run_cli("run", str(model), "--feed", f"x={tmp_path / 'x.npy'}", "--timeout", "1")
    one_error(proc, 1, "did not finish in 1 s")
    assert time.monotonic() - start < 60


def test_ctrl_c_stops_an_endless_onnx_run(tmp_path):
    model = endless_loop_model(tmp_path / "endless.onnx")
    np.save(tmp_path / "x.npy", np.zeros(1, np.float32))
    env = subprocess_env()
    proc = subprocess.Popen(
        [sys.executable, "-m", "modelport", "run", str(model), "--feed", f"x={tmp_path / 'x.npy'}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        time.sleep(8)  # imports, session creation, then the loop
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)
    finally:
        proc.kill()  # never leave an endless run behind, whatever happened
    assert proc.returncode == 130, stderr
    assert stderr.strip().splitlines()[-1] == "interrupted; nothing was written"


def test_a_model_file_that_is_a_fifo_is_refused_unread(tmp_path):
    fifo = tmp_path / "model.py"
    os.mkfifo(fifo)
    one_error(run_cli("export", f"{fifo}:f", *SPEC, "-o", str(tmp_path / "b")), 2, "not a regular file")


def test_a_thread_left_running_by_the_users_code_does_not_keep_modelport_alive(tmp_path):
    model = tmp_path / "threads.py"
    model.write_text(
        "import threading, time, torch\n"
        "threading.Thread(target=lambda: time.sleep(3600)).start()\n"
        "def f():\n    return torch.nn.Linear(4, 3)\n"
    )
    proc = run_cli("export", f"{model}:f", *SPEC, "-o", str(tmp_path / "b"))
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "b" / "model.onnx").is_file()


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_bench_with_endless_seconds_is_refused(bundle, value):
    one_error(run_cli("bench", str(bundle), "--backends", "ort:cpu", "--min-seconds", value), 2, "finite")


# -- one line and the right class, never exit 3 ------------------------------------------------------


def test_a_deeply_nested_manifest(copy):
    (copy / "modelport.json").write_text("[" * 100000 + "]" * 100000)
    one_error(run_cli("run", str(copy)), 2, "not valid JSON")


def test_a_manifest_with_astronomical_sizes(copy):
    edit_manifest(copy, lambda m: m["inputs"][0]["dims"][0].update(opt=10**40, max=10**40))
    one_error(run_cli("run", str(copy)), 2, "is malformed")


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ("import sys\nsys.exit(5)\n", "raised SystemExit"),
        ("def f():\n    raise SystemExit('bye from user')\n", "raised SystemExit"),
        ("class Odd(BaseException):\n    pass\ndef f():\n    raise Odd()\n", "raised Odd"),
        (
            "import torch\nclass N(torch.nn.Module):\n    def forward(self, x):\n        return None\n"
            "def f():\n    return N()\n",
            "returned no tensors",
        ),
    ],
)
def test_user_code_that_exits_or_returns_nothing(tmp_path, body, fragment):
    (tmp_path / "m.py").write_text(body)
    one_error(run_cli("export", f"{tmp_path / 'm.py'}:f", *SPEC, "-o", str(tmp_path / "b")), 2, fragment)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--input", "x:batch,4:float32:-3e38..3e38"], "within"),
        ([*SPEC, "--verify-timeout", "nan"], "--verify-timeout nan is not a number of seconds"),
        ([*SPEC, "--verify-timeout", "0"], "--verify-timeout 0.0 is not a number of seconds"),
    ],
)
def test_ranges_and_deadlines_that_cannot_work(tmp_path, args, fragment):
    one_error(run_cli("export", f"{ZOO}:multi_output", *args, "-o", str(tmp_path / "b")), 2, fragment)


def test_run_options_that_cannot_work(bundle, tmp_path):
    np.save(tmp_path / "x.npy", np.ones((2, 4), np.float32))
    feed = f"x={tmp_path / 'x.npy'}"
    one_error(run_cli("run", str(bundle), "--feed", feed, "--feed", feed), 2, "--feed x is given twice")
    one_error(run_cli("run", str(bundle), "--threads", "100000"), 2, "more than 4x")


def test_doctor_on_a_weight_that_lies_about_its_shape(tmp_path):
    weight = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[100000, 100000])  # and no data
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "w"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [100000, 100000])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [100000, 100000])],
        [weight],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "m.onnx")
    proc = run_cli("doctor", str(tmp_path / "m.onnx"))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "hold fewer or more values than their shape says" in proc.stdout


@pytest.mark.hf
def test_an_hf_folder_with_custom_code_is_refused_without_asking(tmp_path):
    transformers = pytest.importorskip("transformers")
    folder = tmp_path / "hf"
    config = transformers.BertConfig(
        vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32
    )
    transformers.BertModel(config).save_pretrained(folder)
    marker = tmp_path / "pwned"
    (folder / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\nfrom transformers import BertConfig\n")
    data = json.loads((folder / "config.json").read_text())
    data.update(model_type="evilbert", architectures=["EvilModel"], auto_map={"AutoConfig": "evil.EvilConfig"})
    (folder / "config.json").write_text(json.dumps(data))
    proc = subprocess.run(  # a terminal would be asked "Do you wish to run the custom code? [y/N]"
        [sys.executable, "-m", "modelport", "export", f"hf:{folder}", "-o", str(tmp_path / "b")],
        input="y\n",
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=300,
    )
    one_error(proc, 2, "contains custom code")
    assert not marker.exists()
