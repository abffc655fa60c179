"""Encoder-decoder generation bundles: T5, BART, Marian (text to text) and Whisper (speech to text), exported
with an encoder graph and a cached decoder graph, generate exactly transformers' greedy tokens on inputs the
export never saw; Whisper reads WAV files through the CLI.

The models are tiny (2 layers, width 32) with wide random weights (tests/models/seq2seq.py), so greedy
choices are decisive.
"""

from __future__ import annotations

import json
import struct
import wave
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import cli

transformers = pytest.importorskip("transformers")

import torch  # noqa: E402

import modelport  # noqa: E402
from modelport.errors import UsageError  # noqa: E402
from modelport.generation.audio import read_wav  # noqa: E402
from modelport.generation.sampling import Forcing  # noqa: E402
from tests.models.seq2seq import ARCHITECTURES, EOS, tiny_seq2seq  # noqa: E402

# not the export's own sentences (verification.generation_prompts.DEFAULT_TEXTS)
TEXTS = ["A short one.", "The committee met on Tuesday to discuss the budget, but nothing was decided before lunch."]
NEW = 20


_EXPORTS: dict[str, tuple] = {}


def _export(arch: str, tmp_path_factory) -> tuple:
    """(arch, hf folder, the export's result), exported once per architecture, the task named explicitly."""
    if arch not in _EXPORTS:
        root = tmp_path_factory.mktemp(arch)
        folder = tiny_seq2seq(arch, root / "hf")
        task = "automatic-speech-recognition" if arch == "whisper" else "text2text-generation"
        exporter = "trace" if arch == "marian" else "auto"  # the fallback strategy gets its own proof (and is quick)
        _EXPORTS[arch] = (arch, folder, modelport.export(f"hf:{folder}", root / "bundle", task=task, exporter=exporter))
    return _EXPORTS[arch]


@pytest.fixture(scope="module", params=ARCHITECTURES)
def exported(request, tmp_path_factory):
    return _export(request.param, tmp_path_factory)


@pytest.fixture(scope="module")
def whisper(tmp_path_factory):
    return _export("whisper", tmp_path_factory)


@pytest.fixture(scope="module")
def t5(tmp_path_factory):
    return _export("t5", tmp_path_factory)


