"""``modelport optimize``: the fastest candidate within the user's accuracy budget, never one outside it,
and a bundle that run, load, verify and bench then use as it was chosen."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import onnx
import pytest

import modelport
from modelport.bundle import Bundle
from modelport.compare import cosine
from modelport.errors import BundleError, ParityError, UsageError
from modelport.verification.budget import Budget, BudgetReport, score_outputs
from tests.conftest import ROOT, edit_manifest, one_error, run_cli

FAST = {"min_runs": 3, "min_seconds": 0.05, "block_seconds": 0.02, "settle_seconds": 0.0, "warmup": 1}
SENTENCES = ROOT / "benchmarks" / "data" / "sentences.txt"


def feeds(count: int, seed: int = 0) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [{"x": rng.standard_normal((1, 32)).astype(np.float32)} for _ in range(count)]


@pytest.fixture(scope="module")
def exported(classifier) -> Path:
    return classifier


@pytest.fixture(scope="module")
def optimized(exported, tmp_path_factory):
    out = tmp_path_factory.mktemp("optimize") / "fast"
    return modelport.optimize(exported, out, data=feeds(16), timing=FAST)


# -- the budget ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "metric", "threshold"),
    [("cos>=0.999", "cos", 0.999), ("cosine >= 0.99", "cos", 0.99), ("atol=1e-3", "atol", 1e-3),
     ("atol<=0.5", "atol", 0.5), ("top1>=0.98", "top1", 0.98)],
)  # fmt: skip
def test_budget_reads_the_three_forms(text, metric, threshold):
    assert Budget.parse(text) == Budget(metric, threshold)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [("cos<=0.999", "points the wrong way"), ("atol>=0.1", "points the wrong way"), ("cos>=1.5", "between 0 and 1"),
     ("atol=-1", "finite number >= 0"), ("fast please", "cannot read"), ("top1>=nan", "cannot read"),
     ("cos>=1e", "between 0 and 1")],
)  # fmt: skip
def test_a_budget_that_cannot_mean_anything_is_refused(text, fragment):
    with pytest.raises(UsageError, match=fragment) as info:
        Budget.parse(text)
    assert info.value.hint.startswith(("write ", "e.g. cos>="))


def test_scores_take_the_worst_feed_and_pool_top1():
    want = [{"y": np.array([[1.0, 0.0, 0.0]]), "ids": np.array([1, 2])} for _ in range(2)]
    got = [
        {"y": np.array([[1.0, 0.1, 0.0]]), "ids": np.array([1, 2])},
        {"y": np.array([[0.0, 1.0, 0.0]]), "ids": np.array([1, 3])},
    ]
    cos = score_outputs(Budget.parse("cos>=0.99"), want, got)
    assert cos[0].value == pytest.approx(0.0) and not cos[0].within  # the second feed is orthogonal
    assert cos[1].exact and not cos[1].within  # integer outputs must be equal, whatever the budget
    top1 = score_outputs(Budget.parse("top1>=0.5"), want, got)
    assert top1[0].value == 0.5 and top1[0].within  # one row of two agrees
    atol = score_outputs(Budget.parse("atol=0.2"), want, got)
    assert atol[0].value == pytest.approx(1.0) and not atol[0].within


# -- the search and the bundle it writes -------------------------------------------------------------


def test_the_fastest_candidate_within_the_budget_is_chosen(optimized):
    search = optimized.search
    chosen = search.chosen
    within = [c for c in search.candidates if c.within and c.p50_ms is not None]
    assert chosen is not None and chosen.within
    assert chosen.p50_ms == min(c.p50_ms for c in within)
    assert all(o.value >= 0.999 for o in chosen.accuracy)
    assert search.reference == "PyTorch eager" and search.eager_p50_ms > 0
    assert {c.name for c in search.candidates} >= {"onnx-fp32", "fused-fp32", "int8-dynamic", "int8-static"}
    skipped = [c for c in search.candidates if c.skipped]
    assert all(c.skipped for c in skipped)  # each one left out says why (fp16 on a CPU)


def test_cuda_candidates_are_listed_with_their_reason_here_and_run_on_cuda_with_a_gpu():
    from modelport.optimization.candidates import plan

    here = {c.name: c for c in plan("auto", transformer=False)}
    assert here["cuda-fp32"].skipped.startswith("no CUDA GPU that ONNX Runtime can use here")
    assert "pip install 'modelport[gpu]'" in here["cuda-fp32"].skipped and here["fp16"].skipped
    gpu = {c.name: c for c in plan("auto", transformer=False, gpu=True)}
    assert not gpu["cuda-fp32"].skipped and not gpu["fp16"].skipped
    assert gpu["cuda-fp32"].backend == gpu["fp16"].backend == "ort:cuda,cpu"
    assert gpu["onnx-fp32"].backend == "ort:cpu"  # the CPU stays a candidate: small models can be faster there
    assert [c.name for c in plan("fp32", transformer=False, gpu=True)][:2] == ["onnx-fp32", "cuda-fp32"]


def test_the_bundle_records_how_it_was_made_and_runs_on_the_chosen_backend(optimized):
    bundle = Bundle.open(optimized.bundle.path)  # schema and hashes checked again
    entry = bundle.optimization
    chosen = optimized.search.chosen
    assert entry["candidate"] == chosen.name and entry["backend"] == bundle.backend == chosen.backend
    assert entry["budget"] == "cos>=0.999" and entry["reference"] == "PyTorch eager"
    assert entry["data"] == {"origin": "16 feeds", "calibration": 8, "held_out": 8}
    assert [o["name"] for o in entry["accuracy"]] == [o["name"] for o in bundle.manifest["outputs"]]
    assert len(entry["candidates"]) == len(optimized.search.candidates)
    assert entry["held_out_file"] == "held-out.npz" and "held-out.npz" in bundle.manifest["files"]
    with modelport.load(bundle.path) as runner:
        assert runner.name == chosen.backend
        assert runner(x=np.ones((2, 32), np.float32))["output"].shape == (2, 10)


def test_verify_holds_an_optimized_bundle_to_its_budget(optimized):
    report = modelport.verify(optimized.bundle.path)
    assert isinstance(report, BudgetReport) and report.passed
    assert report.budget.text == "cos>=0.999" and "PyTorch eager" in report.summary()
    assert report.data == "the 8 held-out feeds optimize judged it on (held-out.npz)"  # stored in the bundle
    proc = run_cli("verify", str(optimized.bundle.path), "--atol", "1e-3")
    one_error(proc, 2, "held to its budget cos>=0.999", "drop --atol/--rtol")


def test_bench_compares_an_optimized_bundle_on_its_own_backend(optimized):
    result = modelport.bench(optimized.bundle.path, **FAST)
    assert [r["backend"] for r in result.records] == ["eager", optimized.search.chosen.backend]


def test_a_candidate_outside_the_budget_is_never_chosen_and_its_drift_is_named(exported, tmp_path):
    result = modelport.optimize(
        exported, tmp_path / "tight", data=feeds(12), budget="cos>=0.9999999", candidates="onnx-fp32,int8-dynamic",
        max_exclusions=0, timing=FAST,
    )  # fmt: skip
    dynamic = next(c for c in result.search.candidates if c.name == "int8-dynamic")
    assert not dynamic.within and dynamic.status == "outside budget"
    assert result.search.chosen.name == "onnx-fp32"
    graph_nodes = {n.name for n in onnx.load(str(exported / "model.onnx")).graph.node}
    assert dynamic.drift  # named after the export's nodes (ONNX Runtime's fusions prefix theirs with "fused ")
    assert all(d.node.removeprefix("fused ") in graph_nodes for d in dynamic.drift)


def test_no_candidate_within_the_budget_writes_nothing_and_says_so(exported, tmp_path):
    target = tmp_path / "never"
    with pytest.raises(ParityError, match="no candidate stays within the budget atol<=0") as info:
        modelport.optimize(exported, target, data=feeds(8), budget="atol=0", candidates="int8-dynamic", timing=FAST)
    assert not target.exists()
    assert info.value.report.search.candidates[0].status == "outside budget"


def test_candidates_start_from_a_copy_with_named_nodes_and_no_weight_annotations(exported, tmp_path):
    """ONNX Runtime 1.31's quantizers failed shape inference on the exporter's value_info for Gemm weights
    ("Inferred shape and existing shape differ"), so int8-dynamic was reported failed on the GPU wheel."""
    from modelport.optimization import passes

    passes.prepare(exported / "model.onnx", tmp_path / "prepared.onnx")
    model = onnx.load(str(tmp_path / "prepared.onnx"))
    weights = {i.name for i in model.graph.initializer}
    assert weights and not weights & {v.name for v in model.graph.value_info}
    names = [n.name for n in model.graph.node]
    assert all(names) and len(set(names)) == len(names)


def test_the_node_int8_hurts_most_is_kept_in_float_first(tmp_path):
    """Two MatMuls; the second's input has one channel 10^4 times the others (and a zero weight row for
    it), so rounding that input to int8 wipes out every other channel: it must rank first."""
    from onnx import TensorProto, helper, numpy_helper

    from modelport.optimization.sensitivity import int8_sensitivity

    rng = np.random.default_rng(0)
    tame, wild = rng.standard_normal((2, 32, 32)).astype(np.float32)
    wild[0] = 0.0
    spike = np.ones(32, np.float32)
    spike[0] = 1e4
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "tame"], ["h"], name="first"),
         helper.make_node("Mul", ["h", "spike"], ["g"], name="spiky"),
         helper.make_node("MatMul", ["g", "wild"], ["y"], name="second")],
        "two",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 32])],
        [numpy_helper.from_array(a, n) for a, n in ((tame, "tame"), (wild, "wild"), (spike, "spike"))],
    )  # fmt: skip
    path = tmp_path / "two.onnx"
    # ir_version 10: what ONNX Runtime before 1.32 loads (onnx 1.23 writes 14 by default)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10), path)
    feed = {"x": rng.standard_normal((4, 32)).astype(np.float32)}
    assert int8_sensitivity(path, feed, {"first", "second"}) == ["second", "first"]
    assert int8_sensitivity(path, feed, {"first"}) == ["first"]


def test_int8_weight_compression_leaves_convolutions_float_so_openvino_compiles_it(tmp_path):
    """NNCF wrote a per-channel DequantizeLinear for Conv weights that OpenVINO's ONNX reader refuses, so
    the int8-weights candidates failed on ResNet-50. Only the MatMul/Gemm weights are int8."""
    from onnx import TensorProto, helper, numpy_helper

    from modelport.optimization import passes
    from modelport.runtime.registry import create

    pytest.importorskip("nncf")
    rng = np.random.default_rng(0)
    conv, fc = rng.standard_normal((4, 3, 3, 3)).astype(np.float32), rng.standard_normal((10, 256)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "conv"], ["c"], name="conv", pads=[1, 1, 1, 1]),
         helper.make_node("Flatten", ["c"], ["f"], name="flat"),
         helper.make_node("Gemm", ["f", "fc"], ["y"], name="fc", transB=1)],
        "cnn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])],
        [numpy_helper.from_array(conv, "conv"), numpy_helper.from_array(fc, "fc")],
    )  # fmt: skip
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=10), tmp_path / "f.onnx")
    passes.nncf_int8_weights(tmp_path / "f.onnx", tmp_path / "w.onnx")
    model = onnx.load(str(tmp_path / "w.onnx"))
    dequantized = {o for n in model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    assert [n.op_type for n in model.graph.node if dequantized & set(n.input)] == ["Gemm"]
    x = {"x": rng.standard_normal((1, 3, 8, 8)).astype(np.float32)}
    with create("ort:cpu", tmp_path / "f.onnx") as ref, create("openvino:f32", tmp_path / "w.onnx") as runner:
        assert cosine(runner.infer(x)["y"], ref.infer(x)["y"]) > 0.999


def test_int8_keeps_attention_matmuls_of_two_activations_in_float(tmp_path):
    """Query x key has no weight: no candidate quantizes it (the softmax after it exponentiates the error),
    and it is not among the nodes the sensitivity search ranks. NNCF's transformer preset would quantize
    it; modelport's NNCF pass leaves it float while the weight MatMuls get int8."""
    from onnx import TensorProto, helper, numpy_helper

    from modelport.optimization import passes

    pytest.importorskip("nncf")
    rng = np.random.default_rng(0)
    wq, wk = rng.standard_normal((2, 16, 16)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "wq"], ["q"], name="query"),
         helper.make_node("MatMul", ["x", "wk"], ["k"], name="key"),
         helper.make_node("Transpose", ["k"], ["kt"], name="kt", perm=[0, 2, 1]),
         helper.make_node("MatMul", ["q", "kt"], ["scores"], name="scores"),
         helper.make_node("Softmax", ["scores"], ["y"], name="softmax", axis=-1)],
        "attention",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 8])],
        [numpy_helper.from_array(wq, "wq"), numpy_helper.from_array(wk, "wk")],
    )  # fmt: skip
    src, dst = tmp_path / "attention.onnx", tmp_path / "int8.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10), src)
    assert sorted(name for name, _ in passes.quantizable_nodes(src)) == ["key", "query"]
    calibration = [{"x": rng.standard_normal((1, 8, 16)).astype(np.float32)} for _ in range(4)]
    passes.nncf_int8(src, dst, calibration, transformer=True)
    quantized = onnx.load(str(dst))
    dequantized = {o for n in quantized.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    fed_by_dequantize = {n.name for n in quantized.graph.node if dequantized.intersection(n.input)}
    assert {"query", "key"} <= fed_by_dequantize and "scores" not in fed_by_dequantize


def test_each_recipe_builds_a_model_from_only_what_it_says_it_reads(tmp_path):
    """The search gives a recipe the calibration feeds and the transformer flag only where the recipe says it
    reads them, so a recipe that says too little fails here; its exclusions stay float, its answers close."""
    from onnx import TensorProto, helper, numpy_helper

    from modelport.optimization.candidates import plan
    from modelport.optimization.recipes import RECIPES, Context
    from modelport.runtime.registry import create

    pytest.importorskip("nncf")
    planned = {c.recipe.name: c.recipe for c in plan("auto", transformer=True) if c.recipe is not None}
    assert planned == RECIPES and all(planned[name] is recipe for name, recipe in RECIPES.items())
    rng = np.random.default_rng(0)
    w1, w2 = rng.standard_normal((2, 32, 32)).astype(np.float32) / 6
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w1"], ["h"], name="first"),
         helper.make_node("Relu", ["h"], ["r"], name="relu"),
         helper.make_node("MatMul", ["r", "w2"], ["y"], name="second")],
        "two",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 32])],
        [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2")],
    )  # fmt: skip
    src = tmp_path / "two.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10), src)
    calibration = [{"x": rng.standard_normal((4, 32)).astype(np.float32)} for _ in range(8)]
    with create("ort:cpu", src) as ref:
        want = ref.infer(calibration[0])["y"]
    for name, recipe in RECIPES.items():
        dst = tmp_path / f"{name}.onnx"
        given = Context(("second",), calibration if recipe.calibrated else (), recipe.transformer)
        recipe.build(src, dst, given)
        model = onnx.load(str(dst))
        dequantized = {o for n in model.graph.node if n.op_type in ("DequantizeLinear", "Cast") for o in n.output}
        second = [n for n in model.graph.node if n.name == "second"]
        assert [n.op_type for n in second] == ["MatMul"], name
        if name != "fp16":  # fp16 casts the excluded node's inputs back to fp32
            assert not dequantized & set(second[0].input), name
        with create("ort:cpu", dst) as runner:
            assert cosine(runner.infer(calibration[0])["y"], want) > 0.99, name


