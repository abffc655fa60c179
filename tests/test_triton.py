"""``modelport triton``: a Triton model repository whose config.pbtxt, parsed back with Triton's own
model-config protobuf, says what the bundle is: dims with -1 for symbolic sizes, the batch dimension
and its verified bound, dynamic batching, the accelerator the bundle's backend asks for."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from modelport.scale.triton import triton_repository
from tests.conftest import ROOT, ZOO, one_error, run_cli

pb = pytest.importorskip("tritonclient.grpc.model_config_pb2")


def parse(folder: Path):
    from google.protobuf import text_format

    return text_format.Parse((folder / "config.pbtxt").read_text(), pb.ModelConfig())


def test_a_batched_model_gets_its_bound_and_dims_without_the_batch(classifier, tmp_path):
    (model,) = triton_repository([classifier], tmp_path / "repo", max_queue_delay_us=500, preferred_batch_sizes=[4, 2])
    config = parse(tmp_path / "repo" / "clf")
    assert config == model.config
    assert config.name == "clf" and config.platform == "onnxruntime_onnx" and config.max_batch_size == 8
    assert [(i.name, pb.DataType.Name(i.data_type), list(i.dims)) for i in config.input] == [("x", "TYPE_FP32", [32])]
    assert [(o.name, list(o.dims)) for o in config.output] == [("output", [10])]
    assert config.dynamic_batching.max_queue_delay_microseconds == 500
    assert list(config.dynamic_batching.preferred_batch_size) == [2, 4]
    assert config.instance_group[0].kind == pb.ModelInstanceGroup.KIND_CPU
    assert (tmp_path / "repo" / "clf" / "1" / "model.onnx").read_bytes() == (classifier / "model.onnx").read_bytes()


def test_a_fixed_shape_cnn_has_no_batch_dimension(tmp_path):
    import modelport

    cnn = tmp_path / "cnn"
    modelport.export(f"{ZOO}:dynamic_cnn", cnn, inputs=["x:2,3,h,16"], dims=["h=8..24"])
    (model,) = triton_repository([f"vision={cnn}"], tmp_path / "repo", platform="python", instances=2)
    config = parse(tmp_path / "repo" / "vision")
    assert config.backend == "python" and not config.platform and config.max_batch_size == 0
    assert list(config.input[0].dims) == [2, 3, -1, 16]
    assert not config.HasField("dynamic_batching") and config.instance_group[0].count == 2
    version = tmp_path / "repo" / "vision" / "1"
    assert (version / "model.py").is_file() and (version / "bundle" / "modelport.json").is_file()


@pytest.mark.slow
@pytest.mark.hf
def test_minilm_config_field_by_field(minilm_bundle, tmp_path):
    triton_repository([f"minilm={minilm_bundle}"], tmp_path / "repo")
    config = parse(tmp_path / "repo" / "minilm")
    assert config.max_batch_size == 16  # the batch bound the demo export verified
    inputs = [(i.name, pb.DataType.Name(i.data_type), list(i.dims)) for i in config.input]
    assert inputs == [(n, "TYPE_INT64", [-1]) for n in ("input_ids", "attention_mask", "token_type_ids")]
    outputs = [(o.name, list(o.dims)) for o in config.output]
    assert outputs == [("token_embeddings", [-1, 384]), ("sentence_embedding", [384])]


def test_an_existing_folder_is_never_touched(classifier, tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "mine.txt").write_text("keep")
    one_error(run_cli("triton", str(classifier), "-o", str(repo)), 2, "already exists")
    bad_platform = run_cli("triton", str(classifier), "-o", str(tmp_path / "r2"), "--platform", "tf")
    one_error(bad_platform, 2, "onnxruntime, python")
    assert [p.name for p in repo.iterdir()] == ["mine.txt"] and not (tmp_path / "r2").exists()
    proc = run_cli("triton", f"a={classifier}", "-o", str(tmp_path / "r3"))
    assert proc.returncode == 0 and "max_batch_size 8" in proc.stdout
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no staging left behind


TRITON_PYTHON = Path(os.environ.get("MODELPORT_TRITON_PYTHON") or ROOT / "build/peers/triton/venv/bin/python")
needs_triton = pytest.mark.skipif(not TRITON_PYTHON.exists(), reason="no Triton environment here: make triton-env")


def test_serving_on_triton_without_its_environment_says_how_to_make_one(classifier, monkeypatch):
    from modelport.errors import UsageError
    from modelport.scale.triton_server import serve_triton

    monkeypatch.delenv("MODELPORT_TRITON_PYTHON", raising=False)
    with pytest.raises(UsageError, match="no Triton environment given") as info:
        serve_triton([classifier], block=False)
    assert "make triton-env" in info.value.hint
    with pytest.raises(UsageError, match="has no nvidia-pytriton"):  # this interpreter: no Triton in it
        serve_triton([classifier], python=sys.executable, block=False)
    proc = run_cli("serve", "--engine", "triton", str(classifier), "--triton-python", "/nowhere/python")
    one_error(proc, 2, "no Python at /nowhere/python")


@pytest.mark.slow
@needs_triton
def test_bundles_served_by_a_real_triton_answer_like_run(classifier, tmp_path):
    """Triton 2.51 (the tritonserver in the nvidia-pytriton wheel, in an environment of its own: numpy < 2,
    modelport inside) on bundles, written as a Python-backend repository on the fly: tritonclient over HTTP
    and gRPC gets `modelport run`'s numbers; the server is gone after the block."""
    import numpy as np
    import tritonclient.grpc as tg
    import tritonclient.http as th

    import modelport
    from modelport.scale.triton_server import serve_triton

    x = np.random.default_rng(0).standard_normal((3, 32)).astype(np.float32)
    want = modelport.run(classifier, {"x": x}).outputs["output"]
    with serve_triton([classifier], python=TRITON_PYTHON, port=0, grpc_port=0, block=False) as server:
        assert server.names == ["clf"]
        for module, url in ((th, f"127.0.0.1:{server.port}"), (tg, f"127.0.0.1:{server.grpc_port}")):
            client = module.InferenceServerClient(url)
            tensor = module.InferInput("x", [3, 32], "FP32")
            tensor.set_data_from_numpy(x)
            np.testing.assert_array_equal(client.infer("clf", [tensor]).as_numpy("output"), want)
            client.close()
        work = server._work
    assert work is not None and not work.exists()  # the temp repository and backend folder are removed


