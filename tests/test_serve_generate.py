"""Serving a generation bundle: the OpenAI-compatible API (through the ``openai`` client, sync, async and
streamed), Triton's generate extension (its SSE read by ``httpx-sse``), continuous batching that changes no
answer, a client that hangs up freeing its slot, every error with its status and body, and vLLM's metrics.

Every expected answer is ``modelport.load(bundle).generate(...)`` on the same prompt: the server must
give exactly the tokens the library gives alone.
"""

from __future__ import annotations

import asyncio
import re
import time

import numpy as np
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.hf]
pytest.importorskip("transformers")
openai = pytest.importorskip("openai")
httpx = pytest.importorskip("httpx")
httpx_sse = pytest.importorskip("httpx_sse")

import modelport  # noqa: E402
from modelport.generation.sampling import Decoding  # noqa: E402
from modelport.generation.scheduler import QueueFull, Scheduler  # noqa: E402
from tests.models.lm import SENTENCES, scheduled, tiny_lm  # noqa: E402

TOKEN = "s3cret"
LINES = SENTENCES.read_text().splitlines()
PROMPTS = [" ".join(LINES[i : i + 1 + i % 3]) for i in range(16)]  # 16 prompts of 10 to 120 tokens


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    root = tmp_path_factory.mktemp("served-lm")
    folder = tiny_lm("llama", root / "hf")
    return modelport.export(f"hf:{folder}", root / "bundle", task="text-generation").bundle.path


@pytest.fixture(scope="module")
def lm(bundle):
    with modelport.load(bundle) as loaded:
        yield loaded


@pytest.fixture(scope="module")
def server(bundle):
    with modelport.serve([f"lm={bundle}"], port=0, grpc_port=None, token=TOKEN, max_sequences=8, block=False) as s:
        yield s


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key=TOKEN, max_retries=0)


def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}"}


