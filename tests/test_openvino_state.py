"""OpenVINO stateful decoding: the KV cache kept in the compiled model's variables gives the tokens ONNX
Runtime gives, survives the serving scheduler's joins and leaves, and is an ``optimize`` candidate whose
choice the written bundle remembers. The same for prompt passes on OpenVINO with the steps after them on
ONNX Runtime (``prefill``)."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.hf, pytest.mark.openvino]
pytest.importorskip("transformers")
pytest.importorskip("openvino")

import modelport  # noqa: E402
from modelport.errors import UsageError  # noqa: E402
from tests.models.lm import SENTENCES, scheduled, tiny_lm  # noqa: E402

LINES = SENTENCES.read_text().splitlines()
PROMPTS = [" ".join(LINES[i : i + 1 + i % 3]) for i in range(8)]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    root = tmp_path_factory.mktemp("ov-state")
    folder = tiny_lm("llama", root / "hf", steps=300)
    return modelport.export(f"hf:{folder}", root / "bundle", task="text-generation").bundle.path


def test_stateful_openvino_gives_onnx_runtimes_tokens_and_logits(bundle):
    with modelport.load(bundle) as ort_lm, modelport.load(bundle, "openvino:f32", stateful=True) as ov_lm:
        assert ov_lm.describe()["kv_cache"] == "StateCache"
        assert [i.name for i in ov_lm.inputs()] == ["input_ids", "attention_mask", "position_ids"]  # no past
        ours = ov_lm.generate(PROMPTS[:3], max_new_tokens=16, ignore_eos=True)  # one left-padded batch
        theirs = ort_lm.generate(PROMPTS[:3], max_new_tokens=16, ignore_eos=True)
        assert [g.token_ids for g in ours] == [g.token_ids for g in theirs]
        assert ov_lm.describe()["kv_cache_held_as"] == "f32"
        prompt, continuation = ort_lm.encode(PROMPTS[3:4])[0], theirs[0].token_ids
        forced = np.array(ov_lm.score(prompt, continuation))
        assert np.abs(forced - np.array(ort_lm.score(prompt, continuation))).max() < 1e-3


def test_the_scheduler_moves_rows_in_and_out_of_openvinos_state(bundle):
    """8 requests through 3 slots: the running batch's cache is read out of the variables, merged with a
    prefill's, cut when rows leave and written back; every request still gets its solo tokens."""
    with modelport.load(bundle, "openvino:f32", stateful=True) as lm:
        prompts = lm.encode(PROMPTS)
        options = [dict(max_new_tokens=6 + 3 * i, ignore_eos=True) for i in range(len(prompts))]
        solo = [lm.generate([p], **o)[0].token_ids for p, o in zip(prompts, options, strict=True)]
        results, scheduler = scheduled(lm, prompts, options, max_running=3, prefill_tokens=64)
    assert [r.token_ids for r in results] == solo
    assert scheduler.steps < sum(len(s) for s in solo)


def test_optimize_measures_stateful_openvino_and_the_bundle_remembers_it(bundle, tmp_path):
    names = ["openvino-fp32-stateful", "openvino-int4-sym-128-stateful-kv-u8"]
    result = modelport.optimize(bundle, tmp_path / "ov", data=SENTENCES, candidates=names,
                                budget="top1>=0.5,ppl<=2,kl<=1")  # fmt: skip
    found = {c["name"]: c for c in result.to_json()["candidates"]}
    stateful = found["openvino-fp32-stateful"]
    assert stateful["runner_options"] == {"stateful": True} and stateful["search"]["top1"] > 0.99
    assert "the KV cache kept in OpenVINO's state" in stateful["steps"]
    # OpenVINO's CPU plugin compresses only the cache of attention it fuses; the report says what it kept
    assert found["openvino-int4-sym-128-stateful-kv-u8"]["runs_as"] in ("f32, KV cache f32", "f32, KV cache u8")
    chosen = result.to_json()["candidate"]
    with modelport.load(result.bundle.path) as lm:
        assert lm.name == "openvino:f32" and lm.describe()["kv_cache"] == "StateCache"
        assert found[chosen]["runner_options"] == result.bundle.optimization["runner_options"]
    assert modelport.verify(result.bundle.path).passed


@pytest.mark.parametrize(
    "backend, options, message",
    [
        ("ort:cpu", dict(stateful=True), "stateful decoding runs on OpenVINO, not ort:cpu"),
        ("openvino:f32", dict(kv_cache_precision="u8"), "KV cache precision 'u8' needs a stateful runner"),
        ("openvino:f32", dict(stateful=True, kv_cache_precision="u4"), "and one of: f32, f16, u8"),
        ("openvino:f32", dict(stateful=True, prefill="openvino:f32"), "it cannot take a prefill backend"),
        ("ort:cpu", dict(prefill="onnx:gpu"), "onnx:gpu"),
    ],
)
def test_state_options_that_do_not_apply_are_one_line(bundle, backend, options, message):
    with pytest.raises(UsageError, match=message):
        modelport.load(bundle, backend, **options)


def test_prompt_passes_on_openvino_and_steps_on_onnx_runtime_give_onnx_runtimes_tokens(bundle):
    with modelport.load(bundle) as ort_lm, modelport.load(bundle, prefill="openvino:f32") as both:
        described = both.describe()
        assert described["kv_cache"] == "PrefillCache" and described["backend"] == "ort:cpu"
        assert described["prefill"] == {"backend": "openvino:f32", "inference_precision": "f32"}
        ours = both.generate(PROMPTS[:3], max_new_tokens=16, ignore_eos=True)  # one left-padded batch
        theirs = ort_lm.generate(PROMPTS[:3], max_new_tokens=16, ignore_eos=True)
        assert [g.token_ids for g in ours] == [g.token_ids for g in theirs]
        prompt, continuation = ort_lm.encode(PROMPTS[3:4])[0], theirs[0].token_ids
        forced = np.array(both.score(prompt, continuation))  # the prompt's logits from OpenVINO, the rest ORT's
        assert np.abs(forced - np.array(ort_lm.score(prompt, continuation))).max() < 1e-3
        prompts = both.encode(PROMPTS)
        options = [dict(max_new_tokens=6 + 3 * i, ignore_eos=True) for i in range(len(prompts))]
        solo = [ort_lm.generate([p], **o)[0].token_ids for p, o in zip(prompts, options, strict=True)]
        results, _ = scheduled(both, prompts, options, max_running=3, prefill_tokens=64)
    assert [r.token_ids for r in results] == solo  # joiners prefilled on OpenVINO, merged, stepped on ORT


def test_optimize_measures_an_openvino_prefill_and_the_bundle_remembers_it(bundle, tmp_path):
    name = "int4-sym-128-prefill-openvino-f32"
    result = modelport.optimize(bundle, tmp_path / "pf", data=SENTENCES, candidates=[name],
                                budget="top1>=0.5,ppl<=2,kl<=1")  # fmt: skip
    found = {c["name"]: c for c in result.to_json()["candidates"]}
    assert found[name]["runner_options"] == {"prefill": "openvino:f32"} and found[name]["ttft_ms"] > 0
    assert "prompt passes on openvino:f32" in found[name]["steps"] and "on OpenVINO" not in found[name]["steps"]
    assert result.to_json()["candidate"] == name
    with modelport.load(result.bundle.path) as lm:
        assert lm.name == "ort:cpu" and lm.describe()["kv_cache"] == "PrefillCache"
    assert modelport.verify(result.bundle.path).passed
