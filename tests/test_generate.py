"""Generation bundles: causal LMs exported with a KV cache generate exactly transformers' greedy tokens.

Each named architecture is a tiny model (2 layers, hidden 64) trained for a few seconds on the repo's
sentences (tests/models/lm.py), so its greedy choices are decisive rather than near-ties.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import run_cli

pytestmark = [pytest.mark.slow, pytest.mark.hf]
transformers = pytest.importorskip("transformers")

import torch  # noqa: E402

import modelport  # noqa: E402
from modelport.errors import ParityError, UsageError  # noqa: E402
from tests.models.lm import ARCHITECTURES, SENTENCES, tiny_lm  # noqa: E402

LONG_TEXT = " ".join(SENTENCES.read_text().splitlines()[20:23]) + " The"  # ~100 tokens: far past the export example (5)


@pytest.fixture(scope="module", params=ARCHITECTURES)
def exported(request, tmp_path_factory):
    """(arch, hf folder, bundle) per architecture, exported the CLI's default way for a causal LM folder."""
    root = tmp_path_factory.mktemp(request.param)
    folder = tiny_lm(request.param, root / "hf")
    result = modelport.export(f"hf:{folder}", root / "bundle")
    return request.param, folder, result


def hf_greedy(folder: Path, texts: list[str], new: int) -> list[list[int]]:
    tok = transformers.AutoTokenizer.from_pretrained(folder)
    model = transformers.AutoModelForCausalLM.from_pretrained(folder).eval()
    out = []
    for text in texts:
        ids = torch.tensor([tok(text)["input_ids"]])
        with torch.no_grad():
            seq = model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=new,
                do_sample=False,
                pad_token_id=tok.pad_token_id,
            )
        out.append(seq[0, ids.shape[1] :].tolist())
    return out


def test_every_architecture_exports_verified_with_optimums_names(exported):
    arch, _, result = exported
    manifest = result.bundle.manifest
    gen = manifest["generation"]
    assert manifest["status"] == "verified" and result.parity.passed, result.parity.summary()
    names = {c.name for c in result.parity.checks}
    assert names == {"teacher-forced", "greedy", "long-context", "prompt-vs-steps", "batch-invariance"}
    assert gen["task"] == "text-generation" and gen["layout"]["layers"] == 2
    assert gen["layout"]["kv_heads"] == (4 if arch == "gpt2" else 2) and gen["layout"]["head_dim"] == 16
    assert gen["layout"]["kv_dtype"] == "float32" and gen["layout"]["max_context"] == 256
    # attention runs on the cache as it is (no copy per query head) wherever the graph is repeat_kv's;
    # GPT-2 has no KV groups, Gemma 2's soft-capped scores are left as exported
    assert gen["grouped_attention_layers"] == (0 if arch in ("gpt2", "gemma2") else 2)
    # every RMSNorm written as the division ONNX Runtime fuses: two a layer and the final one; Qwen 3 and
    # Gemma 3 norm queries and keys too, Gemma 2 and 3 norm around the attention and the MLP (four a layer)
    norms = {"gpt2": 0, "qwen3": 9, "gemma2": 9, "gemma3": 13}.get(arch, 5)
    assert gen["rms_norms_divided"] == norms
    assert gen["eos_token_ids"] == [0] and gen["tokenizer"] is True
    inputs = [i["name"] for i in manifest["inputs"]]
    assert inputs[:2] == ["input_ids", "attention_mask"] and "past_key_values.1.value" in inputs
    assert [o["name"] for o in manifest["outputs"]][:2] == ["logits", "present.0.key"]
    for name in ("tokenizer.json", "tokenizer_config.json", "generation_config.json"):
        assert name in manifest["files"]
    assert any("text-generation" in note for note in result.notes)


def test_generate_gives_transformers_greedy_tokens_for_long_prompts_and_batches(exported):
    arch, folder, result = exported
    texts = [LONG_TEXT, "She forgot her umbrella, so she waited under the awning until the rain eased. The"]
    want = hf_greedy(folder, texts, 24)
    with modelport.load(result.bundle.path) as lm:
        assert lm.describe()["kv_cache"] == "OrtCache"  # IO binding: the cache stays in ONNX Runtime
        prompt_lengths = [len(ids) for ids in lm.encode(texts)]
        assert min(prompt_lengths) >= 16 and max(prompt_lengths) >= 32
        alone = [lm.generate(t, max_new_tokens=24).token_ids for t in texts]
        together = [g.token_ids for g in lm.generate(texts, max_new_tokens=24)]  # one left-padded batch
    assert alone == want, arch
    assert together == want, arch