def clip(seconds: float, seed: int) -> np.ndarray:
    """A 16 kHz test signal the export never heard: a random two-tone chord with noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(16_000 * seconds)) / 16_000
    low, high = rng.uniform(100, 400), rng.uniform(1000, 3000)
    return (
        0.3 * np.sin(2 * np.pi * low * t) + 0.2 * np.sin(2 * np.pi * high * t) + 0.05 * rng.standard_normal(t.size)
    ).astype(np.float32)


def hf_generate(folder: Path, arch: str, inputs: list, new: int = NEW) -> list[list[int]]:
    """transformers' greedy generate, one input at a time: the new tokens (after the decoder's start)."""
    model_class = (
        transformers.WhisperForConditionalGeneration if arch == "whisper" else transformers.AutoModelForSeq2SeqLM
    )
    model = model_class.from_pretrained(folder).eval()
    out = []
    for item in inputs:
        if arch == "whisper":
            extractor = transformers.WhisperFeatureExtractor.from_pretrained(folder)
            feed = {"input_features": extractor(item, sampling_rate=16_000, return_tensors="pt").input_features}
        else:
            feed = dict(transformers.AutoTokenizer.from_pretrained(folder)(item, return_tensors="pt"))
        with torch.no_grad():
            seq = model.generate(**feed, max_new_tokens=new, do_sample=False)[0].tolist()
        out.append(seq if arch == "whisper" else seq[1:])  # Whisper's generate returns the new tokens only
    return out


def write_wav(path: Path, samples: np.ndarray, rate: int = 16_000, bits: int = 16) -> Path:
    if bits == 32 and samples.dtype == np.float32:  # IEEE float: the stdlib wave module writes PCM only
        data = samples.astype("<f4").tobytes()
        fmt = struct.pack("<HHIIHH", 3, 1, rate, rate * 4, 4, 32)
        path.write_bytes(
            b"RIFF" + struct.pack("<I", 4 + 8 + len(fmt) + 8 + len(data)) + b"WAVE"
            + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
        )  # fmt: skip
        return path
    scale = 2 ** (bits - 1) - 1
    ints = np.round(np.clip(samples, -1, 1) * scale).astype(f"<i{bits // 8}")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(bits // 8)
        out.setframerate(rate)
        out.writeframes(ints.tobytes())
    return path


# -- fast: no export --------------------------------------------------------------------------------------
def test_forcing_suppresses_and_forces_as_transformers_does():
    scores = np.arange(12, dtype=np.float32).reshape(2, 6)
    rules = Forcing(suppress=(5,), begin_suppress=(4,), forced_eos=(1,))
    first = rules.apply(scores, 0, 3)
    assert first.argmax(-1).tolist() == [3, 3] and np.isneginf(first[:, [4, 5]]).all()
    assert rules.apply(scores, 1, 3).argmax(-1).tolist() == [4, 4]  # begin_suppress only at the first token
    assert rules.apply(scores, 2, 3).argmax(-1).tolist() == [1, 1]  # the last token allowed is end-of-sequence
    assert Forcing(forced_bos=2).apply(scores, 0, 3).argmax(-1).tolist() == [2, 2]
    late = Forcing(eos=(5,), min_eos_step=2)
    assert [late.apply(scores, step, 9).argmax(-1).tolist() for step in range(3)] == [[4, 4], [4, 4], [5, 5]]
    assert not Forcing()


def test_read_wav_reads_pcm16_pcm32_and_float(tmp_path):
    samples = clip(0.25, 1) * 0.9
    for bits, tolerance in ((16, 1e-4), (32, 1e-8)):
        got = read_wav(write_wav(tmp_path / f"pcm{bits}.wav", samples, bits=bits))
        assert got.dtype == np.float32 and np.abs(got - samples).max() < tolerance
    got = read_wav(write_wav(tmp_path / "float.wav", samples, bits=32))
    assert np.array_equal(got, samples)


def test_read_wav_refuses_another_rate_and_broken_files_with_the_fix(tmp_path):
    with pytest.raises(UsageError, match="sampled at 8000 Hz; the model reads 16000 Hz audio") as caught:
        read_wav(write_wav(tmp_path / "slow.wav", clip(0.1, 0), rate=8000))
    assert "ffmpeg -i IN -ar 16000" in caught.value.hint
    (tmp_path / "junk.wav").write_bytes(b"not a wav file at all")
    with pytest.raises(UsageError, match="is not a WAV file"):
        read_wav(tmp_path / "junk.wav")
    with pytest.raises(UsageError, match="does not exist"):
        read_wav(tmp_path / "missing.wav")


# -- exported ---------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.hf
def test_every_architecture_exports_verified_with_optimums_names(exported):
    arch, _, result = exported
    manifest = result.bundle.manifest
    gen = manifest["generation"]
    assert manifest["status"] == "verified" and result.parity.passed, result.parity.summary()
    assert {c.name for c in result.parity.checks} == {"teacher-forced", "greedy", "batch-invariance"}
    assert gen["task"] == ("automatic-speech-recognition" if arch == "whisper" else "text2text-generation")
    assert gen["layout"]["layers"] == 2 and gen["layout"]["kv_heads"] == 4 and gen["layout"]["head_dim"] == 8
    inputs = [i["name"] for i in manifest["inputs"]]
    assert inputs[0] == "input_ids" and "past_key_values.1.encoder.value" in inputs
    assert ("encoder_attention_mask" in inputs) == (arch != "whisper")
    assert [o["name"] for o in manifest["outputs"]][:2] == ["logits", "present.0.decoder.key"]
    encoder_outputs = [o["name"] for o in gen["encoder"]["outputs"]]
    assert encoder_outputs[:2] == ["last_hidden_state", "present.0.encoder.key"]
    files = set(manifest["files"])
    assert {"model.onnx", "encoder_model.onnx", "tokenizer.json", "generation_config.json"} <= files
    assert ("preprocessor_config.json" in files) == (arch == "whisper")
    assert manifest["capture"]["strategy"] == ("trace" if arch == "marian" else "dynamo")
    if arch == "whisper":
        assert gen["decoder_prompt"] == [3] and gen["forcing"]["suppress"] == [4, 5]
    if arch in ("bart", "marian"):
        assert gen["forcing"]["forced_eos"] == [EOS]


@pytest.mark.slow
@pytest.mark.hf
def test_generate_gives_transformers_tokens_on_unseen_inputs_alone_and_batched(exported):
    arch, folder, result = exported
    inputs = [clip(0.45, 7), clip(1.3, 8)] if arch == "whisper" else TEXTS
    want = hf_generate(folder, arch, inputs)
    assert any(len(set(w)) > 2 for w in want), want  # the tiny model says something, not one token over and over
    with modelport.load(result.bundle.path) as model:
        assert type(model).__name__ == "Seq2SeqModel"
        call = (lambda x: model.generate(audio=x, max_new_tokens=NEW)) if arch == "whisper" else (
            lambda x: model.generate(x, max_new_tokens=NEW)
        )  # fmt: skip
        alone = [call(item) for item in inputs]
        assert [g.token_ids for g in alone] == want
        together = call(inputs)  # one batch: text right-padded, audio padded/cut to the window
        assert [g.token_ids for g in together] == want
    for got in alone:
        assert got.finish_reason == ("stop" if got.token_ids[-1] == EOS else "length")
        assert isinstance(got.text, str)


@pytest.mark.slow
@pytest.mark.hf
def test_whisper_transcribes_a_wav_file_through_the_cli(whisper, tmp_path, capsys):
    arch, folder, result = whisper
    samples = clip(0.8, 11)
    wav = write_wav(tmp_path / "speech.wav", samples)
    code, out, err = cli(
        capsys, "generate", str(result.bundle.path), "--audio", str(wav), "--max-new-tokens", "12", "--json"
    )
    assert code == 0, err
    [got] = json.loads(out)["results"]
    assert got["token_ids"] == hf_generate(folder, arch, [read_wav(wav)], 12)[0]
    assert set(got) >= {"text", "token_ids", "finish_reason"}

    slow = write_wav(tmp_path / "slow.wav", samples[::2], rate=8000)
    code, _, err = cli(capsys, "generate", str(result.bundle.path), "--audio", str(slow))
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2 and "sampled at 8000 Hz; the model reads 16000 Hz audio" in err and len(lines) <= 2, err
    assert "Traceback" not in err

    code, _, err = cli(capsys, "generate", str(result.bundle.path), "--prompt", "hello")
    assert code == 2 and "reads audio, not text" in err, err


@pytest.mark.slow
@pytest.mark.hf
def test_text_to_text_through_the_cli_and_verify(t5, capsys):
    arch, folder, result = t5
    code, out, err = cli(capsys, "generate", str(result.bundle.path), "-p", TEXTS[1], "--max-new-tokens", "8", "--json")
    assert code == 0, err
    [got] = json.loads(out)["results"]
    assert got["token_ids"] == hf_generate(folder, arch, [TEXTS[1]], 8)[0]
    code, _, err = cli(capsys, "generate", str(result.bundle.path), "--audio", "x.wav")
    assert code == 2 and "reads text, not audio" in err, err
    report = modelport.verify(result.bundle.path, data=["Something new to check against.", "Another line."])
    assert report.passed and report.data == "prompts given in Python"


@pytest.mark.slow
@pytest.mark.hf
def test_the_array_cache_path_gives_the_same_tokens(t5):
    """The portable cache (numpy arrays in and out, as OpenVINO runs it) against the IO-binding one."""
    from modelport.generation.cache import ArrayCache

    _, _, result = t5
    with modelport.load(result.bundle.path) as model:
        bound = [g.token_ids for g in model.generate(TEXTS, max_new_tokens=NEW)]
        model._cache = ArrayCache(model.runner, model.layout)
        assert [g.token_ids for g in model.generate(TEXTS, max_new_tokens=NEW)] == bound


@pytest.mark.slow
@pytest.mark.hf
def test_verify_fails_a_bundle_whose_cross_attention_layers_were_swapped(t5, tmp_path):
    """The encoder graph's cross keys of layer 0 and 1 relabelled by hand (hashes rewritten to match): the
    teacher-forced check fails at the first step and names it."""
    import shutil

    import onnx

    from modelport.bundle import file_table, write_manifest
    from modelport.errors import ParityError

    _, folder, result = t5
    broken = tmp_path / "broken"
    shutil.copytree(result.bundle.path, broken)
    graph = onnx.load(str(broken / "encoder_model.onnx"))
    swap = {"present.0.encoder.key": "present.1.encoder.key", "present.1.encoder.key": "present.0.encoder.key"}
    for node in graph.graph.node:
        node.output[:] = [swap.get(name, name) for name in node.output]
    for value in graph.graph.output:
        value.name = swap.get(value.name, value.name)
    onnx.save(graph, str(broken / "encoder_model.onnx"))
    manifest = json.loads((broken / "modelport.json").read_text())
    manifest["files"] = file_table(broken)
    write_manifest(broken, manifest)
    with pytest.raises(ParityError, match="check 'teacher-forced', prompt 0, step 0") as caught:
        modelport.verify(broken, f"hf:{folder}")
    assert "does not generate PyTorch's tokens" in caught.value.message


def _multilingual_whisper(folder: Path, language: str | None) -> Path:
    """The tiny Whisper with a multilingual generation config (language and task tokens, <|notimestamps|> and
    the timestamp ids above it at the top of the vocabulary, as real checkpoints have them)."""
    tiny_seq2seq("whisper", folder)
    model = transformers.WhisperForConditionalGeneration.from_pretrained(folder)
    config = model.generation_config
    config.lang_to_id, config.task_to_id = {"<|en|>": 310, "<|fr|>": 311}, {"transcribe": 312, "translate": 313}
    config.no_timestamps_token_id, config.language, config._from_model_config = 318, language, False
    model.save_pretrained(folder)
    return folder


@pytest.mark.slow
@pytest.mark.hf
def test_whisper_starts_from_the_language_task_and_notimestamps_tokens_of_its_config(tmp_path):
    folder = _multilingual_whisper(tmp_path / "hf", "fr")
    task = "automatic-speech-recognition"
    result = modelport.export(f"hf:{folder}", tmp_path / "bundle", task=task, exporter="trace")
    assert result.bundle.manifest["generation"]["decoder_prompt"] == [3, 311, 312, 318] and result.parity.passed
    audio = clip(0.6, 21)
    with modelport.load(result.bundle.path) as model:
        assert model.generate(audio=audio, max_new_tokens=NEW).token_ids == hf_generate(folder, "whisper", [audio])[0]


@pytest.mark.slow
@pytest.mark.hf
def test_a_language_the_config_leaves_open_is_detected_per_input_as_transformers_does(tmp_path):
    folder = _multilingual_whisper(tmp_path / "hf", None)
    model = transformers.WhisperForConditionalGeneration.from_pretrained(folder)
    model.generation_config.forced_decoder_ids = [[1, None], [2, 312]]  # as real multilingual checkpoints have it
    model.save_pretrained(folder)
    task = "automatic-speech-recognition"
    result = modelport.export(f"hf:{folder}", tmp_path / "bundle", task=task, exporter="trace")
    gen = result.bundle.manifest["generation"]
    assert gen["decoder_prompt"] == [3, 312, 318] and gen["detect_language"] == {"at": 1, "ids": [310, 311]}
    clips = [clip(0.2, 40), clip(0.5, 41), clip(0.9, 42)]
    with modelport.load(result.bundle.path) as bundle:
        fixed = bundle.encode(bundle.encoder_feed(clips))
        assert {p[1] for p in bundle.prompts(fixed, 3)} == {310, 311}  # one batch, two languages
        got = [g.token_ids for g in bundle.generate(audio=clips, max_new_tokens=NEW)]
    assert got == hf_generate(folder, "whisper", clips)


@pytest.mark.slow
@pytest.mark.hf
def test_commands_that_would_see_only_the_decoder_refuse_the_bundle(t5, tmp_path, capsys):
    bundle = str(t5[2].bundle.path)
    for args in (
        ("optimize", bundle, "-o", str(tmp_path / "o")),
        ("bench", bundle),
        ("triton", bundle, "-o", str(tmp_path / "t")),
    ):
        code, _, err = cli(capsys, *args)
        assert code == 2 and "is an encoder-decoder bundle" in err and "modelport generate" in err, (args, err)
    assert not (tmp_path / "o").exists() and not (tmp_path / "t").exists()


@pytest.mark.slow
@pytest.mark.hf
def test_the_generation_configs_bad_words_and_minimum_length_hold_as_in_transformers(tmp_path):
    """A BART that wants to end at once (its final logits bias end-of-sequence) and a config that bans one token
    and asks for 12 tokens at least: the bundle generates what transformers' generate does."""
    folder = tiny_seq2seq("bart", tmp_path / "hf")
    model = transformers.BartForConditionalGeneration.from_pretrained(folder)
    with torch.no_grad():
        model.final_logits_bias[0, EOS] = 1e3
    texts = ["The cat sat on the mat.", "Rain again today."]
    model.generation_config.update(bad_words_ids=[[95], [96, 97]], min_length=12, _from_model_config=False)
    model.save_pretrained(folder)
    result = modelport.export(f"hf:{folder}", tmp_path / "bundle", task="text2text-generation", exporter="trace")
    forcing = result.bundle.manifest["generation"]["forcing"]
    assert forcing["suppress"] == [95] and forcing["min_eos_step"] == 11 and forcing["eos"] == [EOS]
    assert any("bad_words_ids of several tokens" in note for note in result.notes)
    want = hf_generate(folder, "bart", texts)
    assert [len(w) for w in want] == [12, 12] and all(w[-1] == EOS for w in want)
    with modelport.load(result.bundle.path) as bundle:
        assert [bundle.generate(t, max_new_tokens=NEW).token_ids for t in texts] == want
