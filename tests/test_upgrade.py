"""``modelport upgrade`` on real 2018 files: the PyTorch-exported models shipped inside the onnx wheel
(``onnx/backend/test/data/pytorch-*``, IR 3, mostly opset 6, each with its ``test_data_set_0``), of which
current onnxruntime refuses a few dozen. Each refused file is revived with a proof or refused in one line;
doctor names the upgrade for exactly the revived ones. Then synthetic files for what the real ones lack:
a conversion that changes the answer, what the machine lacks, feeds without test data."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from modelport.errors import ModelportError, ParityError, UsageError
from modelport.ingest import upgrade as upgrade_module
from modelport.ingest.doctor import doctor
from modelport.ingest.upgrade import ORT_MIN_OPSET, check_upgrade, upgrade
from modelport.ingest.upgrade_proof import ON_ORIGINAL, TEST_DATA
from modelport.runtime.ort_session import cpu_session
from modelport.tolerances import DEFAULT_ATOL, DEFAULT_RTOL
from tests.conftest import cli

DATA = Path(onnx.__file__).parent / "backend" / "test" / "data"  # comes with the onnx wheel
OLD = sorted(DATA.glob("pytorch-operator/*/model.onnx")) + sorted(DATA.glob("pytorch-converted/*/model.onnx"))
REVIVED_AT_LEAST = 20  # issue 16


def loads(model: Path | onnx.ModelProto) -> bool:
    try:
        cpu_session(model, optimization="disabled")
    except Exception:
        return False
    return True


def tensors(folder: Path, kind: str) -> list[np.ndarray]:
    out = []
    for file in sorted(folder.glob(f"{kind}_*.pb"), key=lambda p: int(re.findall(r"\d+", p.name)[-1])):
        tensor = onnx.TensorProto()
        tensor.ParseFromString(file.read_bytes())
        out.append(numpy_helper.to_array(tensor))
    return out


def name(path: Path) -> str:
    return path.parent.name


@pytest.fixture(scope="module")
def refused() -> list[Path]:
    return [p for p in OLD if not loads(p)]


@pytest.fixture(scope="module")
def outcomes(refused: list[Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """Every refused file through ``upgrade``: its report, or the error it was refused with."""
    folder = tmp_path_factory.mktemp("upgraded")
    results: dict[str, object] = {}
    for path in refused:
        try:
            results[name(path)] = upgrade(path, folder / f"{name(path)}.onnx")
        except ModelportError as exc:
            results[name(path)] = exc
    return results


def revived(outcomes: dict[str, object]) -> list[str]:
    return sorted(k for k, v in outcomes.items() if not isinstance(v, Exception))


def test_the_old_files_are_there_and_onnxruntime_refuses_some(refused: list[Path]) -> None:
    assert len(OLD) >= 100, f"the onnx wheel's pytorch test models are missing under {DATA}"
    assert all((p.parent / "test_data_set_0").is_dir() for p in OLD)
    assert len(refused) >= 30, [name(p) for p in refused]


def test_min_opset_is_the_lowest_onnxruntime_runs() -> None:
    """ORT_MIN_OPSET stays true of the installed onnxruntime: an Add at opset 6 is refused, at 7 it runs."""
    for opset, runs in ((ORT_MIN_OPSET - 1, False), (ORT_MIN_OPSET, True)):
        graph = helper.make_graph(
            [helper.make_node("Add", ["a", "b"], ["c"])],
            "add",
            [helper.make_tensor_value_info(n, TensorProto.FLOAT, [2]) for n in "ab"],
            [helper.make_tensor_value_info("c", TensorProto.FLOAT, [2])],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
        model.ir_version = 3
        assert loads(model) is runs, f"opset {opset}"


def test_every_refused_file_is_revived_with_proof_or_refused_in_one_line(
    refused: list[Path], outcomes: dict[str, object]
) -> None:
    by_name = {name(p): p for p in refused}
    for key, outcome in outcomes.items():
        if isinstance(outcome, ModelportError):
            line = outcome.one_line()
            assert "\n" not in line and len(line) < 700, key
            assert re.search(r"node #\d+ \(\w+|no kernel|training-only|locale|converter cannot", line), line
            continue
        report = outcome
        assert report.status == "upgraded" and report.passed, key
        assert (report.opset_from, report.opset_to) == (6, ORT_MIN_OPSET), key
        assert report.feeds and report.feeds[0]["answers_from"] == TEST_DATA, key
        assert max(report.max_abs_diff.values()) <= DEFAULT_ATOL, key
        proof = json.loads(report.proof.read_text())
        assert proof["passed"] is True and proof["tolerance"] == {"atol": DEFAULT_ATOL, "rtol": DEFAULT_RTOL}
        assert proof["opset"] == {"from": 6, "to": ORT_MIN_OPSET}
        assert proof["source_sha256"] == hashlib.sha256(by_name[key].read_bytes()).hexdigest()
        # the written file, on its own: onnxruntime loads it and answers its test data
        session = cpu_session(report.output)
        folder = by_name[key].parent / "test_data_set_0"
        feed = dict(zip([i.name for i in session.get_inputs()], tensors(folder, "input"), strict=True))
        for got, want in zip(session.run(None, feed), tensors(folder, "output"), strict=True):
            np.testing.assert_allclose(got, want, rtol=DEFAULT_RTOL, atol=DEFAULT_ATOL, err_msg=key)
    assert len(revived(outcomes)) >= REVIVED_AT_LEAST, sorted(outcomes)


def test_the_prelu_files_are_refused_naming_the_node(outcomes: dict[str, object]) -> None:
    """PRelu-6's 1-D slope is per channel; the converter keeps the node as PRelu-7, which broadcasts it
    from the right: onnxruntime then fails on it. The refusal names that node and what changed."""
    refusals = {k: v for k, v in outcomes.items() if isinstance(v, Exception)}
    assert {"test_PReLU_1d_multiparam", "test_PReLU_2d_multiparam", "test_PReLU_3d_multiparam"} <= set(refusals)
    error = refusals["test_PReLU_2d_multiparam"]
    assert isinstance(error, ParityError)
    assert "node #0 (PRelu, output '2') fails in onnxruntime" in error.message
    assert "PRelu-6 became PRelu-7" in error.message and "[2, 3, 4, 5] float32, [3] float32" in error.message


def test_doctor_names_the_upgrade_for_exactly_the_revived_files(
    refused: list[Path], outcomes: dict[str, object]
) -> None:
    cured = set(revived(outcomes))
    for path in refused:
        findings = doctor(path).findings
        assert any(f.code == "no-kernel" for f in findings), name(path)
        fixes = [f.fix for f in findings if f.code in ("no-kernel", "ancient-opset")]
        named = ["modelport upgrade" in fix for fix in fixes]
        assert all(named) if name(path) in cured else not any(named), (name(path), fixes)
    runs = DATA / "pytorch-converted" / "test_Conv2d" / "model.onnx"  # opset 6, which onnxruntime still runs
    assert not any("modelport upgrade" in f.fix for f in doctor(runs).findings)


def test_cli_upgrade_writes_the_file_and_its_proof(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old = DATA / "pytorch-converted" / "test_BatchNorm2d_eval" / "model.onnx"
    code, out, _ = cli(capsys, "upgrade", str(old), "-o", str(tmp_path / "bn.onnx"))
    assert code == 0 and "opset 6 -> 7, answers as before on 1 feed(s)" in out
    proof = json.loads((tmp_path / "bn.proof.json").read_text())
    assert proof["status"] == "upgraded" and proof["feeds"][0]["label"] == "test_data_set_0"
    assert proof["feeds"][0]["inputs"] == {"0": {"shape": [2, 3, 6, 6], "dtype": "float32"}}
    assert set(proof["max_abs_diff"]) == {"5"}
    assert loads(tmp_path / "bn.onnx")

    code, out, _ = cli(capsys, "upgrade", str(old), "-o", str(tmp_path / "bn13.onnx"), "--opset", "13", "--json")
    assert code == 0 and json.loads(out)["opset"] == {"from": 6, "to": 13}

    bad = DATA / "pytorch-converted" / "test_PReLU_1d_multiparam" / "model.onnx"
    code, out, err = cli(capsys, "upgrade", str(bad), "-o", str(tmp_path / "p.onnx"))
    assert code == 1 and len(err.strip().splitlines()) == 1 and err.startswith("error: ")
    assert "node #0 (PRelu" in err and not (tmp_path / "p.onnx").exists()
    assert not (tmp_path / "p.proof.json").exists()

    fine = DATA / "pytorch-converted" / "test_Conv2d" / "model.onnx"
    code, out, _ = cli(capsys, "upgrade", str(fine), "-o", str(tmp_path / "c.onnx"))
    assert code == 0 and "already runs in onnxruntime" in out and not (tmp_path / "c.onnx").exists()

    code, _, err = cli(capsys, "upgrade", str(fine), "-o", str(tmp_path / "c.onnx"), "--opset", "5")
    assert code == 2 and "--opset 5 is outside 6.." in err


def test_the_public_function_and_the_original_left_alone(tmp_path: Path) -> None:
    import modelport

    copy = tmp_path / "model.onnx"
    shutil.copy(DATA / "pytorch-converted" / "test_Linear" / "model.onnx", copy)
    with pytest.raises(UsageError, match="is the file being upgraded"):
        modelport.upgrade(copy, copy)
    report = modelport.upgrade(copy, tmp_path / "linear.onnx")
    assert report.to_json()["status"] == "upgraded" and report.proof == tmp_path / "linear.proof.json"
    assert onnx.load(copy).opset_import[0].version == 6  # the original is never touched


# ---- synthetic files: what the real ones do not show --------------------------------------------------


def save(folder: Path, stem: str, nodes: list, inputs: list, outputs: list, opset: int = 6, **kw: object) -> Path:
    graph = helper.make_graph(nodes, stem, inputs, outputs, initializer=kw.pop("initializer", []))
    imports = [helper.make_opsetid("", opset), *kw.pop("domains", [])]
    model = helper.make_model(graph, opset_imports=imports)
    model.ir_version = int(kw.pop("ir", 3))
    path = folder / f"{stem}.onnx"
    onnx.save(model, path)
    return path


def floats(name: str, dims: list | None) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, dims)


def test_a_conversion_that_changes_the_answer_is_refused_naming_the_node(tmp_path: Path) -> None:
    """The converter's PRelu 6 -> 7 adapter keeps the node as it is, but where the channel count equals the
    last dim, PRelu-7 broadcasts the slope along the last axis instead of the channels: onnxruntime runs
    it and answers differently. No test data: the original's answers come from the reference evaluator."""
    slope = helper.make_tensor("s", TensorProto.FLOAT, [3], [0.1, 0.2, 0.3])
    nodes = [
        helper.make_node("Relu", ["x"], ["r"]),
        helper.make_node("Neg", ["r"], ["n"]),
        helper.make_node("PRelu", ["n", "s"], ["p"]),
        helper.make_node("Abs", ["p"], ["y"]),
    ]
    path = save(
        tmp_path, "prelu", nodes, [floats("x", [2, 3, 3]), floats("s", [3])], [floats("y", None)], initializer=[slope]
    )
    with pytest.raises(ParityError) as caught:
        upgrade(path, tmp_path / "new.onnx")
    message = caught.value.message
    assert "node #2 (PRelu, output 'p') answers differently (max abs diff" in message
    assert "PRelu-6 became PRelu-7" in message and "[2, 3, 3] float32, [3] float32" in message
    assert not (tmp_path / "new.onnx").exists()


