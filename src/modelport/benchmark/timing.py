"""The benchmark method: same feeds for every backend, cold start apart, warm-up, then timed runs
interleaved across backends until each has enough runs and enough seconds, parity against eager.

Why each step:
- the same feed (one per shape, fixed seed) for every backend, so a difference is the runtime's;
- cold start (load + first run) and peak RSS growth are read once per backend before any warm-up,
  because that is what a service pays on start;
- warm-up runs are not timed: lazy allocations, kernel choice and compilation happen there;
- timed runs go in rounds of short blocks (A B C, B C A, ...), so thermal or neighbour drift hits
  all backends alike; a backend leaves the rotation once it has ``min_runs`` runs and ``min_seconds``
  of them. Blocks, not single runs: after a run ONNX Runtime's worker threads spin for tens of ms
  waiting for more work, and a PyTorch run that starts then shares the cores with them. Measured with
  all-MiniLM-L6-v2 (1, 128) on 2 cores: eager 27.7 ms alone, 50.5 ms alternating run by run with
  ort:cpu (``--block-seconds 0 --settle-seconds 0``; 96 ms in another run), 29.1 ms in blocks; with
  ONNX Runtime's spinning turned off the run-by-run slowdown vanished, which names the cause. So each
  block starts with a pause (``settle_seconds``) and one untimed run;
- threads are fixed for every backend (PyTorch's are process-wide) and recorded;
- every backend's output on the feed is compared with PyTorch eager's (max abs diff, cosine), so a
  fast answer that is wrong shows up next to its speed.
"""

from __future__ import annotations

import itertools
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from modelport.benchmark import machine
from modelport.benchmark.shapes import batch_symbol, first_dim_is_symbol, outside, shape_text
from modelport.bundle import Bundle
from modelport.compare import cosine
from modelport.errors import ResourceError, UsageError
from modelport.feeds import make_feed
from modelport.generation.seq2seq import refuse_seq2seq
from modelport.machine import physical_cores
from modelport.runtime.base import Runner
from modelport.runtime.ort import OPTIMIZATIONS
from modelport.runtime.registry import create, parse_backend
from modelport.spec import Signature

__all__ = [
    "BenchConfig",
    "BenchResult",
    "bench",
    "backend_label",
    "busy_note",
    "DEFAULT_BACKENDS",
    "Slot",
    "timed_rounds",
]

DEFAULT_BACKENDS = ("eager", "ort:cpu", "openvino:f32", "openvino:default")
Progress = Callable[[str, float], None]  # what is happening, overall fraction done


@dataclass
class BenchConfig:
    backends: list[str] = field(default_factory=lambda: list(DEFAULT_BACKENDS))
    shapes: list[dict[str, int]] = field(default_factory=list)  # empty: the signature's example sizes
    threads: int | None = None  # None: physical cores
    warmup: int = 3
    min_runs: int = 20
    min_seconds: float = 2.0
    block_seconds: float = 0.25  # timed runs per backend per round
    settle_seconds: float = 0.1  # pause (and one untimed run) before each block; 0: neither
    peak_gflops: float | None = None  # measured sgemm peak, for the roofline columns
    strict: bool = False  # refuse to report timings taken while other processes kept the machine busy


@dataclass
class BenchResult:
    model: str
    machine: dict[str, Any]
    config: BenchConfig
    records: list[dict[str, Any]]
    notes: list[str] = field(default_factory=list)


@dataclass
class Slot:
    label: str
    runner: Runner
    times: list[float] = field(default_factory=list)
    cold: dict[str, float] = field(default_factory=dict)
    outputs: dict[str, np.ndarray] = field(default_factory=dict)

    def satisfied(self, config: BenchConfig) -> bool:
        return len(self.times) >= config.min_runs and sum(self.times) >= config.min_seconds


def backend_label(name: str) -> str:
    """The name a record carries: ``eager`` for PyTorch eager, ``ort:cpu@disabled`` for an ONNX Runtime
    optimization level other than the default."""
    base, _, level = name.partition("@")
    canonical = parse_backend("torch" if base.strip() == "eager" else base).canonical
    canonical = "eager" if canonical == "torch" else canonical
    if level:
        if not canonical.startswith("ort") or level not in OPTIMIZATIONS:
            raise UsageError(
                f"bad backend {name!r}", f"@LEVEL applies to ort backends; levels: {', '.join(OPTIMIZATIONS)}"
            )
        if level != "all":
            return f"{canonical}@{level}"
    return canonical


