"""Real exports of the zoo, checked with plain onnxruntime sessions."""

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from modelport.bundle import MANIFEST, Bundle
from modelport.errors import CaptureError, GraphCheckError, ParityError, UsageError
from modelport.exporting import export
from modelport.verification.bundle import verify
from tests.conftest import ZOO, zoo_specs
from tests.models import zoo


def do_export(name, tmp_path, exporter="auto", **kw):
    inputs, dims = zoo_specs(name)
    return export(f"{ZOO}:{name}", tmp_path / name, inputs, dims, exporter=exporter, **kw)


def plain_ort(bundle_dir):
    return ort.InferenceSession(str(bundle_dir / "model.onnx"), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("exporter", ["dynamo", "trace"])
def test_two_inputs_with_independent_dims_answer_right_at_unseen_shapes(tmp_path, exporter):
    result = do_export("two_inputs", tmp_path, exporter)
    assert result.parity.passed
    sess = plain_ort(result.bundle.path)
    assert [i.name for i in sess.get_inputs()] == ["tokens", "image"]  # ONNX input names are the spec names
    model = zoo.two_inputs()
    rng = np.random.default_rng(7)
    for m, seq, n, patches in [(5, 11, 2, 4), (1, 3, 8, 1), (6, 2, 7, 5)]:
        tokens = rng.integers(0, 50, (m, seq)).astype(np.int64)
        image = rng.standard_normal((n, patches, 6)).astype(np.float32)
        (got,) = sess.run(None, {"tokens": tokens, "image": image})
        want = model(torch.from_numpy(image), torch.from_numpy(tokens)).detach().numpy()
        assert got.shape == (n, m)
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-4)


def test_dynamic_dims_are_symbolic_in_the_graph(tmp_path):
    result = do_export("dynamic_cnn", tmp_path, "dynamo")
    graph = onnx.load(str(result.bundle.model_path)).graph
    dims = graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param for d in dims] == ["batch", "", "h", "w"] and dims[1].dim_value == 3
    sess = plain_ort(result.bundle.path)
    x = np.random.default_rng(0).standard_normal((3, 3, 33, 21)).astype(np.float32)
    want = zoo.dynamic_cnn()(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(sess.run(None, {"x": x})[0], want, atol=1e-4, rtol=1e-3)


def test_verification_covers_min_max_and_more_than_the_example(tmp_path):
    result = do_export("dynamic_cnn", tmp_path, "dynamo")
    sizes = [r.sizes for r in result.parity.results]
    assert {"batch": 1, "h": 8, "w": 8} in sizes and {"batch": 4, "h": 40, "w": 40} in sizes
    assert {r.optimization for r in result.parity.results} == {"all", "disabled"}


def test_several_outputs_keep_their_names_and_dtypes(tmp_path):
    result = do_export("multi_output", tmp_path)
    outputs = result.bundle.manifest["outputs"]
    assert [o["name"] for o in outputs] == ["logits", "probs", "top"]
    assert [o["dtype"] for o in outputs] == ["float32", "float32", "int64"]


@pytest.mark.parametrize("exporter", ["dynamo", "trace"])
def test_bilinear_upsample_matches_pytorch(tmp_path, exporter):
    assert do_export("upsample", tmp_path, exporter).parity.passed


def test_model_left_in_training_mode_is_exported_in_eval_mode_and_says_so(tmp_path):
    result = do_export("left_in_training", tmp_path)
    assert any("training mode" in n and "Dropout" in n and "BatchNorm1d" in n for n in result.notes)
    sess = plain_ort(result.bundle.path)
    x = np.ones((4, 8), np.float32)
    first, second = sess.run(None, {"x": x})[0], sess.run(None, {"x": x})[0]
    np.testing.assert_array_equal(first, second)  # no live Dropout
    model = zoo.left_in_training().eval()
    np.testing.assert_allclose(first, model(torch.from_numpy(x)).detach().numpy(), atol=1e-5)


def test_forward_bool_stays_a_graph_input_and_both_values_answer_right(tmp_path):
    result = do_export("bool_flag", tmp_path)
    assert result.bundle.manifest["capture"]["strategy"] == "script"
    assert {"control=high", "control=low"} <= {r.feed.rsplit(" ", 1)[-1] for r in result.parity.results}
    sess = plain_ort(result.bundle.path)
    assert [i.name for i in sess.get_inputs()] == ["x", "flag"]
    x = np.ones((3, 3), np.float32)
    np.testing.assert_array_equal(sess.run(None, {"x": x, "flag": np.array(True)})[0], x * 2)
    np.testing.assert_array_equal(sess.run(None, {"x": x, "flag": np.array(False)})[0], x - 1)


def test_forward_bool_is_never_baked_in_by_tracing(tmp_path):
    with pytest.raises(CaptureError) as info:
        do_export("bool_flag", tmp_path, "trace")
    message = str(info.value)
    assert "trace: frozen control flow at zoo.py:" in message and "if flag:" in message
    assert info.value.exit_code == 1
    assert not (tmp_path / "bool_flag").exists()
    assert [a.outcome for a in info.value.attempts] == ["failed to capture", "failed to capture"]


def test_input_missing_from_graph_is_refused(tmp_path):
    with pytest.raises(GraphCheckError, match="input 'unused' is not in the exported graph"):
        do_export("ignores_input", tmp_path, "trace")


def test_wrong_answers_fail_and_leave_no_bundle(tmp_path):
    with pytest.raises(
        ParityError, match=r"disagrees with PyTorch on feed '.*' \(optimizations all\): output 'output': max abs diff"
    ) as info:
        do_export("exports_wrong", tmp_path, "dynamo")
    assert info.value.exit_code == 1
    assert not (tmp_path / "exports_wrong").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".exports_wrong")]  # no half-written staging dir