def test_a_perturbed_conversion_names_the_perturbed_node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first node that differs, in topological order, and what changed in it: the converter is made to
    double the epsilon of the second of two BatchNormalizations, and only that one is named."""
    rng = np.random.default_rng(0)
    weights = [numpy_helper.from_array(rng.random(3, dtype=np.float32) + 0.5, f"w{i}") for i in range(4)]
    nodes = [
        helper.make_node("BatchNormalization", ["x", "w0", "w1", "w2", "w3"], ["b1"], is_test=1, epsilon=1e-5),
        helper.make_node("Relu", ["b1"], ["r"]),
        helper.make_node("BatchNormalization", ["r", "w0", "w1", "w2", "w3"], ["b2"], is_test=1, epsilon=0.5),
        helper.make_node("Sigmoid", ["b2"], ["y"]),
    ]
    inputs = [floats("x", [2, 3, 4, 4])] + [floats(f"w{i}", [3]) for i in range(4)]
    path = save(tmp_path, "bn", nodes, inputs, [floats("y", None)], initializer=weights)
    real = onnx.version_converter.convert_version

    def perturbed(model: onnx.ModelProto, target: int) -> onnx.ModelProto:
        out = real(model, target)
        epsilon = next(a for a in out.graph.node[2].attribute if a.name == "epsilon")
        epsilon.f *= 2
        return out

    monkeypatch.setattr(onnx.version_converter, "convert_version", perturbed)
    with pytest.raises(ParityError) as caught:
        upgrade(path, tmp_path / "new.onnx")
    message = caught.value.message
    assert "node #2 (BatchNormalization, output 'b2') answers differently" in message, message
    assert "BatchNormalization-6 became BatchNormalization-7" in message
    assert "attribute(s) removed: is_test=1" in message and "attribute(s) changed: epsilon 0.5 -> 1.0" in message


def test_refusals_name_what_the_machine_or_the_converter_lacks(tmp_path: Path) -> None:
    training = save(
        tmp_path,
        "training",
        [helper.make_node("Adagrad", ["r", "t", "x", "g", "h"], ["x2", "h2"], domain="ai.onnx.preview.training")],
        [floats("r", []), helper.make_tensor_value_info("t", TensorProto.INT64, [])] + [floats(n, [2]) for n in "xgh"],
        [floats("x2", [2]), floats("h2", [2])],
        domains=[helper.make_opsetid("ai.onnx.preview.training", 1)],
        ir=7,
    )
    custom = save(
        tmp_path,
        "custom",
        [helper.make_node("Relu", ["x"], ["y"]), helper.make_node("Fancy", ["y"], ["z"], domain="my.ops")],
        [floats("x", [2])],
        [floats("z", [2])],
        domains=[helper.make_opsetid("my.ops", 1)],
    )
    upsample = save(
        tmp_path,
        "upsample",
        [helper.make_node("Upsample", ["x"], ["y"], scales=[1.0, 2.0], mode="nearest")],
        [floats("x", [2, 2])],
        [floats("y", [2, 4])],
    )
    expected = {
        training: "holds Adagrad (domain ai.onnx.preview.training), a training-only op",
        custom: "holds Fancy (domain my.ops), which neither onnxruntime",
        upsample: "version converter cannot lift the file from opset 6 to 7: upsample: Upsample in opset 1 needs",
    }
    for path, phrase in expected.items():
        attempt = check_upgrade(path)
        assert attempt.report.status == "refused" and attempt.model is None
        assert phrase in attempt.error.one_line() and "\n" not in attempt.error.one_line(), path


def test_a_locale_the_machine_lacks_is_named(tmp_path: Path) -> None:
    node = helper.make_node("StringNormalizer", ["x"], ["y"], case_change_action="LOWER", locale="tr_TR")
    strings = [helper.make_tensor_value_info(n, TensorProto.STRING, [2]) for n in "xy"]
    path = save(tmp_path, "locale", [node], strings[:1], strings[1:], opset=10, ir=7)
    if loads(path):
        pytest.skip("this machine has the tr_TR locale")
    attempt = check_upgrade(path)
    assert "needs the locale tr_TR, which this machine lacks" in attempt.error.one_line()


def test_without_test_data_the_reference_evaluator_answers_for_the_original(tmp_path: Path) -> None:
    """Generated feeds, every symbolic dim at a few sizes; the pre-7 broadcast rule (B aligned at ``axis``)
    is the evaluator's too, so a legacy Add that the converter rewrites correctly is revived."""
    copy = tmp_path / "bn" / "model.onnx"  # the real file without its test_data_set_0
    copy.parent.mkdir()
    shutil.copy(DATA / "pytorch-converted" / "test_BatchNorm2d_eval" / "model.onnx", copy)
    report = upgrade(copy, tmp_path / "bn.onnx")
    assert report.passed and [f["answers_from"] for f in report.feeds] == [ON_ORIGINAL]

    legacy = save(
        tmp_path,
        "legacy_add",
        [helper.make_node("Add", ["a", "b"], ["c"], broadcast=1, axis=0), helper.make_node("Softmax", ["c"], ["y"])],
        [floats("a", ["batch", 3]), floats("b", ["batch"])],
        [floats("y", None)],
    )
    attempt = check_upgrade(legacy, opset=ORT_MIN_OPSET)
    assert attempt.error is not None and "dim 'batch' is symbolic" in attempt.error.one_line()
    fixed = save(
        tmp_path,
        "legacy_add_fixed",
        [helper.make_node("Add", ["a", "b"], ["c"], broadcast=1, axis=0), helper.make_node("Softmax", ["c"], ["y"])],
        [floats("a", [3, 3]), floats("b", [3])],
        [floats("y", None)],
    )
    report = upgrade(fixed, tmp_path / "fixed.onnx")
    assert report.passed and "value_info the converter left without a type" in report.notes[0]

    softmax = save(
        tmp_path, "softmax", [helper.make_node("Softmax", ["x"], ["y"])], [floats("x", ["n", 4])], [floats("y", None)]
    )
    report = upgrade(softmax, tmp_path / "softmax7.onnx", opset=ORT_MIN_OPSET)
    assert [f["inputs"]["x"]["shape"] for f in report.feeds] == [[1, 4], [3, 4]]


def test_doctor_tries_each_file_once(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    copy = tmp_path / "model.onnx"
    shutil.copy(DATA / "pytorch-operator" / "test_operator_mm" / "model.onnx", copy)
    calls = []
    real = upgrade_module._upgraded
    monkeypatch.setattr(upgrade_module, "_upgraded", lambda *a: calls.append(a) or real(*a))
    doctor(copy)
    upgrade(copy, tmp_path / "mm.onnx", timeout=upgrade_module.DOCTOR_TIMEOUT)
    check_upgrade(copy, timeout=upgrade_module.DOCTOR_TIMEOUT)
    assert len(calls) == 1
