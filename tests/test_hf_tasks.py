"""Every row of the coverage table: a tiny folder (random weights) exported with no --input, verified, and
compared with PyTorch on inputs the export never saw; task choice, refusals and sentence-transformers."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest
import torch

from modelport.errors import SourceError, UsageError
from modelport.exporting import export
from modelport.sources import load_model
from modelport.sources.hf_tasks import folder_task, tasks
from tests.conftest import cli
from tests.models.hf_tasks import ROWS, build, model_class, sentence_transformers_folder

pytestmark = [pytest.mark.slow, pytest.mark.hf]


def unseen_feed(manifest: dict, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Inputs at sizes the verification feeds did not use (odd, not min/max), a padded text row included."""
    sizes = {"batch": 3, "images": 2, "seq": 11, "decoder_seq": 7, "samples": 12345, "height": 80, "width": 96}
    feed = {}
    for spec in manifest["inputs"]:
        shape = [d if isinstance(d, int) else sizes[d["name"]] for d in spec["dims"]]
        name = spec["name"]
        if name == "attention_mask":
            feed[name] = np.ones(shape, np.int64)
            feed[name][1, 7:] = 0
        elif name == "token_type_ids":
            feed[name] = np.zeros(shape, np.int64)
        elif name == "pixel_mask":
            feed[name] = np.ones(shape, np.int64)
        elif spec["dtype"] == "int64":
            feed[name] = rng.integers(spec["range"][0], spec["range"][1], shape).astype(np.int64)
        else:
            feed[name] = rng.standard_normal(shape).astype(np.float32)
    return feed


@pytest.mark.parametrize("row", ROWS, ids=["-".join(r) for r in ROWS])
def test_folder_exports_with_no_inputs_and_answers_like_pytorch(row, tmp_path):
    folder = build(row, tmp_path / "hf")
    assert folder_task(folder) == row[1]
    result = export(f"hf:{folder}", tmp_path / "out")
    manifest = result.bundle.manifest
    assert result.parity.passed and manifest["source"]["model"] == f"hf:{folder.resolve()}"
    feed = unseen_feed(manifest, np.random.default_rng(7))
    session = ort.InferenceSession(str(result.bundle.model_path), providers=["CPUExecutionProvider"])
    got = dict(zip([o.name for o in session.get_outputs()], session.run(None, feed), strict=True))
    module = load_model(f"hf:{folder}").module
    assert type(module).__name__ == model_class(row)
    with torch.inference_mode():
        want = module(**{k: torch.from_numpy(v) for k, v in feed.items()})
    for name, array in got.items():
        value = want
        for part in name.split("."):  # CLIP's text_model_output.last_hidden_state...
            value = value[part]
        np.testing.assert_allclose(array, value.numpy(), atol=1e-4, rtol=1e-3, err_msg=name)


def test_inputs_follow_the_model_kind(tmp_path):
    """What a user reads in the manifest: audio samples, mel frames, two towers with their own batches."""
    found = {}
    for row in [("wav2vec2", "automatic-speech-recognition"), ("whisper", "feature-extraction"),
                ("clip", "zero-shot-image-classification")]:  # fmt: skip
        signature = load_model(f"hf:{build(row, tmp_path / row[0])}").signature
        found[row[0]] = {s.name: s.dims for s in signature.inputs}, signature.dims
    audio, dims = found["wav2vec2"]
    assert audio == {"input_values": ("batch", "samples")} and dims["samples"].max == 32000
    assert found["whisper"][0] == {"input_features": ("batch", 80, 64), "decoder_input_ids": ("batch", "decoder_seq")}
    clip, dims = found["clip"]
    assert clip["pixel_values"] == ("images", 3, 32, 32) and clip["input_ids"] == ("batch", "seq")
    assert dims["seq"].max == 16  # CLIP's text positions, not the vision tower's


def test_task_picks_the_class_and_refuses_a_head_without_weights(tmp_path):
    masked = build(("bert", "fill-mask"), tmp_path / "mlm")
    names = [t.name for t in tasks(f"hf:{masked}")]
    assert names[0] == "fill-mask" and {"text-classification", "question-answering", "feature-extraction"} <= set(names)
    with pytest.raises(SourceError, match=r"no weights for BertForSequenceClassification's bert\.pooler") as info:
        export(f"hf:{masked}", tmp_path / "out", task="text-classification")
    assert "modelport tasks" in info.value.hint and not (tmp_path / "out").exists()
    with pytest.raises(UsageError, match="transformers has no automatic-speech-recognition model for bert"):
        export(f"hf:{masked}", tmp_path / "out", task="automatic-speech-recognition")
    with pytest.raises(UsageError, match="unknown task 'summarize'"):
        export(f"hf:{masked}", tmp_path / "out", task="summarize")


