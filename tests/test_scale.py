"""Scaling out: ``modelport batch`` (in this process and on Ray Data) and ``serve --engine ray`` (Ray Serve).

Every answer is held to ``modelport run``'s on the same row; failed rows must be in the errors file with
their reason, never missing; a Ray actor that dies mid-job loses no row."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

import modelport
from tests.conftest import ROOT, one_error, run_cli

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")


def rows_of(path: Path, column: str) -> dict[int, np.ndarray]:
    table = pq.read_table(path)
    return {
        r: np.asarray(v)
        for r, v in zip(table.column("row").to_pylist(), table.column(column).to_pylist(), strict=False)
    }


def classifier_rows(tmp_path: Path, count: int, seed: int = 0) -> tuple[Path, np.ndarray]:
    x = np.random.default_rng(seed).standard_normal((count, 32)).astype(np.float32)
    path = tmp_path / "rows.parquet"
    pq.write_table(pa.table({"x": pa.array(list(x), pa.list_(pa.float32()))}), path)
    return path, x


def assert_like_run(classifier: Path, got: dict[int, np.ndarray], x: np.ndarray) -> None:
    assert sorted(got) == list(range(len(x)))  # every row, once
    with modelport.load(classifier) as model:
        for row in range(len(x)):  # row by row, as `modelport run` answers one row
            want = model(x=x[row : row + 1])["output"][0]
            np.testing.assert_allclose(got[row], want, rtol=1e-5, atol=1e-6)


def test_batch_answers_10000_rows_like_run_row_by_row(classifier, tmp_path):
    source, x = classifier_rows(tmp_path, 10_000)
    seen = []
    report = modelport.batch(
        classifier, source, tmp_path / "out.parquet", batch_size=64, progress=lambda d, t: seen.append((d, t))
    )
    assert (report.rows, report.written, report.failed, report.errors) == (10_000, 10_000, 0, None)
    assert seen[-1] == (10_000, 10_000) and len(seen) > 1
    assert_like_run(classifier, rows_of(tmp_path / "out.parquet", "output"), x)
    assert not list(tmp_path.glob(".out.parquet-*"))  # the temp file was renamed, not left behind


def test_bad_rows_go_to_the_errors_file_with_their_reason(classifier, tmp_path):
    cells = [list(np.ones(32, np.float32)), list(np.ones(31, np.float32)), None, list(np.zeros(32, np.float32))]
    source = tmp_path / "rows.parquet"
    pq.write_table(pa.table({"x": pa.array(cells, pa.list_(pa.float32()))}), source)
    report = modelport.batch(classifier, source, tmp_path / "out.parquet")
    assert (report.written, report.failed) == (2, 2)
    assert sorted(rows_of(tmp_path / "out.parquet", "output")) == [0, 3]
    errors = [json.loads(line) for line in report.errors.read_text().splitlines()]
    assert [e["row"] for e in errors] == [1, 2]
    assert "axis 1 is 31" in errors[0]["error"] and "fixed to 32" in errors[0]["error"]
    assert "empty" in errors[1]["error"]


def test_rows_outside_the_verified_range_are_refused_not_answered(classifier, tmp_path):
    folder = tmp_path / "feeds"
    folder.mkdir()
    np.savez(folder / "a.npz", x=np.ones((3, 32), np.float32))  # three rows along the batch dimension
    np.savez(folder / "b.npz", x=np.ones((2, 32), np.float64))  # the wrong dtype: both rows refused
    report = modelport.batch(classifier, folder, tmp_path / "out.parquet")
    assert (report.rows, report.written, report.failed) == (5, 3, 2)
    reasons = {json.loads(line)["error"] for line in report.errors.read_text().splitlines()}
    assert reasons == {"input 'x' is float64, the model expects float32 — convert it: array.astype('float32')"}


def test_batch_cli_refuses_in_one_line(classifier, tmp_path):
    source, _ = classifier_rows(tmp_path, 4)
    proc = run_cli("batch", str(classifier), "--input", str(source), "--output", str(tmp_path / "out.csv"))
    one_error(proc, 2, "not a .parquet file")
    proc = run_cli(
        "batch", str(classifier), "--input", str(tmp_path / "nope.parquet"), "-o", str(tmp_path / "o.parquet")
    )
    one_error(proc, 2, "does not exist")
    assert not (tmp_path / "o.parquet").exists()


@pytest.mark.slow
@pytest.mark.hf
def test_sentences_give_the_embedding_run_gives_each_sentence(minilm_bundle, tmp_path):
    from modelport.optimization.data import tokenizer_folder
    from modelport.sources.hf import load_tokenizer

    sentences = ["A man is eating food.", "The quick brown fox jumps over the lazy dog, twice.", "Hi"]
    (tmp_path / "s.txt").write_text("\n".join(sentences) + "\n\n")
    proc = run_cli("batch", str(minilm_bundle), "-i", str(tmp_path / "s.txt"), "-o", str(tmp_path / "e.parquet"),
                   "--select", "sentence_embedding", "--json")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["written"] == 3
    assert pq.read_table(tmp_path / "e.parquet").column_names == ["row", "sentence_embedding"]
    got = rows_of(tmp_path / "e.parquet", "sentence_embedding")
    tokenizer = load_tokenizer(tokenizer_folder(modelport.Bundle.open(minilm_bundle)))
    for row, sentence in enumerate(sentences):
        encoded = tokenizer(sentence, return_tensors="np")
        feed = {k: encoded[k].astype(np.int64) for k in ("input_ids", "attention_mask", "token_type_ids")}
        want = modelport.run(minilm_bundle, feed).outputs["sentence_embedding"][0]
        np.testing.assert_allclose(got[row], want, rtol=1e-4, atol=1e-5)


# -- Ray ------------------------------------------------------------------------------------------------


def _ray_script(code: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Ray in a process of its own: it starts and stops a local Ray, as a user's script does."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, cwd=ROOT,
                          env={**os.environ, **(env or {})})  # fmt: skip


@pytest.mark.ray
@pytest.mark.slow
def test_ray_data_batch_survives_a_killed_actor_and_answers_like_run(classifier, tmp_path):
    pytest.importorskip("ray.data")
    source, x = classifier_rows(tmp_path, 10_000, seed=1)
    marker = tmp_path / "crashed"
    # Ray runs the setup hook in each of its worker processes: there it makes the first actor to take a
    # task die mid-job (os._exit), so Ray Data has to restart it and retry its rows
    code = f"""
