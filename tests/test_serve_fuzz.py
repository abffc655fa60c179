"""schemathesis over the server's OpenAPI description (``modelport.serving.openapi``), every v2 route, against
a real ``modelport serve`` of the demo MiniLM bundle in a process of its own: no response is a 5xx, and
afterwards the server answers a correct request with the same numbers as before, its memory not grown
beyond 5%."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest

schemathesis = pytest.importorskip("schemathesis")
pytest.importorskip("fastapi")
from hypothesis import HealthCheck, settings  # noqa: E402

from modelport.serving.openapi import openapi  # noqa: E402
from tests.conftest import subprocess_env  # noqa: E402

pytestmark = pytest.mark.slow
schema = schemathesis.openapi.from_dict(openapi(["minilm"], ["1"]))
SEEN: dict[int, int] = {}  # status -> responses


def correct_request() -> bytes:
    feed = {"input_ids": [[101, 7592, 2088, 102]], "attention_mask": [[1] * 4], "token_type_ids": [[0] * 4]}
    inputs = [{"name": name, "shape": [1, 4], "datatype": "INT64", "data": value} for name, value in feed.items()]
    return json.dumps({"inputs": inputs}).encode()


def ask(url: str) -> np.ndarray:
    request = urllib.request.Request(url + "/v2/models/minilm/infer", correct_request())
    with urllib.request.urlopen(request, timeout=60) as response:
        answer = json.loads(response.read())
    return np.asarray(next(o for o in answer["outputs"] if o["name"] == "sentence_embedding")["data"], np.float32)


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


@pytest.fixture(scope="module")
def served(minilm_bundle, tmp_path_factory):
    log = tmp_path_factory.mktemp("fuzz") / "serve.log"
    with open(log, "w") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "modelport", "serve", f"minilm={minilm_bundle}", "--port", "0", "--no-grpc",
             "--threads", "1", "--max-request-bytes", str(2**20), "--log-level", "warning"],
            stderr=sink, env=subprocess_env(),
        )  # fmt: skip
    try:
        url = None
        for _ in range(600):
            text = log.read_text()
            if " on http://" in text:
                url = text.split(" on ")[1].split()[0]
                break
            assert proc.poll() is None, text
            time.sleep(0.2)
        assert url, log.read_text()
        for _ in range(20):  # warm: the allocator's pools and the batcher's buffers are in place before the count
            before = ask(url)
        yield {"url": url, "pid": proc.pid, "answer": before, "rss": rss_kib(proc.pid), "log": log}
    finally:
        proc.terminate()
        proc.wait(60)


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_no_request_gets_a_5xx(case, served):
    response = case.call(base_url=served["url"], timeout=60)
    SEEN[response.status_code] = SEEN.get(response.status_code, 0) + 1
    assert response.status_code < 500, f"{case.method} {case.formatted_path}: {response.text[:300]}"
    if response.status_code >= 400:  # every refusal is the protocol's error body
        assert list(response.json()) == ["error"], response.text[:300]


def test_after_the_fuzz_the_server_answers_the_same_with_its_memory_held(served):
    assert sum(SEEN.values()) >= 200 and any(400 <= s < 500 for s in SEEN), SEEN  # the fuzz ran and was refused
    np.testing.assert_array_equal(ask(served["url"]), served["answer"])
    grown = rss_kib(served["pid"]) / served["rss"] - 1
    assert grown <= 0.05, f"the server's RSS grew {grown:.1%} over the fuzz ({SEEN})"
    assert "Traceback" not in served["log"].read_text()