def test_task_is_recorded_so_verify_reloads_the_same_class(tmp_path):
    """A BertForPreTraining folder carries the MLM head: --task fill-mask loads BertForMaskedLM from it."""
    import transformers

    from modelport.verification.bundle import verify
    from tests.models.hf_tasks import TEXT

    folder = tmp_path / "pretraining"
    torch.manual_seed(0)
    transformers.BertForPreTraining(transformers.BertConfig(**TEXT)).save_pretrained(folder)
    result = export(f"hf:{folder}", tmp_path / "out", task="fill-mask")
    assert result.bundle.manifest["source"]["model"] == f"hf:{folder.resolve()}?task=fill-mask"
    assert [o["name"] for o in result.bundle.manifest["outputs"]] == ["logits"]
    assert verify(tmp_path / "out").passed


def test_tasks_command_lists_a_folders_tasks(tmp_path, capsys):
    folder = build(("wav2vec2", "automatic-speech-recognition"), tmp_path / "w2v")
    code, out, _ = cli(capsys, "tasks", f"hf:{folder}", "--json")
    assert code == 0
    listed = {t["name"]: t for t in json.loads(out)["tasks"]}
    assert listed["automatic-speech-recognition"] == {
        "name": "automatic-speech-recognition",
        "model_class": "Wav2Vec2ForCTC",
        "bundle": "one graph",
        "own": True,
    }
    assert "audio-classification" in listed and "text-generation" not in listed
    code, out, _ = cli(capsys, "tasks")
    assert code == 0 and "zero-shot-image-classification" in out and "sentence-similarity" in out
    code, _, err = cli(capsys, "tasks", f"hf:{tmp_path / 'nowhere'}")
    assert code == 2 and "does not exist" in err


# --- sentence-transformers folders: the pooling inside the graph ---------------------------------------


def sentence_folder(tmp_path, pooling: str, dense: bool):
    pytest.importorskip("sentence_transformers")
    return sentence_transformers_folder(tmp_path / "st", pooling, dense)


@pytest.mark.parametrize(("pooling", "dense"), [("mean", False), ("cls", True), ("lasttoken", False)])
def test_sentence_transformers_folder_answers_like_encode(tmp_path, pooling, dense):
    folder, model = sentence_folder(tmp_path, pooling, dense)
    assert folder_task(folder) == "sentence-similarity"
    result = export(f"hf:{folder}", tmp_path / "out")
    assert [o["name"] for o in result.bundle.manifest["outputs"]] == ["token_embeddings", "sentence_embedding"]
    texts = ["w1 w2 w3", "w4 w5 w6 w7 w8 w9 w10 w11 w12", "w13"]  # padded to the longest, as encode pads
    want = model.encode(texts, convert_to_numpy=True)
    batch = model.tokenizer(texts, padding=True, return_tensors="np")
    session = ort.InferenceSession(str(result.bundle.model_path), providers=["CPUExecutionProvider"])
    feed = {i.name: batch.get(i.name, 0 * batch["input_ids"]).astype(np.int64) for i in session.get_inputs()}
    got = session.run(["sentence_embedding"], feed)[0]
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-4)
    assert got.shape == (3, 16 if dense else 32)


def test_sentence_transformers_module_it_cannot_export_is_refused(tmp_path):
    folder, _ = sentence_folder(tmp_path, "mean", False)
    modules = json.loads((folder / "modules.json").read_text())
    modules.insert(2, {"idx": 9, "name": "9", "path": "9_LayerNorm", "type": "sentence_transformers.models.LayerNorm"})
    (folder / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(SourceError, match="sentence-transformers module 'LayerNorm' .* cannot be exported"):
        export(f"hf:{folder}", tmp_path / "out")
    modules[2]["path"], modules[2]["type"] = "../../elsewhere", "sentence_transformers.models.Dense"
    (folder / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(SourceError, match="module path '../../elsewhere' points outside the folder"):
        export(f"hf:{folder}", tmp_path / "out")


def test_non_square_images_keep_their_shape(tmp_path):
    import transformers

    from tests.models.hf_tasks import VISION

    folder = tmp_path / "wide"
    torch.manual_seed(0)
    config = transformers.ViTConfig(**{**VISION, "image_size": [32, 48]}, num_labels=2)
    transformers.ViTForImageClassification(config).save_pretrained(folder)
    result = export(f"hf:{folder}", tmp_path / "out")
    assert result.parity.passed and result.bundle.manifest["inputs"][0]["dims"][1:] == [3, 32, 48]
