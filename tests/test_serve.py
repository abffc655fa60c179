"""``modelport serve``: the Open Inference Protocol v2 over HTTP and gRPC, checked with tritonclient (the
client people have) against ``modelport run`` on the same feeds; every error class with its status and
body; batching that merges concurrent requests (visible in the metrics); a drain on SIGTERM."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

import modelport
from tests.conftest import one_error, run_cli, subprocess_env

th = pytest.importorskip("tritonclient.http")
tg = pytest.importorskip("tritonclient.grpc")
from tritonclient.utils import InferenceServerException  # noqa: E402


def rows(count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((count, 32)).astype(np.float32)


def call(url: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, dict]:
    """Status and JSON body of a raw HTTP request (errors included)."""
    request = urllib.request.Request(url + path, data=body, headers=headers or {}, method="POST" if body else "GET")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else {}
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        return exc.code, json.loads(raw) if raw else {}


def infer_body(array: np.ndarray, name: str = "x", datatype: str = "FP32", **extra) -> bytes:
    tensor = {"name": name, "shape": list(array.shape), "datatype": datatype, "data": array.ravel().tolist()}
    return json.dumps({"inputs": [tensor], **extra}).encode()


def metric(url: str, name: str, model: str = "clf") -> float:
    text = urllib.request.urlopen(url + "/metrics", timeout=30).read().decode()
    found = re.search(rf'^{name}{{model="{model}",version="1"}} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


@pytest.fixture(scope="module")
def clf(classifier) -> Path:
    return classifier


@pytest.fixture(scope="module")
def server(clf):
    with modelport.serve([clf], port=0, grpc_port=0, threads=1, max_request_bytes=2**20, block=False) as running:
        yield running


@pytest.fixture(scope="module")
def http(server):
    return th.InferenceServerClient(server.url.removeprefix("http://"))


@pytest.fixture(scope="module")
def grpc_client(server):
    return tg.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")


def expected(clf: Path, x: np.ndarray) -> np.ndarray:
    return modelport.run(clf, {"x": x}).outputs["output"]


# -- answers ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_http_answers_what_run_answers(server, http, clf, binary):
    x = rows(3)
    tensor = th.InferInput("x", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x, binary_data=binary)
    result = http.infer("clf", [tensor], outputs=[th.InferRequestedOutput("output", binary_data=binary)])
    np.testing.assert_array_equal(result.as_numpy("output"), expected(clf, x))


def test_grpc_answers_what_run_answers(grpc_client, clf):
    x = rows(2, seed=1)
    tensor = tg.InferInput("x", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)
    result = grpc_client.infer("clf", [tensor], request_id="r-7")
    np.testing.assert_array_equal(result.as_numpy("output"), expected(clf, x))
    assert result.get_response().id == "r-7"


def test_async_clients_answer_too(server, clf):
    import asyncio

    import tritonclient.grpc.aio as tga
    import tritonclient.http.aio as tha

    x = rows(1, seed=2)

    async def both() -> list[np.ndarray]:
        h = tha.InferenceServerClient(server.url.removeprefix("http://"))
        g = tga.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
        try:
            hi, gi = tha.InferInput("x", [1, 32], "FP32"), tga.InferInput("x", [1, 32], "FP32")
            hi.set_data_from_numpy(x)
            gi.set_data_from_numpy(x)
            results = await asyncio.gather(h.infer("clf", [hi]), g.infer("clf", [gi]))
            return [r.as_numpy("output") for r in results]
        finally:
            await h.close()
            await g.close()

    for got in asyncio.run(both()):
        np.testing.assert_array_equal(got, expected(clf, x))


def test_request_id_is_echoed_and_json_data_may_be_nested(server, clf):
    x = rows(2, seed=3)
    body = json.dumps({"id": "abc", "inputs": [{"name": "x", "shape": [2, 32], "datatype": "FP32",
                                                 "data": x.tolist()}]}).encode()  # fmt: skip
    status, answer = call(server.url, "/v2/models/clf/infer", body)
    assert status == 200 and answer["id"] == "abc" and answer["model_name"] == "clf"
    (out,) = answer["outputs"]
    assert out["name"] == "output" and out["datatype"] == "FP32" and out["shape"] == [2, 10]
    np.testing.assert_allclose(np.array(out["data"], np.float32).reshape(2, 10), expected(clf, x), rtol=1e-6)


# -- health and metadata ------------------------------------------------------------------------------


def test_health_and_metadata(server, http, grpc_client):
    assert http.is_server_live() and http.is_server_ready() and http.is_model_ready("clf")
    assert grpc_client.is_server_live() and grpc_client.is_model_ready("clf")
    meta = http.get_model_metadata("clf")
    assert meta["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 32]}]
    assert meta["outputs"] == [{"name": "output", "datatype": "FP32", "shape": [-1, 10]}]
    assert meta["versions"] == ["1"] and meta["platform"] == "onnxruntime_onnx"
    assert "binary_tensor_data" in http.get_server_metadata()["extensions"]
    assert grpc_client.get_model_metadata("clf").inputs[0].shape == [-1, 32]
    assert call(server.url, "/v2/models/clf/versions/1")[0] == 200


def test_a_bare_onnx_file_is_served_under_the_name_given(clf):
    x = rows(2, seed=4)
    with modelport.serve([f"fast={clf / 'model.onnx'}"], port=0, grpc_port=None, block=False) as running:
        client = th.InferenceServerClient(running.url.removeprefix("http://"))
        meta = client.get_model_metadata("fast")
        tensor = th.InferInput("x", [2, 32], "FP32")
        tensor.set_data_from_numpy(x)
        got = client.infer("fast", [tensor]).as_numpy("output")
    assert meta["inputs"][0]["shape"] == [-1, 32] and meta["outputs"][0]["datatype"] == "FP32"
    np.testing.assert_array_equal(got, expected(clf, x))


# -- errors: status and body ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body", "status", "fragment"),
    [
        ("/v2/models/clf/infer", infer_body(rows(1).astype(np.float64), datatype="FP64"), 400,
         "float64, the model expects float32"),
        ("/v2/models/clf/infer", infer_body(rows(1).reshape(1, 1, 32)), 400, "rank 2"),
        ("/v2/models/clf/infer", infer_body(rows(1), name="y"), 400, "no input 'y'"),
        ("/v2/models/clf/infer", infer_body(np.zeros((1, 31), np.float32)), 400, "axis 1 is 31"),
        ("/v2/models/clf/infer", infer_body(rows(9)), 400, "at most 8 per request"),
        ("/v2/models/clf/infer", json.dumps({"inputs": []}).encode(), 400, "no feed for input(s) x"),
        ("/v2/models/clf/infer", b"{not json", 400, "not JSON"),
        ("/v2/models/clf/infer", infer_body(rows(1), datatype="FP33"), 400, "datatype 'FP33'"),
        ("/v2/models/clf/infer", json.dumps({"inputs": [{"name": "x", "shape": [1, 32], "datatype": "FP32",
                                                          "data": [1.0] * 5}]}).encode(), 400, "has 5 values"),
        ("/v2/models/clf/infer", infer_body(rows(1), outputs=[{"name": "probs"}]), 400, "no output 'probs'"),
        ("/v2/models/nope/infer", infer_body(rows(1)), 404, "unknown model 'nope'; served: clf"),
        ("/v2/models/clf/versions/2/infer", infer_body(rows(1)), 404, "no version '2'"),
        ("/v2/models/../clf/infer", infer_body(rows(1)), 404, ""),
    ],
    ids=["dtype", "rank", "name", "fixed-dim", "too-many-rows", "missing", "not-json", "datatype", "count",
         "output", "model", "version", "path"],
)  # fmt: skip
def test_a_clients_mistake_gets_its_status_and_one_error(server, path, body, status, fragment):
    got, answer = call(server.url, path, body)
    assert got == status, answer
    assert list(answer) == ["error"] and fragment in answer["error"], answer


def test_json_that_only_pythons_json_writes_is_read_and_a_get_on_infer_is_405(server):
    """tritonclient's JSON comes from json.dumps, which writes NaN for a NaN input: the server reads it."""
    feed = rows(1)
    feed[0, 3] = np.nan
    body = infer_body(feed)
    assert b"NaN" in body
    status, answer = call(server.url, "/v2/models/clf/infer", body)
    assert status == 200 and answer["outputs"][0]["shape"] == [1, 10], answer
    status, answer = call(server.url, "/v2/models/clf/infer")
    assert status == 405 and answer == {"error": "Method Not Allowed"}