import json, os, pathlib, ray, modelport

def crash_once():
    from modelport.scale import batch_run
    answer = batch_run.Worker.__call__
    def call(self, rows):
        if not os.path.exists({str(marker)!r}):
            pathlib.Path({str(marker)!r}).touch()
            os._exit(1)
        return answer(self, rows)
    batch_run.Worker.__call__ = call

ray.init(include_dashboard=False, log_to_driver=False, runtime_env={{"worker_process_setup_hook": crash_once}})
r = modelport.batch({str(classifier)!r}, {str(source)!r}, {str(tmp_path / "out.parquet")!r}, engine="ray",
                    actors=2, batch_size=500)
pathlib.Path({str(tmp_path / "report.json")!r}).write_text(json.dumps(r.to_json()))
"""
    proc = _ray_script(code)  # Ray's own lines about the retried task go to stdout: the report goes to a file
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((tmp_path / "report.json").read_text())
    assert marker.exists()  # an actor did die mid-job ...
    assert (report["written"], report["failed"], report["engine"], report["actors"]) == (10_000, 0, "ray", 2)
    assert_like_run(classifier, rows_of(tmp_path / "out.parquet", "output"), x)  # ... and no row was lost


@pytest.mark.ray
@pytest.mark.slow
def test_ray_serve_two_replicas_answer_concurrent_requests_like_run(classifier):
    pytest.importorskip("ray.serve")
    import tritonclient.http as th

    x = np.random.default_rng(2).standard_normal((40, 32)).astype(np.float32)
    with modelport.load(classifier) as model:  # in rows of 8: the bound the bundle was verified to
        want = np.concatenate([model(x=x[i : i + 8])["output"] for i in range(0, len(x), 8)])
    with modelport.serve_ray([classifier], port=0, replicas=2, block=False) as server:
        client = th.InferenceServerClient(server.url.removeprefix("http://"))
        assert client.is_server_ready() and client.is_model_ready("clf")
        assert client.get_model_metadata("clf")["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 32]}]

        def ask(row: int) -> np.ndarray:  # plain HTTP: tritonclient.http's gevent does not mix with threads
            body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 32], "data": x[row].tolist()}]}
            (output,) = _post(f"{server.url}/v2/models/clf/infer", body)["outputs"]
            return np.asarray(output["data"], np.float32)

        with ThreadPoolExecutor(8) as pool:
            got = np.stack(list(pool.map(ask, range(len(x)))))
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
        wrong = th.InferInput("x", [1, 31], "FP32")
        wrong.set_data_from_numpy(np.ones((1, 31), np.float32))
        with pytest.raises(Exception, match="axis 1 is 31"):  # the same 400 as `modelport serve`
            client.infer("clf", [wrong])
        empty = th.InferInput("x", [0, 32], "FP32")
        empty.set_data_from_numpy(np.ones((0, 32), np.float32))
        with pytest.raises(Exception, match="dimension 'batch' is 0 in input 'x', outside its declared range 1..8"):
            client.infer("clf", [empty])
        client.close()
    assert not _answers(server.url + "/v2/health/live")  # stopped: Ray Serve is gone


def _post(url: str, body: dict) -> dict:
    import urllib.request

    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def _answers(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except OSError:
        return False
