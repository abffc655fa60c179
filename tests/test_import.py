"""``modelport import``: any ONNX file becomes a checked bundle (ONNX Runtime against ONNX's reference
evaluator), and bench, verify, optimize, serve and triton take it — or a plain ``.onnx`` — as they take an
export. The keras/tf2onnx case is a hand-built graph with its habits: NHWC input named ``input_1:0``,
a batch dimension named ``unk__12``, a transpose to NCHW before the convolution."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import modelport
from modelport.errors import ModelFileError, ParityError
from tests.conftest import ROOT, one_error, run_cli


def keras_like(path: Path, opset: int = 13, external: bool = False) -> Path:
    """NHWC image -> Transpose -> Conv -> Relu -> GlobalAveragePool -> Flatten -> MatMul -> Softmax."""
    rng = np.random.default_rng(0)
    weights = [
        numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "conv/kernel"),
        numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "conv/bias"),
        numpy_helper.from_array(rng.standard_normal((4, 5)).astype(np.float32), "dense/kernel"),
    ]
    nodes = [
        helper.make_node("Transpose", ["input_1:0"], ["nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("Conv", ["nchw", "conv/kernel", "conv/bias"], ["conv"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["conv"], ["relu"]),
        helper.make_node("GlobalAveragePool", ["relu"], ["pool"]),
        helper.make_node("Flatten", ["pool"], ["flat"]),
        helper.make_node("MatMul", ["flat", "dense/kernel"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["dense/Softmax:0"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "tf2onnx",
        [helper.make_tensor_value_info("input_1:0", TensorProto.FLOAT, ["unk__12", 8, 8, 3])],
        [helper.make_tensor_value_info("dense/Softmax:0", TensorProto.FLOAT, ["unk__12", 5])],
        weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="tf2onnx")
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(model, str(path), save_as_external_data=external, all_tensors_to_one_file=True,
                    location="weights.bin", size_threshold=0)  # fmt: skip
    return path


def test_a_keras_like_file_imports_with_its_names_and_symbols(tmp_path):
    source = keras_like(tmp_path / "keras" / "model.onnx")
    result = modelport.import_onnx(source, tmp_path / "bundle", dims=["unk__12=1..4"])
    bundle = result.bundle
    assert bundle.manifest["status"] == "verified" and result.checked
    assert result.parity.reference == "ONNX's reference evaluator" and result.parity.passed
    assert bundle.imported and bundle.source is None  # no PyTorch behind it
    (spec,) = bundle.signature.inputs
    assert (spec.name, spec.dims, spec.dtype) == ("input_1:0", ("unk__12", 8, 8, 3), "float32")
    assert (bundle.signature.dims["unk__12"].min, bundle.signature.dims["unk__12"].max) == (1, 4)
    x = np.random.default_rng(1).standard_normal((3, 8, 8, 3)).astype(np.float32)
    got = modelport.run(bundle.path, {"input_1:0": x}).outputs["dense/Softmax:0"]
    np.testing.assert_allclose(got.sum(axis=1), np.ones(3), rtol=1e-5)
    reopened = modelport.Bundle.open(bundle.path)  # the tensor names pass the manifest's checks
    assert [s.name for s in reopened.signature.inputs] == ["input_1:0"]


def test_external_data_is_brought_inside_the_bundle(tmp_path):
    source = keras_like(tmp_path / "ext" / "model.onnx", external=True)
    assert (tmp_path / "ext" / "weights.bin").is_file()
    bundle = modelport.import_onnx(source, tmp_path / "bundle").bundle
    assert sorted(bundle.manifest["files"]) == ["model.onnx"]  # small weights: inside the graph itself
    (tmp_path / "ext" / "weights.bin").unlink()  # the bundle no longer needs the original's weights
    x = np.ones((2, 8, 8, 3), np.float32)
    assert modelport.run(bundle.path, {"input_1:0": x}).outputs["dense/Softmax:0"].shape == (2, 5)


def test_stated_defaults_for_ids_masks_and_unnamed_dims(tmp_path):
    table = numpy_helper.from_array(np.random.default_rng(0).standard_normal((50, 4)).astype(np.float32), "emb")
    graph = helper.make_graph(
        [
            helper.make_node("Gather", ["emb", "ids"], ["vectors"]),
            helper.make_node("Cast", ["attention_mask"], ["maskf"], to=TensorProto.FLOAT),
            helper.make_node("Unsqueeze", ["maskf", "axis"], ["mask3"]),
            helper.make_node("Mul", ["vectors", "mask3"], ["out"]),
        ],
        "ids",
        [
            helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", None]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", None]),
        ],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", None, 4])],
        [table, numpy_helper.from_array(np.array([2], np.int64), "axis")],
    )
    path = tmp_path / "ids.onnx"
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    result = modelport.import_onnx(path, tmp_path / "bundle")
    specs = {s.name: s for s in result.bundle.signature.inputs}
    assert (specs["ids"].low, specs["ids"].high) == (0, 50)  # the table's rows: never an id it lacks
    assert (specs["attention_mask"].low, specs["attention_mask"].high) == (0, 2)
    assert specs["ids"].dims == ("batch", "ids_1") and specs["attention_mask"].dims == ("batch", "attention_mask_1")
    text = "\n".join(result.notes)
    assert "indexes a 50-row table" in text and "padding mask" in text
    assert "'ids_1' ('ids' axis 1) assumed 1..32 (--dim ids_1=MIN..MAX to change)" in text


def test_a_graph_the_reference_evaluator_cannot_run_is_imported_unchecked_and_says_so(tmp_path):
    graph = helper.make_graph(
        [helper.make_node("Gelu", ["x"], ["y"], domain="com.microsoft")],
        "contrib",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4])],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    )
    path = tmp_path / "contrib.onnx"
    onnx.save_model(model, str(path))
    result = modelport.import_onnx(path, tmp_path / "bundle")
    assert result.bundle.manifest["status"] == "imported" and not result.checked
    assert "not checked against an independent implementation" in result.notes[-1]
    assert "Gelu" in result.notes[-1]


def test_a_file_doctor_rejects_is_refused_with_the_finding_and_nothing_written(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(b"\x08\x07this is not a protobuf of a model" * 4)
    with pytest.raises(ModelFileError, match="not a readable ONNX model"):
        modelport.import_onnx(path, tmp_path / "bundle")
    old = next(Path(onnx.__file__).parent.glob("backend/test/data/pytorch-converted/test_AvgPool2d/model.onnx"))
    proc = run_cli("import", str(old), "-o", str(tmp_path / "bundle"))
    one_error(proc, 2, "cannot be imported", "AveragePool")
    assert not (tmp_path / "bundle").exists()


def test_a_disagreement_refuses_the_import(tmp_path, monkeypatch):
    """The reference evaluator stands for the truth; when ONNX Runtime disagrees, nothing is written."""
    from modelport.ingest import evaluator

    real = evaluator.OnnxReference.__init__

    def skewed(self, *args, **kwargs):
        real(self, *args, **kwargs)
        self.answers = [[(name, array + 1.0) for name, array in answer] for answer in self.answers]

    monkeypatch.setattr(evaluator.OnnxReference, "__init__", skewed)
    with pytest.raises(ParityError, match="disagrees with ONNX's reference evaluator"):
        modelport.import_onnx(keras_like(tmp_path / "m.onnx"), tmp_path / "bundle")
    assert not (tmp_path / "bundle").exists()


def test_verify_bench_and_triton_take_the_imported_bundle_and_the_plain_file(tmp_path):
    source = keras_like(tmp_path / "model.onnx")
    report = modelport.verify(source)  # a plain file: imported on the fly
    assert report.passed and report.reference == "ONNX's reference evaluator"
    bundle = modelport.import_onnx(source, tmp_path / "bundle", dims=["unk__12=1..4"]).bundle
    again = modelport.verify(bundle.path)
    assert again.passed and again.reference == "ONNX's reference evaluator"
    result = modelport.bench(source, ["ort:cpu", "ort:cpu@disabled"], min_runs=2, min_seconds=0.0, warmup=1)
    assert {r["backend"] for r in result.records} == {"ort:cpu", "ort:cpu@disabled"}
    assert all(r["cosine"] > 0.9999 for r in result.records)  # against ort:cpu, checked at import
    assert any("imported from ONNX" in n for n in result.notes)
    from modelport.scale.triton import triton_repository

    (model,) = triton_repository([f"keras={source}"], tmp_path / "repo")
    assert model.config.max_batch_size == 32 and [list(i.dims) for i in model.config.input] == [[8, 8, 3]]


@pytest.mark.slow
def test_import_bench_serve_on_a_file_modelport_did_not_export(tmp_path):
    """The issue's done-when, through the CLI: import, bench, then serve answers like run."""
    import tritonclient.http as th

    source = keras_like(tmp_path / "model.onnx")
    proc = run_cli("import", str(source), "-o", str(tmp_path / "bundle"), "--dim", "unk__12=1..8", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["status"] == "verified"
    proc = run_cli("bench", str(tmp_path / "bundle"), "--backends", "ort:cpu", "--min-runs", "3", "--min-seconds",
                   "0", "--json", str(tmp_path / "bench.json"))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    x = np.random.default_rng(3).standard_normal((2, 8, 8, 3)).astype(np.float32)
    want = modelport.run(tmp_path / "bundle", {"input_1:0": x}).outputs["dense/Softmax:0"]
    with modelport.serve([tmp_path / "bundle"], port=0, grpc_port=None, block=False) as server:
        client = th.InferenceServerClient(server.url.removeprefix("http://"))
        tensor = th.InferInput("input_1:0", [2, 8, 8, 3], "FP32")
        tensor.set_data_from_numpy(x)
        np.testing.assert_array_equal(client.infer("bundle", [tensor]).as_numpy("dense/Softmax:0"), want)
        client.close()


@pytest.mark.slow
def test_optimize_takes_a_plain_onnx_and_verify_holds_it_to_the_original(tmp_path):
    """The optimized bundle keeps its held-out feeds under the graph's own input names (``input_1:0``), and
    verify, with no PyTorch to ask, holds it to the original float file under the budget."""
    source = keras_like(tmp_path / "model.onnx")
    modelport.optimize(source, tmp_path / "opt", candidates=["onnx-fp32", "fused-fp32"])
    report = modelport.verify(tmp_path / "opt")
    assert report.passed and report.reference == "the original model.onnx"
    source.write_bytes(source.read_bytes() + b"\0")  # the original changed: nothing to hold it to
    with pytest.raises(modelport.UsageError, match="is gone or changed since"):
        modelport.verify(tmp_path / "opt")


TF_PYTHON = ROOT / "build" / "tf-env" / "bin" / "python"


@pytest.mark.slow
@pytest.mark.skipif(not TF_PYTHON.exists(), reason="no TensorFlow environment here: make tf-env")
def test_a_real_keras_model_exported_by_tf2onnx_imports_and_answers_like_keras(tmp_path):
    """tf2onnx's own habits (NHWC input, `unk__N` batch symbol, its op patterns), from a real Keras model:
    the import is verified against the reference evaluator and `run` answers what Keras answered."""
    import subprocess

    source = tmp_path / "keras.onnx"
    subprocess.run([str(TF_PYTHON), str(ROOT / "tests/tools/keras_to_onnx.py"), str(source)], check=True,
                   capture_output=True, timeout=600)  # fmt: skip
    graph = onnx.load(str(source))
    assert graph.producer_name == "tf2onnx"
    symbol = graph.graph.input[0].type.tensor_type.shape.dim[0].dim_param
    assert symbol.startswith("unk__")
    result = modelport.import_onnx(source, tmp_path / "bundle", dims=[f"{symbol}=1..8"])
    assert result.bundle.manifest["status"] == "verified"
    assert result.bundle.signature.inputs[0].dims == (symbol, 16, 16, 3)
    x, want = np.load(f"{source}.x.npy"), np.load(f"{source}.want.npy")
    got = modelport.run(result.bundle.path, {"image": x}).outputs["probs"]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