@pytest.mark.slow
@needs_triton
def test_cli_serves_a_repository_on_triton_and_stops_on_sigterm(classifier, tmp_path):
    """The issue's path: `modelport triton BUNDLE -o repo --platform python`, then
    `modelport serve --engine triton repo`; SIGTERM stops Triton and the command exits 0."""
    import signal
    import subprocess
    import time

    import numpy as np
    import tritonclient.http as th

    import modelport

    assert run_cli("triton", str(classifier), "-o", str(tmp_path / "repo"), "--platform", "python").returncode == 0
    port, grpc = free_port(), free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "modelport", "serve", "--engine", "triton", str(tmp_path / "repo"),
         "--triton-python", str(TRITON_PYTHON), "--port", str(port), "--grpc-port", str(grpc)],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        line = proc.stderr.readline()  # type: ignore[union-attr]
        assert f"Triton serving clf on http://127.0.0.1:{port}" in line, line + proc.stderr.read()  # type: ignore[union-attr]
        x = np.ones((2, 32), np.float32)
        client = th.InferenceServerClient(f"127.0.0.1:{port}")
        tensor = th.InferInput("x", [2, 32], "FP32")
        tensor.set_data_from_numpy(x)
        got = client.infer("clf", [tensor]).as_numpy("output")
        client.close()
        np.testing.assert_array_equal(got, modelport.run(classifier, {"x": x}).outputs["output"])
        start = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0 and time.monotonic() - start < 30
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
