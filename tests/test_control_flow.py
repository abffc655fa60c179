"""The scenarios plain torch.onnx.export gets silently wrong: each ends correct or refused with a place."""

import json
from collections import Counter

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from modelport.errors import CaptureError
from modelport.exporting import export
from modelport.spec import parse_dim, parse_input
from tests.conftest import error_lines, run_cli
from tests.models.control_flow import SCENARIOS, build

CF = "tests.models.control_flow"

# feeds that take each side of the scenario's branch or loop, checked with plain onnxruntime
OTHER_SIDE = {
    "attribute_branch": [{"x": np.ones((3, 4))}],
    "bool_arg_branch": [
        {"x": np.ones((2, 4)), "flag": np.array(True)},
        {"x": np.ones((5, 4)), "flag": np.array(False)},
    ],
    "data_branch_same_shape": [{"x": np.ones((2, 4))}, {"x": -np.ones((3, 4))}],
    "data_branch_other_shape": [{"x": np.ones((2, 4))}, {"x": -np.ones((3, 4))}],
    "range_loop": [{"x": np.ones((2, 4)), "n": np.array(k, np.int64)} for k in (0, 1, 4)],
    "while_loop": [{"x": np.full((2, 4), 0.01)}, {"x": np.full((2, 4), 50.0)}],
    "calls_scripted": [{"x": np.ones((2, 4)), "n": np.array(k, np.int64)} for k in (0, 3)],
    "dim_branch": [{"x": np.ones((2, 10))}, {"x": np.ones((2, 50))}],
    "cond_model": [{"x": np.ones((2, 4))}, {"x": -np.ones((2, 4))}],
    "while_loop_op": [{"x": np.ones((2, 4))}],
}
KEEPS = {
    "bool_arg_branch": "If",
    "data_branch_same_shape": "If",
    "data_branch_other_shape": "If",
    "range_loop": "Loop",
    "while_loop": "Loop",
    "calls_scripted": "Loop",
    "dim_branch": "If",
    "cond_model": "If",
    "while_loop_op": "Loop",
}


def scenario_export(name, tmp_path, exporter="auto"):
    _, inputs, dims = SCENARIOS[name]
    return export(
        f"{CF}:{name}",
        tmp_path / name,
        [parse_input(i) for i in inputs],
        [parse_dim(d) for d in dims],
        exporter=exporter,
    )


def assert_answers_right(name, model_path, feeds):
    sess = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    model = build(name)
    for feed in feeds:
        feed = {k: v.astype(np.float32) if v.dtype == np.float64 else v for k, v in feed.items()}
        (got,) = sess.run(None, feed)
        want = model(*(torch.from_numpy(np.array(v)) for v in feed.values())).detach().numpy()
        assert got.shape == want.shape, (name, feed)
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_scenario_exports_correctly_with_auto(name, tmp_path):
    result = scenario_export(name, tmp_path)
    assert result.parity.passed
    assert_answers_right(name, result.bundle.model_path, OTHER_SIDE[name])
    ops = Counter(n.op_type for n in onnx.load(str(result.bundle.model_path)).graph.node)
    if name in KEEPS:
        assert ops[KEEPS[name]] >= 1, ops
    else:
        assert ops["If"] == 0 and ops["Loop"] == 0


def test_traced_model_calling_a_scripted_function_keeps_its_loop(tmp_path):
    result = scenario_export("calls_scripted", tmp_path, exporter="trace")
    assert result.bundle.manifest["capture"]["strategy"] == "trace"
    assert_answers_right("calls_scripted", result.bundle.model_path, OTHER_SIDE["calls_scripted"])


@pytest.mark.parametrize(
    ("name", "line"),
    [
        ("data_branch_same_shape", "if x.sum() > 0:"),
        ("range_loop", "for _ in range(int(n)):"),
        ("bool_arg_branch", "if flag:"),
    ],
)
def test_trace_alone_refuses_frozen_control_flow_with_its_place(name, line, tmp_path):
    with pytest.raises(CaptureError) as info:
        scenario_export(name, tmp_path, exporter="trace")
    assert "frozen control flow at control_flow.py:" in str(info.value) and line in str(info.value)
    assert info.value.exit_code == 1 and not (tmp_path / name).exists()


def test_dynamo_alone_refuses_data_dependent_branch_with_place_and_fix(tmp_path):
    with pytest.raises(CaptureError) as info:
        scenario_export("data_branch_same_shape", tmp_path, exporter="dynamo")
    message = str(info.value)
    assert "data-dependent control flow at control_flow.py:31: if x.sum() > 0:" in message
    assert "torch.cond" in message and "--exporter script" in message


def test_dynamo_alone_refuses_a_branch_on_a_dynamic_dimension(tmp_path):
    with pytest.raises(CaptureError, match="does not work at every size declared dynamic.*len = Dim"):
        scenario_export("dim_branch", tmp_path, exporter="dynamo")


@pytest.mark.slow
def test_export_json_lists_every_attempt_with_its_reason(tmp_path):
    proc = run_cli(
        "export", f"{CF}:data_branch_same_shape", "--input", "x:batch,4", "-o", str(tmp_path / "b"), "--json"
    )
    assert proc.returncode == 0, proc.stderr
    attempts = json.loads(proc.stdout)["attempts"]
    assert [(a["strategy"], a["outcome"]) for a in attempts] == [
        ("dynamo-nonstrict", "failed to capture"),
        ("dynamo-strict", "failed to capture"),
        ("script", "exported"),
    ]
    assert all("control_flow.py:31" in a["reason"] for a in attempts[:2])
    assert all(a["seconds"] > 0 for a in attempts)


@pytest.mark.slow
def test_refusal_through_the_cli_is_one_line_exit_1(tmp_path):
    proc = run_cli(
        "export", f"{CF}:while_loop", "--input", "x:batch,4", "--exporter", "trace", "-o", str(tmp_path / "b")
    )
    assert proc.returncode == 1
    (line,) = error_lines(proc)
    assert "frozen control flow at control_flow.py:" in line and "while x.abs().sum() < c:" in line
