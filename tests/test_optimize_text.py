"""``optimize`` on a generation bundle: weight-only int8/int4 candidates held to a text budget against fp32
PyTorch on real text, the choice written as a generation bundle that ``verify`` re-checks and ``generate``
runs; a budget nothing meets refused with every candidate's figures.

The model is a tiny LLaMA trained for seconds on the repo's sentences (tests/models/lm.py): with random
weights every candidate's distribution is noise, and a quality budget would judge nothing.
"""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest

from modelport.errors import UsageError
from modelport.verification.text_quality import TextBudget, score_texts
from tests.conftest import run_cli

# -- the budget and the figures (no model) -------------------------------------------------------------


def test_identical_distributions_score_perfectly_and_a_flattened_one_misses_the_budget():
    rng = np.random.default_rng(0)
    ids = [rng.integers(0, 50, 30).tolist() for _ in range(3)]
    ref = [rng.standard_normal((30, 50)) * 4 for _ in ids]
    same = score_texts(ref, ref, ids)
    assert (same.top1, round(same.ppl, 12), round(same.kl, 12)) == (1.0, 1.0, 0.0)
    assert same.tokens == 3 * 29 and same.within(TextBudget())
    flat = score_texts(ref, [r * 0.3 for r in ref], ids)  # same argmax everywhere, a much flatter distribution
    assert flat.top1 == 1.0 and flat.kl > 0.05
    assert any(m.startswith("kl ") for m in flat.misses(TextBudget()))


@pytest.mark.parametrize(
    "text, message",
    [
        ("top1>=0.9,ppl>=1.05", "budget term 'ppl>=1.05' points the wrong way"),
        ("ppl<=0.9", "the limit must be a ratio of at least 1"),
        ("cos>=0.999", "cannot read the generation budget term 'cos>=0.999'"),
        ("top1>=1.5", "the limit must be between 0 and 1"),
    ],
)
def test_a_bad_text_budget_is_one_line(text, message):
    with pytest.raises(UsageError, match=re.escape(message)):
        TextBudget.parse(text)


def test_a_budget_term_left_out_keeps_its_default():
    assert TextBudget.parse("ppl<=1.1").text == "top1>=0.9,ppl<=1.1,kl<=0.05"


# -- a trained tiny model, end to end ------------------------------------------------------------------

hf = pytest.importorskip("transformers")

import modelport  # noqa: E402
from modelport.errors import ParityError  # noqa: E402
from tests.models.lm import SENTENCES, tiny_lm  # noqa: E402


@pytest.fixture(scope="module")
def lm_bundle(tmp_path_factory):
    root = tmp_path_factory.mktemp("text-opt")
    folder = tiny_lm("llama", root / "hf", steps=300)
    return folder, modelport.export(f"hf:{folder}", root / "bundle", task="text-generation").bundle.path


@pytest.mark.slow
@pytest.mark.hf
def test_int8_weights_chosen_within_the_budget_verified_and_generating(lm_bundle, tmp_path):
    folder, bundle = lm_bundle
    out = tmp_path / "int8"
    proc = run_cli("optimize", str(bundle), "-o", str(out), "--data", str(SENTENCES),
                   "--candidates", "int8-weights", "--json")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    assert result["ok"] and result["candidate"] == "int8-weights" and result["task"] == "text-generation"
    names = [c["name"] for c in result["candidates"]]
    assert names == ["fp32", "int8-weights"]  # fp32: the baseline the speed-up is against, not asked for
    held = result["held_out"]
    assert held["top1"] >= 0.9 and held["ppl_ratio"] <= 1.05 and held["kl"] <= 0.05 and held["tokens"] > 500
    manifest = json.loads((out / "modelport.json").read_text())
    assert {"model.onnx", "model.onnx.data", "held-out-tokens.json", "tokenizer.json"} <= set(manifest["files"])
    assert manifest["optimizations"][-1]["budget"] == "top1>=0.9,ppl<=1.05,kl<=0.05"
    import onnx

    ops = {n.op_type for n in onnx.load(str(out / "model.onnx"), load_external_data=False).graph.node}
    assert "MatMulNBits" in ops  # the weights really are int8 blocks

    report = modelport.verify(out)  # re-scored against PyTorch on the held-out chunks it carries
    assert report.passed and abs(report.score.top1 - held["top1"]) < 0.01
    with modelport.load(out) as lm:
        new = lm.generate("The weather", max_new_tokens=8, ignore_eos=True)
        assert len(new.token_ids) == 8 and lm.name == "ort:cpu"