def test_a_body_over_the_limit_is_refused_unread(server):
    import http.client

    host, port = server.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    connection.putrequest("POST", "/v2/models/clf/infer")
    connection.putheader("Content-Length", str(2**30))  # announced, never sent
    connection.endheaders()
    response = connection.getresponse()
    assert response.status == 413 and "over the limit of 1048576" in json.loads(response.read())["error"]


def test_binary_data_that_does_not_add_up_is_refused(server):
    header = json.dumps({"inputs": [{"name": "x", "shape": [1, 32], "datatype": "FP32",
                                     "parameters": {"binary_data_size": 128}}]}).encode()  # fmt: skip
    for tail, fragment in ((b"\0" * 100, "exceeds the binary data left"), (b"\0" * 132, "belong to no input")):
        got, answer = call(
            server.url, "/v2/models/clf/infer", header + tail, {"Inference-Header-Content-Length": str(len(header))}
        )
        assert got == 400 and fragment in answer["error"], answer


def test_grpc_errors_carry_their_codes(grpc_client):
    bad = tg.InferInput("x", [1, 31], "FP32")
    bad.set_data_from_numpy(np.zeros((1, 31), np.float32))
    with pytest.raises(InferenceServerException) as caught:
        grpc_client.infer("clf", [bad])
    assert caught.value.status() == "StatusCode.INVALID_ARGUMENT" and "axis 1 is 31" in caught.value.message()
    with pytest.raises(InferenceServerException) as caught:
        grpc_client.get_model_metadata("nope")
    assert caught.value.status() == "StatusCode.NOT_FOUND"