def bench(bundle: Bundle, config: BenchConfig, progress: Progress | None = None) -> BenchResult:
    refuse_seq2seq(bundle, "bench")
    say = progress or (lambda _text, _done: None)
    numbers = (config.min_seconds, config.warmup, config.block_seconds, config.settle_seconds)
    if config.min_runs < 2 or not all(math.isfinite(n) and n >= 0 for n in numbers):
        raise UsageError(
            "bench needs --min-runs >= 2 and finite --min-seconds, --warmup, --block-seconds, --settle-seconds >= 0",
            "fix the numbers",
        )
    threads = config.threads or physical_cores()
    labels = [backend_label(name) for name in config.backends]
    if len(set(labels)) != len(labels):
        raise UsageError(f"a backend is listed twice in {', '.join(config.backends)}", "list each backend once")
    sig = bundle.signature
    shapes = config.shapes or [sig.example_sizes()]
    result = BenchResult(bundle.source or str(bundle.path), machine.fingerprint(threads), config, [])
    if bundle.imported:
        result.notes.append(
            "imported from ONNX: no PyTorch, so parity is against ort:cpu (checked against ONNX's reference "
            "evaluator at import); no FLOPs or PyTorch backends"
        )
    elif not bundle.source:
        result.notes.append("the bundle records no source model: no eager parity, FLOPs or PyTorch backends")
    if config.peak_gflops:
        result.machine["sgemm_peak_gflops"] = config.peak_gflops
    for index, sizes in enumerate(shapes):
        part = (index / len(shapes), 1 / len(shapes))
        records = _bench_shape(bundle, sizes, labels, threads, config, part, say)
        result.records += records
        if records and (note := busy_note(records[0]["others_busy_cores"], threads)):
            result.notes.append(f"{records[0]['shape']}: {note}")
    return result


def _bench_shape(
    bundle: Bundle,
    sizes: dict[str, int],
    labels: list[str],
    threads: int,
    config: BenchConfig,
    part: tuple[float, float],
    say: Progress,
) -> list[dict[str, Any]]:
    sig = bundle.signature
    shape = shape_text(sizes)
    feed = make_feed(sig, sizes, np.random.default_rng(0)).arrays
    slots: list[Slot] = []
    try:
        for i, label in enumerate(labels):
            say(f"{shape}: loading {label}", part[0] + part[1] * 0.3 * i / len(labels))
            slots.append(_load(bundle, label, threads, feed))
        reference = next((s for s in slots if s.label == "eager"), None)
        extra = None
        if reference is None and bundle.source:
            extra = _load(bundle, "eager", threads, feed)
            reference = extra
        flops = _count_flops(reference.runner, feed) if reference is not None else None
        if extra is not None:
            extra.runner.close()
        if reference is None and bundle.imported:  # the runtime the import checked against ONNX's reference
            reference = next((s for s in slots if s.label == "ort:cpu"), None)
        for _ in range(config.warmup):
            for slot in slots:
                slot.runner.infer(feed)
        load = {"before": machine.CpuClock.sample(0.5)}
        _check_quiet(load, threads, config, shape)
        clock = machine.CpuClock().start()
        timed_rounds(slots, feed, config, lambda f: say(f"{shape}: timing", part[0] + part[1] * (0.3 + 0.7 * f)))
        load["during"] = clock.others()
        _check_quiet(load, threads, config, shape)
        records = [_record(slot, sig, sizes, reference, flops, threads, config) for slot in slots]
        for record in records:
            record["others_busy_cores"] = {k: None if v is None else round(v, 2) for k, v in load.items()}
    finally:
        for slot in slots:
            slot.runner.close()
    eager = next((r for r in records if r["backend"] == "eager"), None)
    for record in records:
        record["speedup_vs_eager"] = round(eager["p50_ms"] / record["p50_ms"], 3) if eager else None
    return records


def _check_quiet(load: dict[str, float | None], threads: int, config: BenchConfig, shape: str) -> None:
    """Refuse (``strict``) a timing taken while other processes kept cores busy; ``busy_note`` warns otherwise."""
    if config.strict and (text := busy_note(load, threads)):
        raise ResourceError(f"{shape}: {text}", "wait until the machine is quiet (see `top`), or drop --strict")


def busy_note(load: dict[str, float | None], threads: int) -> str:
    """A warning when other processes kept more than ``machine.busy_limit`` cores busy before or while timing."""
    limit = machine.busy_limit(threads)
    busy = {when: v for when, v in load.items() if v is not None and v > limit}
    if not busy:
        return ""
    when, cores = max(busy.items(), key=lambda kv: kv[1])
    return (
        f"the machine was busy: other processes kept {cores:.1f} cores busy {when} timing (limit {limit:.1f}); "
        "ratios between backends are unreliable (PyTorch's OpenMP threads collapse when cores are oversubscribed)"
    )