def test_keep_failed_writes_the_bundle_marked_failed(tmp_path):
    with pytest.raises(ParityError):
        do_export("exports_wrong", tmp_path, "dynamo", keep_failed=True)
    manifest = json.loads((tmp_path / "exports_wrong" / MANIFEST).read_text())
    assert manifest["status"] == "failed verification" and manifest["parity"]["passed"] is False


def test_manifest_records_what_a_user_needs(tmp_path):
    result = do_export("two_inputs", tmp_path)
    m = Bundle.open(result.bundle.path).manifest
    assert m["source"]["model"] == f"{ZOO}:two_inputs"
    assert m["opset"] == {"requested": 18, "actual": 18}
    assert m["capture"]["strategy"] == "dynamo-nonstrict" and m["capture"]["attempts"][0]["outcome"] == "exported"
    assert {"torch", "onnx", "onnxruntime"} <= set(m["versions"])
    assert set(m["files"]) == {"model.onnx"} and len(m["files"]["model.onnx"]["sha256"]) == 64
    assert m["parity"]["passed"] and m["parity"]["atol"] == 1e-4
    tokens = m["inputs"][0]
    assert tokens["dims"][0] == {"name": "m", "min": 1, "opt": tokens["dims"][0]["opt"], "max": 6}
    assert tokens["range"] == [0, 50]


def test_verify_rechecks_the_recorded_source(tmp_path):
    bundle = do_export("multi_output", tmp_path).bundle
    assert verify(bundle.path).passed
    with pytest.raises(ParityError):
        verify(bundle.path, model=f"{ZOO}:noisy")  # same signature, different model


def test_existing_bundle_is_replaced_and_other_directories_are_not(tmp_path):
    do_export("multi_output", tmp_path)
    do_export("multi_output", tmp_path)  # replacing a bundle is fine
    (tmp_path / "precious").mkdir()
    (tmp_path / "precious" / "notes.txt").write_text("mine")
    inputs, dims = zoo_specs("multi_output")
    with pytest.raises(UsageError, match="not a modelport bundle .it holds notes.txt.; refusing to replace it"):
        export(f"{ZOO}:multi_output", tmp_path / "precious", inputs, dims)
    assert (tmp_path / "precious" / "notes.txt").read_text() == "mine"


def test_opset_the_exporter_cannot_reach_is_refused_before_any_work(tmp_path):
    # torch.onnx writes at most opset 23; asking for 30 (or 999) is a usage error, not a failed export
    for opset in (30, 999, 3):
        with pytest.raises(UsageError, match=f"--opset {opset} is outside .* choose an opset from 7 to 23"):
            do_export("multi_output", tmp_path / "b", "dynamo", opset=opset)
    assert not (tmp_path / "b").exists()