def test_a_token_guards_every_route_but_health(clf):
    with modelport.serve([clf], port=0, grpc_port=0, threads=1, token="s3cret", block=False) as running:
        assert call(running.url, "/v2/health/ready")[0] == 200
        status, answer = call(running.url, "/v2/models/clf/infer", infer_body(rows(1)))
        assert status == 401 and "bearer token" in answer["error"]
        assert call(running.url, "/metrics")[0] == 401
        ok = call(running.url, "/v2/models/clf/infer", infer_body(rows(1)), {"Authorization": "Bearer s3cret"})
        assert ok[0] == 200
        g = tg.InferenceServerClient(f"127.0.0.1:{running.grpc_port}")
        with pytest.raises(InferenceServerException, match="bearer token"):
            g.get_model_metadata("clf")
        assert g.get_model_metadata("clf", headers={"authorization": "Bearer s3cret"}).name == "clf"


def test_a_full_queue_answers_503(clf):
    """One slot in the queue and a long batching delay: the first request waits there, the second is refused."""
    with modelport.serve([clf], port=0, grpc_port=None, threads=1, max_queue_size=1, max_queue_delay_us=1_500_000,
                         block=False) as running:  # fmt: skip
        first = threading.Thread(target=call, args=(running.url, "/v2/models/clf/infer", infer_body(rows(1))))
        first.start()
        time.sleep(0.5)
        status, answer = call(running.url, "/v2/models/clf/infer", infer_body(rows(1)))
        first.join()
    assert status == 503 and "queued; retry later" in answer["error"]


# -- batching -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("batching", "max_batch_size", "executions"),
    [(True, None, 1), (True, 4, 2), (False, None, 4)],
    ids=["batched", "at-most-4-rows", "one-by-one"],
)
def test_concurrent_requests_are_merged_and_split_back_exactly(clf, batching, max_batch_size, executions):
    """Four requests of 7 rows in all arrive together: one execution, or two under a 4-row cap (whatever
    the order they queue in), or four without batching; each answer is its own rows."""
    sizes = [1, 2, 1, 3]
    feeds = [rows(n, seed=10 + i) for i, n in enumerate(sizes)]
    with modelport.serve([clf], port=0, grpc_port=None, threads=1, batching=batching, max_queue_delay_us=300_000,
                         max_batch_size=max_batch_size, block=False) as running:  # fmt: skip
        # tritonclient's own concurrency (greenlets): its HTTP client must not be shared between threads
        client = th.InferenceServerClient(running.url.removeprefix("http://"), concurrency=4)
        pending = []
        for feed in feeds:
            tensor = th.InferInput("x", list(feed.shape), "FP32")
            tensor.set_data_from_numpy(feed)
            pending.append(client.async_infer("clf", [tensor]))
        answers = {i: request.get_result().as_numpy("output") for i, request in enumerate(pending)}
        executed = metric(running.url, "nv_inference_exec_count")
        inferences = metric(running.url, "nv_inference_count")
        successes = metric(running.url, "nv_inference_request_success")
    for i, x in enumerate(feeds):
        np.testing.assert_allclose(answers[i], expected(clf, x), rtol=1e-5, atol=1e-6)
    assert successes == 4 and inferences == sum(sizes)  # warm-up runs are not requests
    assert executed == executions