def test_a_plain_onnxruntime_loop_on_optimums_names_gives_the_same_tokens(exported):
    """What a user's existing optimum-style loop does: feed past_key_values.*, read present.*."""
    import onnxruntime as ort

    arch, folder, result = exported
    layout = result.bundle.manifest["generation"]["layout"]
    session = ort.InferenceSession(str(result.bundle.model_path), providers=["CPUExecutionProvider"])
    tok = transformers.AutoTokenizer.from_pretrained(folder)
    ids = np.array([tok(LONG_TEXT)["input_ids"]], np.int64)
    names = [i.name for i in session.get_inputs()]
    past = {n: np.zeros((1, layout["kv_heads"], 0, layout["head_dim"]), np.float32) for n in names if "past" in n}
    feed, new = {"input_ids": ids}, []
    for _ in range(20):
        length = feed["input_ids"].shape[1] + next(iter(past.values())).shape[2]
        feed["attention_mask"] = np.ones((1, length), np.int64)
        if "position_ids" in names:
            start = length - feed["input_ids"].shape[1]
            feed["position_ids"] = np.arange(start, length, dtype=np.int64)[None]
        outs = dict(zip([o.name for o in session.get_outputs()], session.run(None, {**feed, **past}), strict=True))
        token = int(outs["logits"][0, -1].argmax())
        new.append(token)
        past = {n: outs[n.replace("past_key_values", "present")] for n in past}
        feed = {"input_ids": np.array([[token]], np.int64)}
    reference = hf_greedy(folder, [LONG_TEXT], 20)[0]
    assert new[: len(reference)] == reference, arch


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    root = tmp_path_factory.mktemp("llama-one")
    folder = tiny_lm("llama", root / "hf")
    return folder, modelport.export(f"hf:{folder}", root / "bundle", task="text-generation").bundle.path


def test_cli_generate_json_matches_transformers_and_streams_the_same_text(llama):
    folder, bundle = llama
    proc = run_cli("generate", str(bundle), "--prompt", LONG_TEXT, "--max-new-tokens", "16", "--json")
    assert proc.returncode == 0, proc.stderr
    [result] = json.loads(proc.stdout)["results"]
    assert result["token_ids"] == hf_greedy(folder, [LONG_TEXT], 16)[0][: len(result["token_ids"])]
    assert result["finish_reason"] in ("stop", "length") and result["time_to_first_token_s"] > 0
    streamed = run_cli("generate", str(bundle), "--prompt", LONG_TEXT, "--max-new-tokens", "16")
    assert streamed.returncode == 0 and streamed.stdout.strip() == result["text"].strip()
    assert "finish:" in streamed.stderr


def test_stream_yields_the_tokens_generate_returns(llama):
    _, bundle = llama
    with modelport.load(bundle) as lm:
        stream = lm.stream(["The cat", LONG_TEXT], max_new_tokens=12)
        events = list(stream)
        results = lm.generate(["The cat", LONG_TEXT], max_new_tokens=12)
    for row, result in enumerate(results):
        assert [e.token_id for e in events if e.index == row] == result.token_ids
        assert "".join(e.text for e in events if e.index == row) == result.text
    assert [r.token_ids for r in stream.results] == [r.token_ids for r in results]


def test_sampling_is_reproducible_with_a_seed(llama):
    _, bundle = llama
    with modelport.load(bundle) as lm:
        runs = [
            lm.generate(LONG_TEXT, max_new_tokens=24, temperature=1.5, top_k=50, seed=s).token_ids for s in (7, 7, 8)
        ]
        greedy = lm.generate(LONG_TEXT, max_new_tokens=24).token_ids
    assert runs[0] == runs[1]
    assert runs[0] != runs[2] or runs[0] != greedy


def test_stop_strings_and_token_id_prompts(llama):
    _, bundle = llama
    with modelport.load(bundle) as lm:
        full = lm.generate(LONG_TEXT, max_new_tokens=24)
        stop = full.text[3:6]
        cut = lm.generate(LONG_TEXT, max_new_tokens=24, stop=[stop])
        by_ids = lm.generate([lm.encode([LONG_TEXT])[0]], max_new_tokens=24)[0]
    assert cut.finish_reason == "stop" and cut.text == full.text[: full.text.index(stop)]
    assert by_ids.token_ids == full.token_ids


def test_context_limits_say_both_numbers_and_stop_at_length(llama):
    _, bundle = llama
    with modelport.load(bundle) as lm:
        with pytest.raises(UsageError, match="is 300 tokens; the model's maximum context is 256"):
            lm.generate([[5] * 300])
        result = lm.generate([[5] * 250], max_new_tokens=20)[0]
    assert result.finish_reason == "length" and len(result.token_ids) <= 6
    assert "max_new_tokens 20 cut to 6" in result.notices[0]
    proc = run_cli("generate", str(bundle), "--input-ids", ",".join(["5"] * 300))
    assert proc.returncode == 2 and "maximum context is 256" in proc.stderr


def test_openvino_runs_the_same_loop(llama):
    pytest.importorskip("openvino")
    _, bundle = llama
    with modelport.load(bundle) as ort_lm, modelport.load(bundle, backend="openvino") as ov_lm:
        assert ov_lm.describe()["kv_cache"] == "ArrayCache"
        assert (
            ov_lm.generate(LONG_TEXT, max_new_tokens=16).token_ids
            == ort_lm.generate(LONG_TEXT, max_new_tokens=16).token_ids
        )


