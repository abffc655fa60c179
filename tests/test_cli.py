"""The command line end to end, through a subprocess: exit codes and one-line errors."""

import json
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import ROOT, ZOO, error_lines, run_cli, subprocess_env, zoo_cli_args

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def two_inputs_bundle(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "two"
    proc = run_cli("export", *zoo_cli_args("two_inputs"), "-o", str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    return out, json.loads(proc.stdout)


def test_export_json_lists_attempts_and_parity(two_inputs_bundle):
    _, payload = two_inputs_bundle
    assert payload["ok"] is True and payload["strategy"] == "dynamo-nonstrict"
    assert payload["attempts"][0]["outcome"] == "exported" and payload["parity"]["passed"]
    assert [i["name"] for i in payload["inputs"]] == ["tokens", "image"]


def test_verify_passes_on_a_good_bundle(two_inputs_bundle):
    out, _ = two_inputs_bundle
    proc = run_cli("verify", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "parity: PASS" in proc.stdout


def test_run_with_feeds_and_save(two_inputs_bundle, tmp_path):
    out, _ = two_inputs_bundle
    np.save(tmp_path / "tokens.npy", np.arange(12, dtype=np.int64).reshape(3, 4) % 50)
    np.save(tmp_path / "image.npy", np.ones((5, 2, 6), np.float32))
    proc = run_cli(
        "run",
        str(out),
        "--feed",
        f"tokens={tmp_path / 'tokens.npy'}",
        "--feed",
        f"image={tmp_path / 'image.npy'}",
        "--save",
        str(tmp_path / "out.npz"),
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    (stats,) = json.loads(proc.stdout)["outputs"]
    assert stats["shape"] == [5, 3]
    assert np.load(tmp_path / "out.npz")["output"].shape == (5, 3)


@pytest.mark.parametrize(
    ("feeds", "message"),
    [
        (
            {"tokens": np.zeros((3, 4), np.int32), "image": np.ones((5, 2, 6), np.float32)},
            "input 'tokens' is int32, the model expects int64",
        ),
        (
            {"tokenz": np.zeros((3, 4), np.int64), "image": np.ones((5, 2, 6), np.float32)},
            "the model has no input 'tokenz' — inputs are tokens, image (did you mean 'tokens'?)",
        ),
        ({"image": np.ones((5, 2, 6), np.float32)}, "no feed for input(s) tokens"),
        (
            {"tokens": np.zeros((3, 4), np.int64), "image": np.ones((5, 2, 7), np.float32)},
            "input 'image' axis 2 is 7, the model was exported with it fixed to 6",
        ),
        (
            {"tokens": np.zeros((3,), np.int64), "image": np.ones((5, 2, 6), np.float32)},
            "input 'tokens' has shape [3], the model expects rank 2",
        ),
    ],
)
def test_run_with_a_wrong_feed_is_one_line_exit_2(two_inputs_bundle, tmp_path, feeds, message):
    out, _ = two_inputs_bundle
    args = []
    for name, array in feeds.items():
        np.save(tmp_path / f"{name}.npy", array)
        args += ["--feed", f"{name}={tmp_path / name}.npy"]
    proc = run_cli("run", str(out), *args)
    assert proc.returncode == 2
    assert error_lines(proc) == [error_lines(proc)[0]] and message in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["export", f"{ZOO}:two_inputs", "--input", "x:batch:float99", "-o", "OUT"], "unknown dtype 'float99'"),
        (
            ["export", f"{ZOO}:multi_output", "--input", "x:batch,4", "--dim", "batch", "-o", "OUT"],
            "bad --dim 'batch' — expected NAME=MIN..MAX[@OPT]",
        ),
        (
            ["export", "nowhere/model.py:build", "--input", "x:2", "-o", "OUT"],
            "model file 'nowhere/model.py' does not exist",
        ),
        (["export", f"{ZOO}:missing_factory", "--input", "x:2", "-o", "OUT"], "has no callable 'missing_factory'"),
        (["export", f"{ZOO}:not_a_module", "--input", "x:2", "-o", "OUT"], "returned str, not a torch.nn.Module"),
        (["export", "model.onnx", "--input", "x:2", "-o", "OUT"], "cannot tell what kind of model 'model.onnx' is"),
        (["export", f"{ZOO}:multi_output", "-o", "OUT"], "does not say what inputs it takes"),
        (
            ["export", f"{ZOO}:multi_output", "--input", "x:batch,4", "--exporter", "magic", "-o", "OUT"],
            "unknown exporter 'magic'",
        ),
        (["verify", "NOWHERE"], "bundle 'NOWHERE' does not exist"),
        (["run", "NOWHERE", "--feed", "x=a.npy"], "bundle 'NOWHERE' does not exist"),
    ],
)
def test_bad_input_is_one_line_exit_2(tmp_path, args, message):
    args = [a.replace("OUT", str(tmp_path / "out")).replace("NOWHERE", str(tmp_path / "nowhere")) for a in args]
    message = message.replace("NOWHERE", str(tmp_path / "nowhere"))
    proc = run_cli(*args)
    assert proc.returncode == 2, proc.stderr
    lines = error_lines(proc)
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]
    assert not (tmp_path / "out").exists()


