"""The benchmark method, not its timings: complete records, interleaved timed runs, parity against
eager in the same run, shapes from the flags, and the files a report promises. No backend's time is
asserted; the method's fairness is, on stand-in backends timed by a clock of the test's own."""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import numpy as np
import pytest

from modelport.benchmark import BenchConfig, bench, shape_grid
from modelport.benchmark import timing as bench_method
from modelport.benchmark.report import write_json, write_report
from modelport.benchmark.timing import Slot, timed_rounds
from modelport.bundle import Bundle
from modelport.errors import ResourceError, UsageError
from modelport.exporting import export
from modelport.runtime.base import Runner, TensorInfo
from modelport.spec import Signature, parse_dim, parse_input
from tests.conftest import ZOO, error_lines, run_cli, zoo_specs

FIELDS = {
    "backend", "shape", "p50_ms", "p90_ms", "p99_ms", "mean_ms", "throughput", "cold_start_ms", "peak_rss_mb",
    "max_abs_diff", "cosine", "gflops", "fraction_of_peak", "runs", "threads", "precision", "speedup_vs_eager",
}  # fmt: skip
QUICK = dict(warmup=1, min_runs=4, min_seconds=0.05)


@pytest.fixture(scope="module")
def cnn(tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    inputs, dims = zoo_specs("dynamic_cnn")
    return export(f"{ZOO}:dynamic_cnn", tmp_path_factory.mktemp("bench") / "cnn", inputs, dims).bundle


def test_records_are_complete_and_parity_is_against_eager(cnn: Bundle) -> None:
    config = BenchConfig(backends=["eager", "ort:cpu", "ort:cpu@disabled", "torchscript"], threads=1, **QUICK)
    result = bench(cnn, config)
    assert [r["backend"] for r in result.records] == ["eager", "ort:cpu", "ort:cpu@disabled", "torchscript"]
    for record in result.records:
        assert FIELDS <= set(record), FIELDS - set(record)
        assert record["runs"] >= 4 and record["threads"] == 1
        assert record["p50_ms"] <= record["p90_ms"] <= record["p99_ms"]
        assert record["cold_start_ms"] >= record["first_run_ms"] > 0
        assert record["flops"] > 0 and record["gflops"] > 0  # the CNN's convolutions, counted on eager
        assert record["max_abs_diff"] < 1e-4 and record["cosine"] > 0.99999
    eager = result.records[0]
    assert eager["max_abs_diff"] == 0.0 and eager["speedup_vs_eager"] == 1.0
    assert result.records[2]["runtime"]["optimization"] == "disabled"
    assert result.machine["threads"] == 1 and "torch" in result.machine["versions"]


class Machine:
    """A machine that slows down as it works (heat, a neighbour), on a clock of its own: a run takes 1 ms x
    (1 + its runs so far / 10), and ``clock`` stands in for ``time`` so the timings are exact."""

    def __init__(self) -> None:
        self.now = 0.0
        self.log: list[str] = []  # which backend ran, every call, untimed ones included

    def run(self, name: str) -> None:
        self.log.append(name)
        self.now += 1e-3 * (1 + len(self.log) / 10)

    def clock(self, patch: pytest.MonkeyPatch) -> None:
        patch.setattr(time, "perf_counter", lambda: self.now)
        patch.setattr(time, "sleep", lambda seconds: setattr(self, "now", self.now + seconds))


class Drifting(Runner):
    """A backend that runs on ``machine``: any Runner is what ``timed_rounds`` times."""

    def __init__(self, name: str, machine: Machine) -> None:
        super().__init__()
        self.name, self.machine = name, machine

    def _load(self) -> None:
        pass

    def _infer(self, feed: dict[str, np.ndarray], timeout: float | None) -> dict[str, np.ndarray]:
        self.machine.run(self.name)
        return {"y": feed["x"]}

    def _close(self) -> None:
        pass

    def inputs(self) -> list[TensorInfo]:
        return [TensorInfo("x", (1,), "float32")]

    def outputs(self) -> list[TensorInfo]:
        return [TensorInfo("y", (1,), "float32")]


def time_on(machine: Machine, labels: list[str], settle_seconds: float, patch: pytest.MonkeyPatch) -> list[Slot]:
    slots = [Slot(label, Drifting(label, machine).load()) for label in labels]
    config = BenchConfig(
        labels, warmup=0, min_runs=6, min_seconds=0.0, block_seconds=0.0, settle_seconds=settle_seconds
    )
    machine.clock(patch)
    timed_rounds(slots, {"x": np.zeros(1, np.float32)}, config, lambda _done: None)
    return slots


def test_drift_hits_every_backend_alike(monkeypatch: pytest.MonkeyPatch) -> None:
    """Three identical backends on a machine that gets 2.7x slower while they are timed: back to back, the
    last would look 2.1x as slow as the first; interleaved in rotating rounds their medians agree."""
    machine = Machine()
    slots = time_on(machine, ["a", "b", "c"], 0.0, monkeypatch)
    assert [len(s.times) for s in slots] == [6, 6, 6]
    medians = [statistics.median(s.times) for s in slots]
    assert max(medians) / min(medians) < 1.1, medians
    assert max(max(s.times) for s in slots) > 2.5 * min(min(s.times) for s in slots)  # the machine did drift


def test_each_block_starts_with_an_untimed_run_and_the_order_rotates(monkeypatch: pytest.MonkeyPatch) -> None:
    """A block is a pause, one untimed run and (block_seconds=0) one timed run; every backend gets one block
    per round, the first place rotating, so none always follows the same neighbour."""
    machine = Machine()
    slots = time_on(machine, ["a", "b", "c"], 0.1, monkeypatch)
    assert [len(s.times) for s in slots] == [6, 6, 6]
    blocks = [machine.log[i : i + 2] for i in range(0, len(machine.log), 2)]
    assert len(machine.log) == 2 * 18 and all(a == b for a, b in blocks)
    rounds = ["".join(b[0] for b in blocks[i : i + 3]) for i in range(0, len(blocks), 3)]
    assert rounds == ["abc", "bca", "cab"] * 2
    assert all(t < 0.1 for s in slots for t in s.times)  # the pause is not billed to the run after it


def test_a_backend_stops_once_it_has_enough_runs_and_seconds(cnn: Bundle) -> None:
    result = bench(cnn, BenchConfig(backends=["ort:cpu"], threads=1, warmup=0, min_runs=3, min_seconds=0.2))
    [record] = result.records
    assert record["runs"] >= 3 and record["timed_s"] >= 0.2
    assert record["speedup_vs_eager"] is None  # eager was not timed
    assert record["max_abs_diff"] is not None  # but it still answered the parity question


def test_shape_grid_takes_batch_seq_and_named_dims() -> None:
    sig = Signature.build(
        [parse_input("input_ids:batch,seq:int64:0..100"), parse_input("mask:batch,seq:int64:0..2")],
        [parse_dim("batch=1..8"), parse_dim("seq=1..256")],
    )
    assert shape_grid(sig, [1, 8], [32, 128]) == [
        {"batch": 1, "seq": 32}, {"batch": 1, "seq": 128}, {"batch": 8, "seq": 32}, {"batch": 8, "seq": 128},
    ]  # fmt: skip
    assert shape_grid(sig, shape=["seq=64"]) == [{**sig.example_sizes(), "seq": 64}]
    with pytest.raises(UsageError, match="NAME one of: batch, seq"):
        shape_grid(sig, shape=["h=224"])
    image = Signature.build([parse_input("x:n,3,s,s")], [parse_dim("n=1..4"), parse_dim("s=8..64")])
    assert shape_grid(image, [2], shape=["s=32,64"]) == [{"n": 2, "s": 32}, {"n": 2, "s": 64}]
    with pytest.raises(UsageError, match="no sequence dimension"):
        shape_grid(image, seq=[128])


@pytest.mark.parametrize(
    ("name", "label"),
    [("eager", "eager"), ("torch", "eager"), ("ort", "ort:cpu"), ("ort:cpu@all", "ort:cpu"),
     ("ort:cpu@disabled", "ort:cpu@disabled"), ("openvino", "openvino:f32")],
)  # fmt: skip
def test_backend_labels(name: str, label: str) -> None:
    assert bench_method.backend_label(name) == label


def test_bad_backends_are_refused_with_the_fix(cnn: Bundle) -> None:
    with pytest.raises(UsageError, match="@LEVEL applies to ort backends"):
        bench_method.backend_label("openvino@disabled")
    with pytest.raises(UsageError, match="listed twice"):
        bench(cnn, BenchConfig(backends=["eager", "torch"]))


def test_json_and_report_files(cnn: Bundle, tmp_path: Path) -> None:
    result = bench(cnn, BenchConfig(backends=["eager", "ort:cpu"], shapes=shape_grid(cnn.signature, [1, 2]), **QUICK))
    write_json(result, tmp_path / "r.json")
    records = json.loads((tmp_path / "r.json").read_text())
    assert isinstance(records, list) and len(records) == 4
    assert {r["shape"].split(",")[0] for r in records} == {"batch=1", "batch=2"}
    assert all(r["machine"]["cpu"] and r["model"] for r in records)
    plot = write_report(result, tmp_path / "r.md", "modelport bench cnn")
    text = (tmp_path / "r.md").read_text()
    assert "| backend | p50 ms |" in text and "![latency per backend](r.png)" in text and "**Machine**" in text
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert {oct(p.stat().st_mode & 0o777) for p in tmp_path.iterdir()} == {"0o644"}
    assert oct(cnn.path.stat().st_mode & 0o777) == "0o755"  # the bundle it measured, as export left it
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary files left


@pytest.mark.slow
def test_bench_cli_prints_tables_and_writes_json_report_and_plot(cnn: Bundle, tmp_path: Path) -> None:
    proc = run_cli(
        "bench", str(cnn.path), "--backends", "eager,ort:cpu,openvino:f32", "--batch", "1", "--min-runs", "3",
        "--min-seconds", "0.05", "--json", str(tmp_path / "r.json"), "--report", str(tmp_path / "r.md"),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "latency" in proc.stdout and "cost and accuracy" in proc.stdout and "openvino:f32" in proc.stdout
    assert len(json.loads((tmp_path / "r.json").read_text())) == 3
    assert (tmp_path / "r.png").stat().st_size > 1000


@pytest.mark.slow
def test_bench_cli_errors_are_one_line(cnn: Bundle) -> None:
    proc = run_cli("bench", str(cnn.path), "--seq", "128")
    assert proc.returncode == 2
    assert error_lines(proc) == [
        "error: --seq: the model has no sequence dimension — use --shape NAME=SIZE with NAME one of: batch, h, w"
    ]
    proc = run_cli("bench", str(cnn.path), "--backends", "eager,ort:cuda")
    assert proc.returncode == 2 and "pip install onnxruntime-gpu" in error_lines(proc)[0]


@pytest.mark.slow
def test_peak_alone_measures_sgemm() -> None:
    proc = run_cli("bench", "--peak", "--threads", "1")
    assert proc.returncode == 0, proc.stderr
    gflops = float(proc.stdout.split("fp32 sgemm peak: ")[1].split()[0])
    assert gflops > 1.0


def test_feeds_are_the_same_for_every_backend(cnn: Bundle, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, list[np.ndarray]] = {}
    real_load = bench_method._load

    def logged_load(bundle, label, threads, feed):
        seen.setdefault(label, []).append(feed["x"])
        return real_load(bundle, label, threads, feed)

    monkeypatch.setattr(bench_method, "_load", logged_load)
    bench(cnn, BenchConfig(backends=["eager", "ort:cpu", "openvino:f32"], threads=1, **QUICK))
    first = seen["eager"][0]
    assert all(np.array_equal(first, feeds[0]) for feeds in seen.values())


@pytest.fixture
def busy_machine():
    """Two processes spinning on the CPU for the length of a test."""
    import subprocess
    import sys

    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        yield
    finally:
        for proc in spinners:
            proc.kill()
            proc.wait()


def test_a_busy_machine_is_noticed_and_strict_runs_refuse_it(cnn: Bundle, busy_machine) -> None:
    quick = dict(min_runs=2, min_seconds=0.0, warmup=1, block_seconds=0.0, settle_seconds=0.0)
    result = bench_method.bench(cnn, BenchConfig(backends=["ort:cpu"], threads=1, **quick))
    busy = result.records[0]["others_busy_cores"]
    assert busy["before"] > 1.0  # two spinners: nearly two cores
    assert any("the machine was busy" in note and "unreliable" in note for note in result.notes)
    with pytest.raises(ResourceError, match="the machine was busy: other processes kept") as info:
        bench_method.bench(cnn, BenchConfig(backends=["ort:cpu"], threads=1, strict=True, **quick))
    assert "drop --strict" in info.value.hint