def test_verify_passes_and_fails_a_bundle_whose_cache_was_broken(llama, tmp_path):
    import onnx

    from modelport.bundle import file_table, write_manifest

    folder, bundle = llama
    proc = run_cli("verify", str(bundle))
    assert proc.returncode == 0, proc.stderr
    assert "generation: PASS" in proc.stdout
    broken = tmp_path / "broken"
    shutil.copytree(bundle, broken)
    model = onnx.load(broken / "model.onnx")
    concat = next(n for n in model.graph.node if n.output[0] == "present.0.value")
    concat.input[0], concat.input[1] = concat.input[1], concat.input[0]  # new values before the past: misaligned
    onnx.save(model, broken / "model.onnx")
    manifest = json.loads((broken / "modelport.json").read_text())
    manifest["files"] = file_table(broken)
    write_manifest(broken, manifest)
    with pytest.raises(ParityError, match=r"check '(teacher-forced|prompt-vs-steps)', prompt 0, step \d+ \(position"):
        modelport.verify(broken, model=f"hf:{folder}")
    proc = run_cli("verify", str(broken))
    assert proc.returncode == 1 and "does not generate PyTorch's tokens" in proc.stderr


def test_in_memory_model_with_its_tokenizer(tmp_path):
    from tests.models.lm import config, model_class, tokenizer, train

    tok = tokenizer()
    torch.manual_seed(0)
    model = model_class("qwen2")(config("qwen2"))
    train(model, tok, steps=100)
    result = modelport.export(
        model, tmp_path / "qwen2", task="text-generation", tokenizer=tok, data=["The cat slept", LONG_TEXT]
    )
    assert result.parity.passed and result.parity.data == "prompts given in Python"
    with modelport.load(result.bundle.path) as lm:
        assert lm.generate("The cat", max_new_tokens=8).text is not None


def test_errors_are_one_line(llama, tmp_path, minilm_bundle):
    folder, bundle = llama
    plain = tmp_path / "no-tokenizer"
    shutil.copytree(folder, plain)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (plain / name).unlink()
    no_tok = modelport.export(f"hf:{plain}", tmp_path / "bundle-no-tok").bundle.path
    with modelport.load(no_tok) as lm:
        with pytest.raises(UsageError, match="carries no tokenizer, so it cannot read text prompts"):
            lm.generate("hello")
        assert len(lm.generate([[5, 6, 7]], max_new_tokens=4)[0].token_ids) >= 1
    proc = run_cli("generate", str(no_tok), "--prompt", "hello")
    assert proc.returncode == 2 and "--input-ids" in proc.stderr
    proc = run_cli("generate", str(minilm_bundle), "--prompt", "hello")
    assert proc.returncode == 2 and "is not a generation bundle" in proc.stderr
    assert len([ln for ln in proc.stderr.splitlines() if ln.strip()]) <= 2
    encoder = tmp_path / "bert"
    transformers.BertModel(
        transformers.BertConfig(
            vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32
        )
    ).save_pretrained(encoder)
    proc = run_cli("export", f"hf:{encoder}", "--task", "text-generation", "-o", str(tmp_path / "b"))
    assert proc.returncode == 2 and "not a causal language model" in proc.stderr
    with modelport.load(bundle) as lm:
        with pytest.raises(UsageError, match="temperature -1 is not a number >= 0"):
            lm.generate("The cat", temperature=-1)
        with pytest.raises(UsageError, match="has token id 99999"):
            lm.generate([[1, 99999]])


def test_ctrl_c_mid_generation_exits_130_and_keeps_the_streamed_text(llama, tmp_path):
    """Each decode step is slowed down by a sitecustomize of the test's (never by modelport's code), which
    also says when the first step ran, so the interrupt lands mid-generation."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from tests.conftest import ROOT, subprocess_env

    _, bundle = llama
    marker = tmp_path / "started"
    (tmp_path / "sitecustomize.py").write_text(
        "import pathlib, time\n"
        "import modelport.generation.cache as cache\n"
        "step = cache.OrtCache.step\n"
        "def slow(self, feed):\n"
        f"    pathlib.Path({str(marker)!r}).touch()\n"
        "    time.sleep(0.05)\n"
        "    return step(self, feed)\n"
        "cache.OrtCache.step = slow\n"
    )
    env = subprocess_env()
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), env["PYTHONPATH"]])
    command = [sys.executable, "-m", "modelport", "generate", str(bundle), "--prompt", "The cat",
               "--max-new-tokens", "200", "--ignore-eos"]  # fmt: skip
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not marker.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(1.0)  # ~20 tokens in
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert stdout.strip(), "the text streamed before the interrupt is kept"
    assert "interrupted" in stderr