def test_unreadable_bundle_is_one_line_exit_2(tmp_path):
    bundle = tmp_path / "b"
    bundle.mkdir()
    (bundle / "modelport.json").write_text("{ not json")
    proc = run_cli("verify", str(bundle))
    assert proc.returncode == 2 and len(error_lines(proc)) == 1 and "is not valid JSON" in proc.stderr


def test_tampered_bundle_is_detected(two_inputs_bundle, tmp_path):
    import shutil

    out, _ = two_inputs_bundle
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    with open(copy / "model.onnx", "ab") as fh:
        fh.write(b"\0")
    proc = run_cli("verify", str(copy))
    assert proc.returncode == 2 and "bundle file model.onnx changed since export (sha256 differs)" in proc.stderr


def test_bool_model_traced_is_refused_with_exit_1_and_one_line(tmp_path):
    proc = run_cli("export", *zoo_cli_args("bool_flag"), "--exporter", "trace", "-o", str(tmp_path / "out"))
    assert proc.returncode == 1
    lines = error_lines(proc)
    assert len(lines) == 1 and "if flag:" in lines[0] and "zoo.py:" in lines[0]
    assert not (tmp_path / "out").exists()


def test_parity_failure_exit_1_names_feed_and_output(tmp_path):
    proc = run_cli("export", *zoo_cli_args("exports_wrong"), "-o", str(tmp_path / "out"), "--json")
    assert proc.returncode == 1
    payload = json.loads(proc.stdout)
    assert payload["ok"] is False and "output 'output'" in payload["error"] and "feed '" in payload["error"]
    outcomes = [a["outcome"] for a in payload["attempts"]]
    assert len(outcomes) == 5 and "exported" not in outcomes and "failed verification" in outcomes


def test_debug_shows_the_traceback(tmp_path):
    proc = run_cli("export", f"{ZOO}:not_a_module", "--input", "x:2", "-o", str(tmp_path / "o"), "--debug")
    assert proc.returncode == 2 and "Traceback" in proc.stderr


# the commands of the CLI contract (DESIGN.md): users' scripts call them by these names
CONTRACT = {"export", "import", "upgrade", "verify", "run", "doctor", "graph", "optimize", "bench", "generate",
            "serve", "triton", "batch"}  # fmt: skip
# what `--help` must not pay for: each takes from a few hundred ms (onnx_ir with sympy) to seconds (torch)
HEAVY = {"torch", "onnxruntime", "openvino", "tensorrt", "transformers", "onnxscript"}
LAZY_TOO = {"onnx_ir", "sympy"}


def help_imports() -> tuple[set[str], subprocess.CompletedProcess[str]]:
    """`modelport --help` under `python -X importtime`: the top-level packages it imported, and the process."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "modelport", "--help"],
        capture_output=True, text=True, cwd=ROOT, env=subprocess_env(), timeout=120,
    )  # fmt: skip
    imported = {
        line.rsplit("|", 1)[-1].strip().split(".")[0]
        for line in proc.stderr.splitlines()
        if line.startswith("import time:")
    }
    return imported, proc


def test_help_lists_the_commands_without_importing_torch_or_a_runtime():
    imported, proc = help_imports()
    assert proc.returncode == 0, proc.stderr[-2000:]
    listed = {line.split()[0] for line in proc.stdout.split("Commands:")[1].splitlines() if line.strip()}
    assert CONTRACT <= listed, CONTRACT - listed
    assert "modelport" in imported and not imported & HEAVY, sorted(imported & HEAVY)


def test_help_does_not_import_the_graph_library_either():
    imported, proc = help_imports()
    assert proc.returncode == 0 and not imported & LAZY_TOO, sorted(imported & LAZY_TOO)
