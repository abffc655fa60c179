"""A local transformers folder (random weights from a small config): specs inferred, no hub."""

import numpy as np
import onnxruntime as ort
import pytest
import torch

from modelport.export import export
from modelport.sources import load_model

pytestmark = [pytest.mark.slow, pytest.mark.hf]


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(
        vocab_size=120,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("hf") / "tiny-bert"
    transformers.BertModel(config).save_pretrained(folder)
    return folder


def test_bert_folder_exports_with_inferred_inputs(bert_dir, tmp_path):
    result = export(f"hf:{bert_dir}", tmp_path / "bert")
    inputs = result.bundle.manifest["inputs"]
    assert [i["name"] for i in inputs] == ["input_ids", "attention_mask", "token_type_ids"]
    assert inputs[0]["range"] == [0, 120] and inputs[0]["dims"][1]["max"] == 64
    assert result.parity.passed
    sess = ort.InferenceSession(str(result.bundle.model_path), providers=["CPUExecutionProvider"])
    model = load_model(f"hf:{bert_dir}").module
    ids = np.random.default_rng(0).integers(0, 120, (3, 23)).astype(np.int64)
    mask = np.ones_like(ids)
    mask[1, 10:] = 0
    types = np.zeros_like(ids)
    got = sess.run(None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": types})
    with torch.inference_mode():
        want = model(
            input_ids=torch.from_numpy(ids),
            attention_mask=torch.from_numpy(mask),
            token_type_ids=torch.from_numpy(types),
        )
    np.testing.assert_allclose(got[0], want.last_hidden_state.numpy(), atol=1e-4, rtol=1e-3)


def test_dim_flag_narrows_inferred_inputs(bert_dir, tmp_path):
    from modelport.spec import parse_dim

    result = export(f"hf:{bert_dir}", tmp_path / "bert", dims=[parse_dim("seq=4..16")])
    assert result.bundle.manifest["inputs"][0]["dims"][1]["max"] == 16