def metric(server, name: str, **labels: str) -> float:
    text = httpx.get(server.url + "/metrics", headers=auth()).text
    want = ",".join(f'{k}="{v}"' for k, v in sorted({"model_name": "lm", **labels}.items()))
    found = re.search(rf"^{re.escape(name)}{{{re.escape(want)}}} (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


# -- the scheduler alone -----------------------------------------------------------------------------


def test_sequences_joining_and_leaving_the_batch_get_their_solo_tokens(lm):
    """16 requests through 5 slots with a small prefill budget: joins, merges and leaves every few steps,
    greedy, sampled and stop-string requests side by side, each equal to its own ``generate``."""
    options = [dict(max_new_tokens=10 + 3 * i, ignore_eos=i % 4 != 1) for i in range(16)]
    options[3] = dict(max_new_tokens=30, temperature=0.8, top_p=0.9, seed=7, ignore_eos=True)
    options[6] = dict(max_new_tokens=30, temperature=1.2, top_k=20, seed=3, ignore_eos=True)
    options[5] = dict(max_new_tokens=30, stop=(" the",), ignore_eos=True)
    prompts = lm.encode(PROMPTS)
    solo = [lm.generate([p], **o)[0] for p, o in zip(prompts, options, strict=True)]
    got_all, scheduler = scheduled(lm, prompts, options, pause=0.005, max_running=5, prefill_tokens=64)
    for index, (alone, got) in enumerate(zip(solo, got_all, strict=True)):
        assert (got.token_ids, got.text, got.finish_reason) == (alone.token_ids, alone.text, alone.finish_reason), index
    assert scheduler.steps < sum(len(r.token_ids) for r in solo)  # steps were shared


def test_a_cancelled_waiting_request_ends_at_once_and_a_full_queue_refuses(lm):
    scheduler = Scheduler(lm, max_running=1, max_waiting=2)  # not started: everything waits
    ended = []
    first = scheduler.submit([5, 6, 7], Decoding(), ended.append)
    scheduler.submit([5, 6, 7], Decoding(), ended.append)
    with pytest.raises(QueueFull, match="0 sequences are running and 2 waiting, the most allowed"):
        scheduler.submit([5, 6, 7], Decoding(), ended.append)
    first.cancel()
    assert scheduler.waiting == 1 and [u.result.finish_reason for u in ended] == ["abort"]


# -- the OpenAI-compatible API -----------------------------------------------------------------------


def test_openai_completions_give_generates_tokens_and_usage(client, lm):
    want = lm.generate(PROMPTS[2], max_new_tokens=20, ignore_eos=True)
    got = client.completions.create(
        model="lm", prompt=PROMPTS[2], max_tokens=20, temperature=0, extra_body={"ignore_eos": True}
    )
    assert got.choices[0].text == want.text and got.choices[0].finish_reason == "length"
    assert got.usage.prompt_tokens == want.prompt_tokens and got.usage.completion_tokens == 20
    assert [m.id for m in client.models.list().data] == ["lm"]


def test_openai_chat_streams_the_tokens_generate_gives(client, lm):
    want = lm.generate("Tell me about the rain.", chat=True, max_new_tokens=24)
    chunks = list(
        client.chat.completions.create(
            model="lm",
            messages=[{"role": "user", "content": "Tell me about the rain."}],
            max_tokens=24,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == want.text
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == want.finish_reason
    assert chunks[-1].usage.completion_tokens == len(want.token_ids)
    whole = client.chat.completions.create(
        model="lm", messages=[{"role": "user", "content": "Tell me about the rain."}], max_tokens=24, temperature=0
    )
    assert whole.choices[0].message.content == want.text


def test_a_seed_gives_generates_sampled_tokens(client, lm):
    want = lm.generate(PROMPTS[4], max_new_tokens=24, temperature=0.9, top_p=0.95, seed=11, ignore_eos=True)
    got = client.completions.create(
        model="lm", prompt=PROMPTS[4], max_tokens=24, temperature=0.9, top_p=0.95, seed=11,
        extra_body={"ignore_eos": True},
    )  # fmt: skip
    assert got.choices[0].text == want.text


def test_sixteen_concurrent_async_streams_each_equal_their_single_request_output(server, lm):
    lengths = [8 + 5 * i for i in range(16)]
    want = [lm.generate(p, max_new_tokens=n, ignore_eos=i % 3 != 0).text for i, (p, n) in
            enumerate(zip(PROMPTS, lengths, strict=True))]  # fmt: skip

    async def run():
        client = openai.AsyncOpenAI(base_url=server.url + "/v1", api_key=TOKEN, max_retries=0)

        async def one(i):
            stream = await client.completions.create(
                model="lm", prompt=PROMPTS[i], max_tokens=lengths[i], temperature=0, stream=True,
                extra_body={"ignore_eos": i % 3 != 0},
            )  # fmt: skip
            return "".join([chunk.choices[0].text async for chunk in stream])

        try:
            return await asyncio.gather(*(one(i) for i in range(16)))
        finally:
            await client.close()

    assert asyncio.run(run()) == want
    assert metric(server, "vllm:num_requests_running") == 0


def test_openai_errors_have_openais_body_and_status(client, server):
    with pytest.raises(openai.NotFoundError, match="the model 'gpt-4' does not exist; generation models served: lm"):
        client.completions.create(model="gpt-4", prompt="hi")
    with pytest.raises(openai.BadRequestError, match=r"and max_tokens \(300\) add up to \d+, over this model's context "
                       "of 256 tokens"):  # fmt: skip
        client.completions.create(model="lm", prompt="hi", max_tokens=300)
    with pytest.raises(openai.BadRequestError, match="n=2: this server returns one choice per request"):
        client.completions.create(model="lm", prompt="hi", n=2)
    with pytest.raises(openai.BadRequestError, match="logprobs is not supported by this server; drop it"):
        client.completions.create(model="lm", prompt="hi", logprobs=2)
    with pytest.raises(openai.BadRequestError, match="temperature 3.0 is over 2"):
        client.completions.create(model="lm", prompt="hi", temperature=3)
    with pytest.raises(openai.BadRequestError, match="messages must be a non-empty list"):
        client.chat.completions.create(model="lm", messages=[])
    bad = openai.OpenAI(base_url=server.url + "/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as caught:
        bad.models.list()
    assert caught.value.body["type"] == "authentication_error" and "Bearer TOKEN" in caught.value.body["message"]
    raw = httpx.post(server.url + "/v1/completions", content=b"{not json", headers=auth())
    assert raw.status_code == 400 and raw.json()["error"]["message"].startswith("the body is not JSON")


# -- Triton's generate extension ---------------------------------------------------------------------


def test_triton_generate_and_its_stream_read_by_an_sse_client(server, lm):
    want = lm.generate(PROMPTS[1], max_new_tokens=16, ignore_eos=True)
    body = {"text_input": PROMPTS[1], "parameters": {"max_tokens": 16, "temperature": 0, "ignore_eos": True}}
    whole = httpx.post(server.url + "/v2/models/lm/generate", json=body, headers=auth(), timeout=60).json()
    assert whole == {"model_name": "lm", "model_version": "1", "text_output": want.text, "finish_reason": "length"}
    with httpx.Client(headers=auth(), timeout=60) as http:
        with httpx_sse.connect_sse(http, "POST", server.url + "/v2/models/lm/generate_stream", json=body) as source:
            events = [e.json() for e in source.iter_sse()]
    assert "".join(e["text_output"] for e in events) == want.text and len(events) > 3
    assert events[-1]["finish_reason"] == "length" and "finish_reason" not in events[0]
    missing = httpx.post(server.url + "/v2/models/lm/generate", json={"parameters": {}}, headers=auth())
    assert missing.status_code == 400 and missing.json() == {"error": "text_input is required: the prompt, a string"}
    assert "generate" in httpx.get(server.url + "/v2", headers=auth()).json()["extensions"]


def test_v2_infer_still_runs_the_raw_graph(server, lm):
    th = pytest.importorskip("tritonclient.http")
    ids = np.array([lm.encode([PROMPTS[0]])[0]], np.int64)
    feed = {"input_ids": ids, "attention_mask": np.ones_like(ids), "position_ids": np.arange(ids.shape[1])[None]}
    feed |= {n: np.zeros((1, 2, 0, 16), np.float32) for n in lm.layout.past_names}
    client = th.InferenceServerClient(server.url.removeprefix("http://"))
    inputs = []
    for name, array in feed.items():
        item = th.InferInput(name, list(array.shape), "INT64" if array.dtype == np.int64 else "FP32")
        item.set_data_from_numpy(array, binary_data=True)
        inputs.append(item)
    logits = client.infer("lm", inputs, headers=auth()).as_numpy("logits")
    np.testing.assert_allclose(logits, lm(feed)["logits"], rtol=1e-5, atol=1e-5)


# -- slots, cancellation, limits and metrics ---------------------------------------------------------


@pytest.fixture
def slow_steps(monkeypatch):
    """Each decode step takes 20 ms more: a long request stays running long enough to hang up on."""
    step = Scheduler._step

    def slowly(self):
        time.sleep(0.02)
        step(self)

    monkeypatch.setattr(Scheduler, "_step", slowly)


def test_a_client_that_hangs_up_mid_stream_frees_its_slot(server, slow_steps):
    aborted = metric(server, "vllm:request_success_total", finished_reason="abort")
    body = {"model": "lm", "prompt": PROMPTS[0], "max_tokens": 200, "ignore_eos": True, "stream": True}
    with httpx.stream("POST", server.url + "/v1/completions", json=body, headers=auth(), timeout=60) as response:
        lines = response.iter_lines()
        assert [next(lines) for _ in range(3)][0].startswith("data: ")
        assert metric(server, "vllm:num_requests_running") == 1
    deadline = time.monotonic() + 10
    while metric(server, "vllm:num_requests_running") and time.monotonic() < deadline:
        time.sleep(0.02)
    assert metric(server, "vllm:num_requests_running") == 0
    assert metric(server, "vllm:request_success_total", finished_reason="abort") == aborted + 1


def test_a_full_queue_answers_429_with_retry_after(bundle, slow_steps):
    with modelport.serve([f"lm={bundle}"], port=0, grpc_port=None, max_sequences=1, max_queue_size=1,
                         block=False) as small:  # fmt: skip
        body = {"model": "lm", "prompt": "The", "max_tokens": 100, "ignore_eos": True, "stream": True}
        with httpx.Client(timeout=60) as http:
            with http.stream("POST", small.url + "/v1/completions", json=body) as running:
                lines = running.iter_lines()  # (kept: a dropped line iterator closes the connection)
                next(lines)  # running: the one slot is taken
                with http.stream("POST", small.url + "/v1/completions", json=body) as queued:
                    deadline = time.monotonic() + 10
                    while metric(small, "vllm:num_requests_waiting") < 1 and time.monotonic() < deadline:
                        time.sleep(0.01)
                    refused = httpx.post(small.url + "/v1/completions", json={**body, "stream": False})
                    assert queued.status_code == 200
    assert refused.status_code == 429 and refused.headers["retry-after"] == "1"
    assert refused.json()["error"]["type"] == "rate_limit_error"
    assert "1 sequences are running and 1 waiting, the most allowed" in refused.json()["error"]["message"]


def test_vllm_metrics_count_prompt_and_generated_tokens(server, client):
    before = metric(server, "vllm:generation_tokens_total"), metric(server, "vllm:prompt_tokens_total")
    got = client.completions.create(model="lm", prompt=PROMPTS[3], max_tokens=12, temperature=0,
                                    extra_body={"ignore_eos": True})  # fmt: skip
    after = metric(server, "vllm:generation_tokens_total"), metric(server, "vllm:prompt_tokens_total")
    assert after[0] - before[0] == 12 and after[1] - before[1] == got.usage.prompt_tokens
    assert metric(server, "vllm:time_to_first_token_seconds_count") >= 1
    assert metric(server, "vllm:e2e_request_latency_seconds_count") >= 1


# -- Ray Serve ---------------------------------------------------------------------------------------


@pytest.mark.ray
def test_ray_serve_replicas_stream_generations_like_generate(bundle, lm):
    pytest.importorskip("ray.serve")
    lengths = [10 + 4 * i for i in range(6)]
    want = [lm.generate(p, max_new_tokens=n, ignore_eos=True).text for p, n in zip(PROMPTS, lengths, strict=False)]
    with modelport.serve([f"lm={bundle}"], engine="ray", port=0, replicas=2, token=TOKEN, block=False) as server:

        async def run():
            client = openai.AsyncOpenAI(base_url=server.url + "/v1", api_key=TOKEN, max_retries=0)

            async def one(i):
                stream = await client.completions.create(
                    model="lm", prompt=PROMPTS[i], max_tokens=lengths[i], temperature=0, stream=True,
                    extra_body={"ignore_eos": True},
                )  # fmt: skip
                return "".join([chunk.choices[0].text async for chunk in stream])

            try:
                return await asyncio.gather(*(one(i) for i in range(len(lengths))))
            finally:
                await client.close()

        assert asyncio.run(run()) == want
        body = {"text_input": PROMPTS[0], "max_tokens": 10, "temperature": 0, "ignore_eos": True}
        with httpx.Client(headers=auth(), timeout=60) as http:
            with httpx_sse.connect_sse(http, "POST", server.url + "/v2/models/lm/generate_stream", json=body) as source:
                text = "".join(e.json()["text_output"] for e in source.iter_sse())
        assert text == want[0]
        too_long = httpx.post(server.url + "/v1/completions", headers=auth(),
                              json={"model": "lm", "prompt": "hi", "max_tokens": 999})  # fmt: skip
        assert too_long.status_code == 400 and "over this model's context of 256 tokens" in too_long.text


# -- Triton's Python backend, decoupled --------------------------------------------------------------


def test_a_real_triton_streams_the_decoupled_generation_model(bundle, lm, tmp_path):
    """The generation flavour of the repository writer: a decoupled Python-backend model running modelport's
    scheduler inside the real tritonserver (nvidia-pytriton's 2.51), answering generate and generate_stream."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    from modelport.scale.triton import triton_repository
    from tests.test_triton import TRITON_PYTHON

    if not TRITON_PYTHON.exists():
        pytest.skip("no Triton environment here: make triton-env")
    [written] = triton_repository([f"lm={bundle}"], tmp_path / "repo", platform="python", max_sequences=4)
    config = text_format.Parse((written.folder / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    assert config.model_transaction_policy.decoupled and config.parameters["max_sequences"].string_value == "4"
    assert [i.name for i in config.input][:3] == ["text_input", "max_tokens", "temperature"]
    assert all(i.optional for i in config.input[1:])
    assert [o.name for o in config.output] == ["text_output", "finish_reason"]
    want = [lm.generate(p, max_new_tokens=12 + 4 * i, ignore_eos=True) for i, p in enumerate(PROMPTS[:4])]
    with modelport.serve([tmp_path / "repo"], engine="triton", triton_python=TRITON_PYTHON, port=0, grpc_port=0,
                         block=False) as server:  # fmt: skip
        url = f"http://127.0.0.1:{server.port}/v2/models/lm"

        def stream(i):
            body = {"text_input": PROMPTS[i], "max_tokens": 12 + 4 * i, "temperature": 0, "ignore_eos": True,
                    "stream": True}  # fmt: skip
            with httpx.Client(timeout=120) as http:
                with httpx_sse.connect_sse(http, "POST", url + "/generate_stream", json=body) as source:
                    return [e.json() for e in source.iter_sse()]

        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(4) as pool:
            streams = list(pool.map(stream, range(4)))
        assert ["".join(e["text_output"] for e in s) for s in streams] == [w.text for w in want]
        assert all(s[-1]["finish_reason"] == "length" and len(s) > 3 for s in streams)
        whole = httpx.post(url + "/generate", json={"text_input": PROMPTS[0], "parameters": {"max_tokens": 12,
                           "temperature": 0, "ignore_eos": True}}, timeout=120).json()  # fmt: skip
        assert whole["text_output"] == want[0].text and whole["finish_reason"] == "length"
        refused = httpx.post(url + "/generate", json={"text_input": "hi", "max_tokens": 999}, timeout=120)
        assert refused.status_code == 400 and "over this model's context of 256 tokens" in refused.json()["error"]
