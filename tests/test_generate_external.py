"""A generation bundle whose weights live in external data, split the way a >2 GB model's are.

A model over protobuf's 2 GB limit keeps its weights in ``model.onnx.data`` beside the graph. The 1.1 B run of
``benchmarks/generate/big.py`` exercises that at full size; here the same path runs on a tiny trained LLaMA
with the size threshold lowered, so every step a user takes (export, verify, optimize, generate) sees a
bundle split that way, and a changed weight file is caught.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from tests.conftest import run_cli

pytestmark = [pytest.mark.slow, pytest.mark.hf]
pytest.importorskip("transformers")

import modelport  # noqa: E402
from modelport.errors import BundleError  # noqa: E402
from tests.models.lm import tiny_lm  # noqa: E402
from tests.test_generate import hf_greedy  # noqa: E402

PROMPT = "The children built a fort out of blankets and chairs. The"
LOOSE = "top1>=0.5,ppl<=1.5,kl<=0.5"


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    """(hf folder, bundle) exported with the weights in external data, as above the 2 GB limit."""
    root = tmp_path_factory.mktemp("external")
    folder = tiny_lm("llama", root / "hf")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("modelport.capture.decoder.EXTERNAL_DATA_BYTES", 1)  # every model counts as "big"
        result = modelport.export(f"hf:{folder}", root / "bundle", task="text-generation")
    return folder, result.bundle.path


def test_the_weights_live_beside_the_graph_and_every_file_is_in_the_manifest(split):
    _, bundle = split
    manifest = json.loads((bundle / "modelport.json").read_text())
    assert manifest["status"] == "verified"
    graph = onnx.load(str(bundle / "model.onnx"), load_external_data=False).graph
    weights = [t for t in graph.initializer if np.prod(t.dims) >= 1024]
    assert weights and all(t.data_location == onnx.TensorProto.EXTERNAL for t in weights)
    assert {e.value for t in weights for e in t.external_data if e.key == "location"} == {"model.onnx.data"}
    on_disk = {f.name for f in bundle.iterdir() if f.is_file() and f.name != "modelport.json"}
    assert on_disk == set(manifest["files"]) and "model.onnx.data" in manifest["files"]


def test_verify_and_generate_read_the_external_weights(split):
    folder, bundle = split
    proc = run_cli("verify", str(bundle))
    assert proc.returncode == 0, proc.stderr
    proc = run_cli("generate", str(bundle), "-p", PROMPT, "--max-new-tokens", "12", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["results"][0]["token_ids"] == hf_greedy(folder, [PROMPT], 12)[0]


def test_int4_of_a_split_bundle_keeps_its_own_external_data_and_generates(split, tmp_path):
    _, bundle = split
    out = tmp_path / "int4"
    result = modelport.optimize(bundle, out, precision="int4", candidates=["int4-sym-32"], budget=LOOSE)
    assert result.bundle is not None and result.search.chosen.name == "int4-sym-32"
    manifest = json.loads((out / "modelport.json").read_text())
    assert "model.onnx.data" in manifest["files"]
    fp32 = (bundle / "model.onnx.data").stat().st_size
    assert (out / "model.onnx.data").stat().st_size < 0.4 * fp32  # int4 weights, not the fp32 ones copied
    with modelport.load(out) as lm:
        assert len(lm.generate([PROMPT], max_new_tokens=8, ignore_eos=True)[0].token_ids) == 8


def test_a_changed_weight_file_is_refused_in_one_line(split, tmp_path):
    _, bundle = split
    copy = tmp_path / "bundle"
    copy.mkdir()
    for file in bundle.iterdir():
        (copy / file.name).write_bytes(file.read_bytes())
    data = bytearray((copy / "model.onnx.data").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (copy / "model.onnx.data").write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"bundle file model\.onnx\.data changed since export"):
        modelport.load(copy)
    proc = run_cli("generate", str(copy), "-p", PROMPT)
    assert proc.returncode != 0 and "model.onnx.data changed since export" in proc.stderr
    assert "Traceback" not in proc.stderr