# -- the command: errors, access log, drain on SIGTERM ------------------------------------------------


def test_serving_nothing_that_exists_is_one_line(tmp_path):
    one_error(run_cli("serve", str(tmp_path / "missing")), 2, "does not exist")
    one_error(run_cli("serve", f"bad/name={tmp_path}"), 2, "cannot be served")


def test_a_batch_cap_below_one_or_for_another_engine_is_one_line(clf):
    one_error(run_cli("serve", str(clf), "--max-batch-size", "0"), 2, "--max-batch-size must be at least 1")
    one_error(run_cli("serve", str(clf), "--max-batch-size", "4", "--engine", "ray"), 2, "applies to --engine")


def test_serve_in_python_refuses_what_the_engine_would_drop_before_starting_anything(clf):
    """modelport.serve decides the engine, as `serve --engine` does: an option the engine would not
    honour (a token Triton would not check) is refused before any server or Ray starts."""
    from modelport.errors import UsageError

    cases = [
        ({"engine": "triton", "token": "secret"}, "--token applies to --engine modelport or ray, not triton"),
        ({"engine": "ray", "max_batch_size": 4}, "--max-batch-size applies to --engine modelport, not ray"),
        ({"engine": "modelport", "replicas": 2}, "--replicas applies to --engine ray, not modelport"),
        ({"engine": "triton", "check_ranges": False}, "--no-range-check applies to --engine modelport or ray"),
        ({"engine": "ray", "autoscale": "4"}, "--autoscale '4' is not MIN..MAX"),
        ({"engine": "nginx"}, "unknown engine 'nginx'"),
    ]
    for options, message in cases:
        with pytest.raises(UsageError, match=re.escape(message)):
            modelport.serve([clf], block=False, **options)


def test_a_port_in_use_is_one_line(clf):
    import socket

    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = str(taken.getsockname()[1])
        one_error(run_cli("serve", str(clf), "--port", port, "--no-grpc"), 2, f"cannot listen on 127.0.0.1:{port}")
        one_error(run_cli("serve", str(clf), "--port", "0", "--grpc-port", port), 2, "--grpc-port")


