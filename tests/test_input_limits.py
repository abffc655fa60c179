"""Inputs are held to the bundle's declared spec wherever a model runs, and hostile request bodies get a 4xx.

The cases a hostile user found on the demo MiniLM bundle: a negative token id (ONNX ``Gather`` wraps it to
the end of the vocabulary, so it answered another token's embedding), a batch of 0 (declared ``batch`` >= 1),
a shape of ``[0, 2**63]``, JSON nested 100,000 deep (both were 500s), and a body over the limit whose 413
never reached the client (the connection was reset first).
"""

from __future__ import annotations

import http.client
import json
import subprocess
import sys

import numpy as np
import pytest

import modelport
from modelport.errors import FeedError
from tests.conftest import ZOO, one_error, run_cli

th = pytest.importorskip("tritonclient.http")
tg = pytest.importorskip("tritonclient.grpc")
from tritonclient.utils import InferenceServerException  # noqa: E402

IDS = np.array([[101, -5, 2000, 102]], np.int64)
RANGE = "outside its declared range 0..30522 (integers 0 to 30521)"


def feed(ids: np.ndarray) -> dict[str, np.ndarray]:
    return {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}


def body(ids, shape=None, datatype: str = "INT64") -> bytes:
    ids = np.asarray(ids)
    shape = list(ids.shape) if shape is None else shape
    inputs = [{"name": name, "shape": shape, "datatype": datatype, "data": value.ravel().tolist()}
              for name, value in feed(ids).items()]  # fmt: skip
    return json.dumps({"inputs": inputs}).encode()


def post(url: str, data: bytes, path: str = "/v2/models/minilm/infer") -> tuple[int, dict]:
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    connection.request("POST", path, data, {"Content-Type": "application/json"})
    response = connection.getresponse()
    raw = response.read()
    connection.close()
    return response.status, json.loads(raw) if raw else {}


@pytest.fixture(scope="module")
def minilm(minilm_bundle):
    return minilm_bundle


@pytest.fixture(scope="module")
def server(minilm):
    with modelport.serve(
        [f"minilm={minilm}"], port=0, grpc_port=0, threads=1, max_request_bytes=2**20, block=False
    ) as running:
        yield running


# -- the feed layer: load(...)(...) and run -------------------------------------------------------------


def test_a_negative_token_id_is_refused_in_python_naming_the_input_value_and_range(minilm):
    with modelport.load(minilm) as model:
        with pytest.raises(FeedError) as caught:
            model(feed(IDS))
        answer = model(feed(np.array([[101, 30521, 2000, 102]], np.int64)))  # the last id of the vocabulary
    assert f"input 'input_ids' holds -5 at [0, 1], {RANGE}" in caught.value.one_line()
    assert "--no-range-check (check_ranges=False)" in caught.value.one_line()
    assert np.isfinite(answer["sentence_embedding"]).all()


def test_check_ranges_false_runs_it_and_says_so(minilm):
    with modelport.load(minilm, check_ranges=False) as model:
        wrapped = model(feed(IDS))["sentence_embedding"]
        assert any("range checks off" in w for w in model.warnings)
    with modelport.load(minilm) as model:  # what Gather answers for -5: the row of id 30522 - 5
        last = model(feed(np.array([[101, 30522 - 5, 2000, 102]], np.int64)))["sentence_embedding"]
    np.testing.assert_allclose(wrapped, last, atol=1e-6)  # the silent wrong answer the check refuses


def test_run_refuses_a_negative_id_with_exit_2_and_no_range_check_runs_it(minilm, tmp_path):
    files = []
    for name, value in feed(IDS).items():
        np.save(tmp_path / f"{name}.npy", value)
        files += ["--feed", f"{name}={tmp_path / name}.npy"]
    one_error(run_cli("run", str(minilm), *files), 2, "input 'input_ids' holds -5 at [0, 1]", RANGE)
    proc = run_cli("run", str(minilm), *files, "--no-range-check", "--json")
    assert proc.returncode == 0, proc.stderr
    assert any("holds -5" in w and "(range check off)" in w for w in json.loads(proc.stdout)["warnings"])


def test_a_dim_outside_its_declared_bounds_is_refused(minilm):
    manifest = json.loads((minilm / "modelport.json").read_text())
    seq = next(d for d in manifest["inputs"][0]["dims"] if isinstance(d, dict) and d["name"] == "seq")
    too_long = np.ones((1, seq["max"] + 1), np.int64)
    with modelport.load(minilm) as model:
        for ids, fragment in ((np.ones((0, 4), np.int64), "dimension 'batch' is 0 in input 'input_ids', outside "
                               "its declared range 1.."),
                              (too_long, f"dimension 'seq' is {seq['max'] + 1} in input 'input_ids', outside its "
                               f"declared range {seq['min']}..{seq['max']}")):  # fmt: skip
            with pytest.raises(FeedError, match="declared range") as caught:
                model(feed(ids))
            assert fragment in caught.value.one_line()