# -- the command ----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_command_takes_a_folder_of_npz_feeds_and_reports(exported, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for i, feed in enumerate(feeds(8)):
        np.savez(data / f"{i:03}.npz", **feed)
    out, report = tmp_path / "opt", tmp_path / "report.md"
    proc = run_cli(
        "optimize", str(exported), "-o", str(out), "--data", str(data), "--candidates", "onnx-fp32,int8-dynamic",
        "--report", str(report), "--json",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["ok"] and result["bundle"] == str(out) and result["data"]["origin"] == "data/ (8 files)"
    assert "| candidate |" in report.read_text() and report.with_suffix(".png").stat().st_size > 1000
    ran = run_cli("run", str(out))
    assert ran.returncode == 0 and f"ran {result['backend']}" in ran.stdout


def _npz(folder: Path, count: int, **arrays: np.ndarray) -> None:
    for i in range(count):
        np.savez(folder / f"{i}.npz", **arrays)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("make", "fragments"),
    [
        (lambda d: _npz(d, 3, x=np.zeros((1, 32), np.float32)), ["3 feed(s)", "at least 4"]),
        (lambda d: _npz(d, 4, y=np.zeros((1, 32), np.float32)), ["feed 1 does not fit"]),
        (lambda d: _npz(d, 4, x=np.array([object()] * 32)), ["not a readable .npz"]),  # never unpickled
        (lambda d: (d / "notes.md").write_text("x"), ["holds no .npz or .npy files"]),
    ],
)  # fmt: skip
def test_bad_data_gets_one_line(exported, tmp_path, make, fragments):
    data = tmp_path / "data"
    data.mkdir()
    make(data)
    proc = run_cli("optimize", str(exported), "-o", str(tmp_path / "o"), "--data", str(data))
    one_error(proc, 2, *fragments)
    assert not (tmp_path / "o").exists()


