"""Local transformers folders (random weights from small configs): inputs inferred, no hub, caches off."""

import numpy as np
import onnxruntime as ort
import pytest
import torch

from modelport.exporting import export
from modelport.sources import load_model
from modelport.spec import parse_dim

pytestmark = [pytest.mark.slow, pytest.mark.hf]


def build(name):
    t = pytest.importorskip("transformers")
    torch.manual_seed(0)
    if name == "bert":
        return t.BertModel(
            t.BertConfig(
                vocab_size=120,
                hidden_size=32,
                num_hidden_layers=2,
                num_attention_heads=4,
                intermediate_size=64,
                max_position_embeddings=64,
            )
        )
    if name == "gpt2":
        return t.GPT2Model(
            t.GPT2Config(vocab_size=120, n_embd=32, n_layer=2, n_head=4, n_positions=64, bos_token_id=0, eos_token_id=0)
        )
    if name == "vit":
        return t.ViTModel(
            t.ViTConfig(
                image_size=32,
                patch_size=8,
                hidden_size=32,
                num_hidden_layers=2,
                num_attention_heads=4,
                intermediate_size=64,
            )
        )
    if name == "t5-encoder":
        return t.T5EncoderModel(t.T5Config(vocab_size=120, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4))
    raise KeyError(name)


@pytest.fixture(scope="module", params=["bert", "gpt2", "vit", "t5-encoder"])
def hf_dir(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp("hf") / request.param
    build(request.param).save_pretrained(folder)
    return request.param, folder


def test_exports_with_auto_and_answers_right_with_padding(hf_dir, tmp_path):
    name, folder = hf_dir
    result = export(f"hf:{folder}", tmp_path / name)
    manifest = result.bundle.manifest
    assert manifest["capture"]["requested"] == "auto" and result.parity.passed
    assert len({tuple(r.sizes.items()) for r in result.parity.results}) >= 2
    assert not any("past_key_values" in o["name"] for o in manifest["outputs"])  # caches off
    names = [i["name"] for i in manifest["inputs"]]
    rng = np.random.default_rng(0)
    if name == "vit":
        assert names == ["pixel_values"] and manifest["inputs"][0]["dims"][1:] == [3, 32, 32]
        feed = {"pixel_values": rng.standard_normal((3, 3, 32, 32)).astype(np.float32)}
    else:
        assert names[:2] == ["input_ids", "attention_mask"] and manifest["inputs"][0]["range"] == [0, 120]
        ids = rng.integers(0, 120, (3, 23)).astype(np.int64)
        mask = np.ones_like(ids)
        mask[1, 10:] = 0  # a padded row
        feed = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in names:
            feed["token_type_ids"] = np.zeros_like(ids)
    sess = ort.InferenceSession(str(result.bundle.model_path), providers=["CPUExecutionProvider"])
    got = sess.run(None, feed)
    with torch.inference_mode():
        want = load_model(f"hf:{folder}").module(**{k: torch.from_numpy(v) for k, v in feed.items()})
    np.testing.assert_allclose(got[0], want.last_hidden_state.numpy(), atol=1e-4, rtol=1e-3)


def test_dim_flag_narrows_inferred_inputs(tmp_path_factory, tmp_path):
    folder = tmp_path_factory.mktemp("hf") / "bert"
    build("bert").save_pretrained(folder)
    result = export(f"hf:{folder}", tmp_path / "bert", dims=[parse_dim("seq=4..16")])
    assert result.bundle.manifest["inputs"][0]["dims"][1]["max"] == 16