def test_a_float_input_with_a_declared_range_refuses_nan_and_values_past_its_ends(tmp_path):
    out = tmp_path / "ranged"
    modelport.export(f"{ZOO}:classifier", out, inputs=["x:batch,32:float32:-3..3"], dims=["batch=1..8"])
    x = np.zeros((1, 32), np.float32)
    with modelport.load(out) as model:
        model(x=np.full((1, 32), 3.0, np.float32))  # the ends are inside
        for value, shown in ((np.nan, "nan"), (3.5, "3.5"), (-np.inf, "-inf")):
            x[0, 7] = value
            with pytest.raises(FeedError, match=rf"input 'x' holds {shown} at \[0, 7\], outside its declared range"):
                model(x=x)


def test_batch_writes_a_row_outside_the_range_to_the_errors_file(minilm, tmp_path):
    pytest.importorskip("pyarrow")
    folder = tmp_path / "rows"
    folder.mkdir()
    np.savez(folder / "good.npz", **feed(np.array([[101, 2000, 102]], np.int64)))
    np.savez(folder / "bad.npz", **feed(IDS))
    report = modelport.batch(minilm, folder, tmp_path / "out.parquet")
    assert (report.written, report.failed) == (1, 1)
    (line,) = report.errors.read_text().splitlines()
    assert "holds -5" in json.loads(line)["error"]
    unchecked = modelport.batch(minilm, folder, tmp_path / "all.parquet", check_ranges=False)
    assert (unchecked.written, unchecked.failed, unchecked.to_json()["check_ranges"]) == (2, 0, False)


# -- serve: HTTP and gRPC -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (body(IDS), f"input 'input_ids' holds -5 at [0, 1], {RANGE}"),
        (body(np.zeros((0, 4), np.int64)), "dimension 'batch' is 0 in input 'input_ids', outside its declared range"),
        (body(np.zeros((0, 4), np.int64), shape=[0, 2**63]), "sizes must be integers from 0 to 2147483647"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (
            b'{"inputs": [{"name": "input_ids", "shape": [1, 1], "datatype": "INT64", "data": '
            + b"[" * 100_000
            + b"]" * 100_000
            + b"}]}",
            "nested too deeply",
        ),
        (body(IDS, shape=[1] * 40), "at most 32 are supported"),
    ],
    ids=["negative-id", "batch-0", "huge-dim", "deep-body", "deep-data", "rank-40"],
)
def test_a_clients_mistake_is_a_400_with_one_error(server, data, fragment):
    status, answer = post(server.url, data)
    assert status == 400, answer
    assert list(answer) == ["error"] and fragment in answer["error"], answer
    ok, good = post(server.url, body([[101, 2000, 102]]))
    assert ok == 200 and [o["shape"] for o in good["outputs"]] == [[1, 3, 384], [1, 384]]  # the server is unaffected


def test_grpc_refuses_a_negative_id_as_invalid_argument(server):
    client = tg.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
    tensors = []
    for name, value in feed(IDS).items():
        tensor = tg.InferInput(name, list(value.shape), "INT64")
        tensor.set_data_from_numpy(value)
        tensors.append(tensor)
    with pytest.raises(InferenceServerException) as caught:
        client.infer("minilm", tensors)
    assert caught.value.status() == "StatusCode.INVALID_ARGUMENT" and "holds -5" in caught.value.message()


def test_a_body_over_the_limit_gets_its_413_to_the_client_and_the_server_stays_up(server):
    """The body is really sent (5 MB over a 1 MiB limit): the client reads the 413, not a reset."""
    big = b'{"inputs": [' + b" " * (5 * 2**20) + b"]}"
    for _ in range(3):
        status, answer = post(server.url, big)
        assert status == 413 and "over the limit of 1048576" in answer["error"], answer
    assert post(server.url, body([[101, 102]]))[0] == 200


@pytest.mark.slow
def test_serve_no_range_check_answers_and_says_so_at_start(minilm):
    proc = subprocess.Popen(
        [sys.executable, "-m", "modelport", "serve", f"minilm={minilm}", "--port", "0", "--no-grpc",
         "--no-range-check", "--log-level", "warning"],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        line = proc.stderr.readline()  # type: ignore[union-attr]
        assert "range checks off" in line, line
        url = line.split(" on ")[1].split(" ")[0]
        status, answer = post(url, body(IDS))
        assert status == 200 and answer["outputs"][1]["shape"] == [1, 384], answer
    finally:
        proc.terminate()
        proc.wait(60)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr.read()  # type: ignore[union-attr]