def test_sentences_need_a_tokenizer(exported, tmp_path):
    with pytest.raises(UsageError, match="needs a tokenizer"):
        modelport.optimize(exported, tmp_path / "o", data=SENTENCES)


@pytest.mark.parametrize(
    ("options", "fragment"),
    [({"precision": "int4"}, "unknown precision"), ({"candidates": "int8-magic"}, "unknown candidate"),
     ({"budget": "cos>=2"}, "between 0 and 1"), ({"max_exclusions": -1}, "max_exclusions")],
)  # fmt: skip
def test_bad_options_are_refused_before_any_work(exported, tmp_path, options, fragment):
    with pytest.raises(UsageError, match=fragment):
        modelport.optimize(exported, tmp_path / "o", **options)


def test_an_optimized_bundle_is_not_optimized_again(optimized, tmp_path):
    with pytest.raises(UsageError, match="was already optimized"):
        modelport.optimize(optimized.bundle.path, tmp_path / "again")


def test_a_tampered_optimization_entry_is_refused(optimized, tmp_path):
    import shutil

    copy = tmp_path / "b"
    shutil.copytree(optimized.bundle.path, copy)
    edit_manifest(copy, lambda m: m["optimizations"][-1].update(backend="ort:cpu; rm -rf ~"))
    with pytest.raises(BundleError, match="is not a backend name"):
        Bundle.open(copy)


# -- MiniLM: the case ---------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.hf
def test_minilm_dynamic_int8_is_rejected_with_its_worst_nodes_named(minilm_bundle, tmp_path):
    """ONNX Runtime's dynamic int8 makes all-MiniLM-L6-v2 faster and wrong (cosine ~0.93-0.95 on real
    sentences): it must be refused, and the report must say where the drift comes from."""
    result = modelport.optimize(
        minilm_bundle, tmp_path / "o", data=SENTENCES, candidates="onnx-fp32,int8-dynamic", max_exclusions=0,
        timing=FAST,
    )  # fmt: skip
    search = result.search
    dynamic = next(c for c in search.candidates if c.name == "int8-dynamic")
    tokens = next(o for o in dynamic.accuracy if o.name == "token_embeddings")
    assert tokens.value < 0.99 and not dynamic.within
    assert search.chosen.name == "onnx-fp32"
    assert len(dynamic.drift) == 10 and all(math.isfinite(d.added) for d in dynamic.drift)
    assert any(d.op_type in ("MatMul", "FusedMatMul", "Gemm") for d in dynamic.drift[:5])
    assert search.data.origin == "sentences.txt (120 sentences)"