def _load(bundle: Bundle, label: str, threads: int, feed: dict[str, np.ndarray]) -> Slot:
    base, _, level = label.partition("@")
    runner = create("torch" if base == "eager" else base, bundle, threads=threads, optimization=level or "all")
    runner.name = label
    tracked = machine.reset_peak_rss()
    before = machine.rss_mb()
    runner.load()
    runner.check_ranges = False  # bench makes its own feeds; a --shape outside the bounds is its warning (outside)
    outputs = runner.infer(feed)
    peak = machine.peak_rss_mb() if tracked else machine.rss_mb()
    cold = {f"{key[:-2]}_ms": runner.timings[key] * 1e3 for key in ("load_s", "first_run_s", "cold_start_s")}
    cold["peak_rss_mb"] = max(0.0, peak - before)
    return Slot(label, runner, cold=cold, outputs=outputs)


def timed_rounds(
    slots: list[Slot], feed: dict[str, np.ndarray], config: BenchConfig, say: Callable[[float], None]
) -> None:
    """Rounds of blocks: in each round every backend that still needs runs gets one block, the order
    rotating from round to round. A block starts with a pause and one untimed run, so what the previous
    backend left behind (ONNX Runtime's threads spin for tens of ms after a run; caches hold its
    weights) is not billed to this one, then times runs for ``block_seconds`` (at least one).
    ``block_seconds=0, settle_seconds=0`` is plain run-by-run alternation, kept to show the difference."""
    for round_index in itertools.count():
        active = [s for s in slots if not s.satisfied(config)]
        if not active:
            return
        shift = round_index % len(active)
        for slot in active[shift:] + active[:shift]:
            if len(slots) > 1 and config.settle_seconds > 0:
                time.sleep(config.settle_seconds)
                slot.runner.infer(feed)
            block_end = time.perf_counter() + config.block_seconds
            while True:
                start = time.perf_counter()
                slot.runner.infer(feed)
                end = time.perf_counter()
                slot.times.append(end - start)
                if end >= block_end or slot.satisfied(config):
                    break
        say(min(_fraction(s, config) for s in slots))


def _fraction(slot: Slot, config: BenchConfig) -> float:
    if slot.satisfied(config):
        return 1.0
    runs = len(slot.times) / config.min_runs
    return min(runs, sum(slot.times) / config.min_seconds if config.min_seconds > 0 else 1.0, 1.0)


def _record(
    slot: Slot,
    sig: Signature,
    sizes: dict[str, int],
    reference: Slot | None,
    flops: int | None,
    threads: int,
    config: BenchConfig,
) -> dict[str, Any]:
    ms = sorted(t * 1e3 for t in slot.times)
    p50 = _percentile(ms, 50)
    batch = sizes.get(batch_symbol(sig, ""), 1) if first_dim_is_symbol(sig) else 1
    record: dict[str, Any] = {
        "backend": slot.label,
        "shape": shape_text(sizes),
        "sizes": sizes,
        "runs": len(ms),
        "timed_s": round(sum(slot.times), 4),
        "p50_ms": round(p50, 3),
        "p90_ms": round(_percentile(ms, 90), 3),
        "p99_ms": round(_percentile(ms, 99), 3),
        "mean_ms": round(statistics.fmean(ms), 3),
        "stdev_ms": round(statistics.stdev(ms), 3) if len(ms) > 1 else 0.0,
        "min_ms": round(ms[0], 3),
        "throughput": round(batch * 1e3 / p50, 2),  # samples per second at the median latency
        **{k: round(v, 1) for k, v in slot.cold.items()},
        "threads": threads,
        "precision": slot.runner.precision,
        **_parity(slot, reference),
        "flops": flops,
        "gflops": round(flops / p50 / 1e6, 2) if flops else None,
        "fraction_of_peak": None,
        "runtime": slot.runner.describe(),
        "warnings": list(slot.runner.warnings) + outside(sig, sizes),
    }
    if record["gflops"] and config.peak_gflops:
        record["fraction_of_peak"] = round(record["gflops"] / config.peak_gflops, 4)
    return record


def _parity(slot: Slot, reference: Slot | None) -> dict[str, float | None]:
    """Worst output: the largest abs diff and the lowest cosine against eager on the same feed."""
    if reference is None:
        return {"max_abs_diff": None, "cosine": None}
    worst_abs, worst_cos = 0.0, 1.0
    for name, want in reference.outputs.items():
        got = slot.outputs.get(name)
        if got is None or got.shape != want.shape:
            return {"max_abs_diff": math.inf, "cosine": None}
        if want.size:
            worst_abs = max(worst_abs, float(np.max(np.abs(got.astype(np.float64) - want.astype(np.float64)))))
            worst_cos = min(worst_cos, cosine(want, got))
    return {"max_abs_diff": worst_abs, "cosine": round(worst_cos, 7)}


def _count_flops(runner: Runner, feed: dict[str, np.ndarray]) -> int | None:
    """FLOPs of one inference, counted by PyTorch's FlopCounterMode on the eager model (matmuls,
    convolutions, attention; elementwise ops are not counted)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        runner.infer(feed)
    return int(counter.get_total_flops()) or None


def _percentile(sorted_ms: list[float], q: float) -> float:
    return float(np.percentile(sorted_ms, q, method="linear"))