@pytest.mark.slow
def test_sigterm_lets_the_request_in_flight_finish_and_exits_0(clf):
    env = subprocess_env()
    proc = subprocess.Popen(
        [sys.executable, "-m", "modelport", "serve", str(clf), "--port", "0", "--no-grpc", "--threads", "1",
         "--max-queue-delay", "1000000"],
        stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        line = proc.stderr.readline()
        url = re.search(r"on (http://\S+?)[,\s]", line).group(1)  # type: ignore[union-attr]
        answer: list[tuple[int, dict]] = []
        sender = threading.Thread(target=lambda: answer.append(call(url, "/v2/models/clf/infer", infer_body(rows(2)))))
        sender.start()
        time.sleep(0.4)  # the request now waits in the batch queue
        proc.send_signal(signal.SIGTERM)
        sender.join(30)
        code = proc.wait(30)
        log = proc.stderr.read()
    finally:
        proc.kill()
    assert answer and answer[0][0] == 200, answer
    assert code == 0, log
    access = [json.loads(ln) for ln in log.splitlines() if ln.startswith("{")]
    assert any(e["path"] == "/v2/models/clf/infer" and e["status"] == 200 for e in access), log


# -- all-MiniLM-L6-v2: the issue's case ---------------------------------------------------------------


def sentence_feed(batch: int, seq: int, seed: int = 0) -> dict[str, np.ndarray]:
    ids = np.random.default_rng(seed).integers(0, 30522, (batch, seq)).astype(np.int64)
    return {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}


def serve_cli(*args: str) -> tuple[subprocess.Popen[str], str, int]:
    """``modelport serve`` in a process of its own: the process, its HTTP URL and gRPC port."""
    env = subprocess_env()
    proc = subprocess.Popen(
        [sys.executable, "-m", "modelport", "serve", *args, "--port", "0", "--grpc-port", "0"],
        stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    line = proc.stderr.readline()
    found = re.search(r"on (http://\S+?), gRPC \S+:(\d+)", line)
    assert found, line + (proc.stderr.read() if proc.poll() is not None else "")
    return proc, found.group(1), int(found.group(2))


@pytest.mark.slow
@pytest.mark.hf
def test_minilm_answers_tritonclient_like_run_over_every_transport(minilm_bundle):
    feed = sentence_feed(2, 24)
    want = modelport.run(minilm_bundle, feed).outputs
    with modelport.serve([minilm_bundle], port=0, grpc_port=0, block=False) as running:
        h = th.InferenceServerClient(running.url.removeprefix("http://"))
        g = tg.InferenceServerClient(f"127.0.0.1:{running.grpc_port}")
        for client, module, binary in ((h, th, False), (h, th, True), (g, tg, True)):
            inputs = []
            for name, array in feed.items():
                tensor = module.InferInput(name, list(array.shape), "INT64")
                if module is th:
                    tensor.set_data_from_numpy(array, binary_data=binary)
                else:
                    tensor.set_data_from_numpy(array)
                inputs.append(tensor)
            result = client.infer(minilm_bundle.name, inputs)
            for name, array in want.items():
                np.testing.assert_array_equal(result.as_numpy(name), array, err_msg=f"{module.__name__} {binary}")


def rss_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+)", status).group(1))  # type: ignore[union-attr]


@pytest.mark.slow
@pytest.mark.hf
def test_load_32_clients_for_a_minute_without_errors_or_growth(minilm_bundle):
    """The issue's load test: 32 concurrent clients on MiniLM (1, 128) for 60 s; every answer right, and the
    server's memory after the first 10 s grows by at most 5%."""
    import asyncio

    import tritonclient.http.aio as tha

    feed = sentence_feed(1, 128)
    want = modelport.run(minilm_bundle, feed).outputs["sentence_embedding"]
    proc, url, _ = serve_cli(str(minilm_bundle), "--log-level", "warning")
    counts = {"ok": 0, "wrong": 0, "errors": 0}
    rss: list[int] = []

    async def client(stop: float) -> None:
        c = tha.InferenceServerClient(url.removeprefix("http://"))
        try:
            while time.monotonic() < stop:
                inputs = []
                for name, array in feed.items():
                    tensor = tha.InferInput(name, list(array.shape), "INT64")
                    tensor.set_data_from_numpy(array)
                    inputs.append(tensor)
                try:
                    result = await c.infer(minilm_bundle.name, inputs)
                except Exception:
                    counts["errors"] += 1
                    continue
                good = np.allclose(result.as_numpy("sentence_embedding"), want, atol=1e-4)
                counts["ok" if good else "wrong"] += 1
        finally:
            await c.close()

    async def load() -> None:
        start = time.monotonic()
        clients = asyncio.gather(*(client(start + 60) for _ in range(32)))
        await asyncio.sleep(10)
        rss.append(rss_kib(proc.pid))
        await clients
        rss.append(rss_kib(proc.pid))

    try:
        asyncio.run(load())
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)
    finally:
        proc.kill()
    assert counts["errors"] == 0 and counts["wrong"] == 0 and counts["ok"] > 100, counts
    assert rss[1] <= rss[0] * 1.05, f"RSS grew from {rss[0]} KiB to {rss[1]} KiB"
    assert code == 0


def test_modelport_serve_stays_the_function_once_its_package_is_loaded():
    """The package is ``modelport.serving``: a subpackage named ``serve`` would replace the function as
    ``modelport.serve`` as soon as anything imported it (it did, in CI)."""
    import modelport.scale  # noqa: F401 - imports modelport.serving
    import modelport.serving.server  # noqa: F401

    assert callable(modelport.serve) and modelport.serve.__name__ == "serve"


def test_a_model_whose_batch_runs_under_a_millisecond_runs_on_the_event_loop(clf, monkeypatch):
    """The classifier's 8-row execution takes microseconds: a thread hand-off would cost more than the run.
    Under a zero allowance the same model goes to the worker thread. Its ONNX Runtime pool stops spinning
    when a run returns (a server's event loop needs those cores between runs)."""
    from modelport.serving import models

    served = models.ServedModel(models.ModelSource("clf", clf), None, 1)
    served.load(warmup=1)
    assert served.inline and served.batch.max == 8
    assert served.runner.describe()["session_config"] == {"session.force_spinning_stop": "1"}
    monkeypatch.setattr(models, "INLINE_S", 0.0)
    served.load(warmup=1)
    assert not served.inline
    served.close()
