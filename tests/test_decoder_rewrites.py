"""The generation export's rewrites of a captured decoder answer as the export did:

- grouped-query attention computed on the cache as it is (``capture.grouped_attention``): the per-head
  copies of the cache gone, and a graph whose attention is not ``repeat_kv``'s left exactly as it was, with
  the reason;
- RMSNorm as a division (``capture.rms_norm``): ONNX Runtime then fuses every norm into one operation."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.hf]
pytest.importorskip("transformers")

import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402

from modelport.capture.decoder import export_decoder, layout_of  # noqa: E402
from modelport.capture.grouped_attention import group_attention  # noqa: E402
from modelport.capture.rewrite import rewrite_in_place  # noqa: E402
from modelport.capture.rms_norm import DivideRMSNorm  # noqa: E402
from tests.models.lm import config, model_class  # noqa: E402


def captured(arch: str, path):
    import torch

    torch.manual_seed(0)
    cfg = config(arch)
    cfg._attn_implementation = "eager"
    model = model_class(arch)(cfg).eval()
    layout = layout_of(model)
    export_decoder(model, layout, path, "dynamo", 18)
    return layout


def feeds(layout, rng):
    past = 9
    shape = (2, layout.kv_heads, past, layout.head_dim)
    cache = {name: rng.standard_normal(shape).astype(np.float32) for name in layout.past_names}
    mask = np.ones((2, past + 1), np.int64)
    mask[1, :4] = 0  # a left-padded row
    step = {"input_ids": np.array([[5], [9]]), "attention_mask": mask, "position_ids": np.array([[past], [past - 4]])}
    prompt = {"input_ids": rng.integers(0, layout.vocab_size, (2, 6)), "attention_mask": np.ones((2, 6), np.int64),
              "position_ids": np.tile(np.arange(6), (2, 1)), **{n: c[:, :, :0] for n, c in cache.items()}}  # fmt: skip
    return [{**step, **cache}, prompt]


def answer_alike(layout, before, after):
    """The graphs at ``before`` and ``after`` give the same outputs (1e-5) for a decode step and a prompt pass."""
    exported, rewritten = (ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]) for p in (before, after))
    for feed in feeds(layout, np.random.default_rng(0)):
        for want, got in zip(exported.run(None, feed), rewritten.run(None, feed), strict=True):
            np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)


def ops(path) -> list[str]:
    return [n.op_type for n in onnx.load(str(path)).graph.node]


def test_grouped_attention_answers_as_the_export_did_without_copying_the_cache(tmp_path):
    before, after = tmp_path / "exported.onnx", tmp_path / "model.onnx"
    layout = captured("llama", before)
    after.write_bytes(before.read_bytes())
    done = group_attention(after)
    assert done.grouped == layout.layers == 2 and done.refused == []
    assert ops(before).count("Expand") - ops(after).count("Expand") == 2 * layout.layers  # keys and values
    onnx.checker.check_model(str(after), full_check=True)
    answer_alike(layout, before, after)


def test_attention_without_kv_groups_is_left_as_it_was_with_the_reason(tmp_path):
    path = tmp_path / "model.onnx"
    captured("gpt2", path)
    original = path.read_bytes()
    done = group_attention(path)
    assert done.grouped == 0 and len(done.refused) == 2
    assert "not Reshape" in done.refused[0] or "not Transpose" in done.refused[0], done.refused[0]
    assert path.read_bytes() == original  # not even rewritten


def fused(path, tmp_path) -> list[str]:
    """The operations ONNX Runtime runs for the graph at ``path`` (its optimized graph, written out)."""
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "fused.onnx")
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return ops(tmp_path / "fused.onnx")


def test_rms_norm_as_a_division_answers_the_same_and_is_fused_by_onnx_runtime(tmp_path):
    before, after = tmp_path / "exported.onnx", tmp_path / "model.onnx"
    layout = captured("llama", before)
    after.write_bytes(before.read_bytes())
    (done,) = rewrite_in_place(after, DivideRMSNorm())
    assert done.rewritten == 2 * layout.layers + 1  # two a layer and the final norm
    assert "Reciprocal" in ops(before) and "Reciprocal" not in ops(after)
    assert "SimplifiedLayerNormalization" not in fused(before, tmp_path)
    assert fused(after, tmp_path).count("SimplifiedLayerNormalization") == done.rewritten
    answer_alike(layout, before, after)


def test_a_graph_without_rms_norm_is_not_rewritten(tmp_path):
    path = tmp_path / "model.onnx"
    captured("gpt2", path)  # LayerNorm: its Sqrt feeds a Div already, and no Reciprocal
    original = path.read_bytes()
    (done,) = rewrite_in_place(path, DivideRMSNorm())
    assert done.rewritten == 0 and path.read_bytes() == original