@pytest.mark.slow
@pytest.mark.hf
def test_a_budget_nothing_meets_is_refused_with_each_candidates_figures(lm_bundle, tmp_path):
    _, bundle = lm_bundle
    strict = "top1>=0.9999,ppl<=1.0001,kl<=0.0001"
    with pytest.raises(ParityError, match=re.escape(f"no candidate stays within the budget {strict}")) as caught:
        modelport.optimize(bundle, tmp_path / "none", budget=strict, precision="int4", data=SENTENCES,
                           candidates=["int4-asym-32"])  # fmt: skip
    search = caught.value.report.search
    int4 = next(c for c in search.candidates if c.name == "int4-asym-32")
    assert int4.verdict(search.budget).startswith("outside the budget: ")
    assert int4.search.kl > 0.0001 and int4.tokens_per_s > 0
    assert not (tmp_path / "none").exists()  # nothing written


@pytest.mark.slow
@pytest.mark.hf
def test_verify_fails_an_optimized_bundle_whose_model_was_swapped(lm_bundle, tmp_path):
    """A held-out check that cannot fail proves nothing: an int4 file put in place of the int8 one (and the
    hashes rewritten, as a careless hand would) is caught by the budget."""
    from modelport import bundle as bundles

    _, bundle = lm_bundle
    int8 = modelport.optimize(bundle, tmp_path / "int8", data=SENTENCES, candidates=["int8-weights"]).bundle.path
    strict = json.loads((int8 / "modelport.json").read_text())
    strict["optimizations"][-1]["budget"] = "top1>=0.999,ppl<=1.0005,kl<=0.0005"
    swapped = tmp_path / "swapped"
    shutil.copytree(int8, swapped)
    from modelport.optimization.recipes import Context, WeightsNBits

    (tmp_path / "int4").mkdir()
    WeightsNBits(4, 32, False).build(bundle / "model.onnx", tmp_path / "int4" / "model.onnx", Context())
    for name in ("model.onnx", "model.onnx.data"):
        shutil.copyfile(tmp_path / "int4" / name, swapped / name)
    strict["files"] = bundles.file_table(swapped)
    bundles.write_manifest(swapped, strict)
    with pytest.raises(ParityError, match=r"outside its budget top1>=0.999,ppl<=1.0005,kl<=0.0005: "):
        modelport.verify(swapped)


@pytest.mark.slow
@pytest.mark.hf
def test_generation_options_that_do_not_apply_are_one_line(lm_bundle, tmp_path):
    _, bundle = lm_bundle
    with pytest.raises(UsageError, match=re.escape("--seq, --max-exclusions do not apply to a generation bundle")):
        modelport.optimize(bundle, tmp_path / "x", seq=64, max_exclusions=3)
    with pytest.raises(UsageError, match=re.escape("precision 'fp16' is not one for a generation bundle")):
        modelport.optimize(bundle, tmp_path / "x", precision="fp16")
    with pytest.raises(UsageError, match=re.escape("no generation candidate int3")):
        modelport.optimize(bundle, tmp_path / "x", candidates="int3")
    with pytest.raises(UsageError, match="too little to judge a compressed model on"):
        modelport.optimize(bundle, tmp_path / "x", data=["Hi."])
    with pytest.raises(UsageError, match=re.escape("token id 999999 is outside the vocabulary (0..383)")):
        modelport.optimize(bundle, tmp_path / "x", data=[[5, 999999, 7]])
