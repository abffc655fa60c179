"""Why ONNX Runtime's fp32 trails OpenVINO's on all-MiniLM-L6-v2 (1, 128), and what closes the gap.

Every configuration runs the same feed in the same interleaved rounds (a slow spell of the machine falls
on all), with the same thread count; p50 over the rounds. Then each side's time by operator kind, from ONNX
Runtime's profiler and OpenVINO's performance counters, shows where the difference lies.

Configurations: OpenVINO fp32 with static shapes (what ``openvino:f32`` runs) and dynamic; ONNX Runtime on
the exported graph at level ``all`` (what ``ort:cpu`` runs), with its worker threads not spinning, and on
the graph after ONNX Runtime's transformer optimizer (``onnxruntime.transformers.optimizer``, BERT fusions:
Attention, SkipLayerNormalization, BiasGelu), which session level ``all`` does not find in the dynamo graph.

    .venv/bin/python benchmarks/ort_fp32_gap.py --out benchmarks/results
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import onnxruntime as ort
import openvino as ov

import modelport
from modelport.compare import cosine
from modelport.machine import physical_cores

ROOT = Path(__file__).resolve().parent.parent


def ort_session(path: Path, threads: int, spinning: bool = True, profile: str | None = None) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if profile:
        options.enable_profiling = True
        options.profile_file_prefix = profile
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def ov_request(path: Path, feed: dict[str, np.ndarray], threads: int, static: bool, profile: bool = False) -> object:
    core = ov.Core()
    graph = core.read_model(str(path))
    if static:
        graph.reshape({port: feed[port.get_any_name()].shape for port in graph.inputs})
    config: dict = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": threads}
    if profile:
        config["PERF_COUNT"] = True
    return core.compile_model(graph, "CPU", config).create_infer_request()


def fused(src: Path, dst: Path) -> Path:
    """The graph after ONNX Runtime's BERT fusions (heads and width read from the graph's shapes)."""
    from onnxruntime.transformers.optimizer import optimize_model

    model = optimize_model(str(src), model_type="bert", num_heads=0, hidden_size=0, opt_level=1)
    model.save_model_to_file(str(dst))
    return dst


def ort_by_kind(path: Path, feed: dict[str, np.ndarray], threads: int, runs: int, work: Path) -> dict[str, float]:
    session = ort_session(path, threads, profile=str(work / "ort"))
    for _ in range(runs):
        session.run(None, feed)
    events = json.loads(Path(session.end_profiling()).read_text())
    total: dict[str, float] = defaultdict(float)
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            total[event["args"]["op_name"]] += event["dur"] / 1e3 / runs
    return dict(total)


def ov_by_kind(request: object, feed: dict[str, np.ndarray], runs: int) -> dict[str, float]:
    total: dict[str, float] = defaultdict(float)
    for _ in range(runs):
        request.infer(feed)  # type: ignore[attr-defined]
        for info in request.profiling_info:  # type: ignore[attr-defined]
            total[info.node_type] += info.real_time.total_seconds() * 1e3 / runs
    return dict(total)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--threads", type=int, default=physical_cores())
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="ort-fp32-gap-"))
    bundle = modelport.export("demo:minilm", work / "minilm").bundle
    exported = bundle.model_path
    optimized = fused(exported, work / "fused.onnx")
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 30522, (1, 128))
    kinds = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
    feed = {i.name: kinds[i.name].astype(np.int64) for i in ort_session(exported, 1).get_inputs()}

    runs = {
        "openvino f32, static shapes (openvino:f32)": ov_request(exported, feed, args.threads, True),
        "openvino f32, dynamic shapes": ov_request(exported, feed, args.threads, False),
        "onnxruntime, exported graph (ort:cpu)": ort_session(exported, args.threads),
        "onnxruntime, exported graph, threads not spinning": ort_session(exported, args.threads, spinning=False),
        "onnxruntime, transformer fusions": ort_session(optimized, args.threads),
        "onnxruntime, transformer fusions, threads not spinning": ort_session(optimized, args.threads, spinning=False),
    }
    calls = {
        label: (lambda r=r: r.infer(feed)) if isinstance(r, ov.InferRequest) else (lambda r=r: r.run(None, feed))
        for label, r in runs.items()
    }
    reference = ort_session(exported, args.threads).run(None, feed)[0]
    agreement = {}
    for label, call in calls.items():
        out = call()
        first = np.asarray(out[0] if isinstance(out, list) else next(iter(out.values())))
        agreement[label] = cosine(reference, first)
        for _ in range(10):
            call()
    times: dict[str, list[float]] = {label: [] for label in calls}
    labels = list(calls)
    for index in range(args.rounds):
        for label in labels[index % len(labels) :] + labels[: index % len(labels)]:
            for _ in range(20):
                start = time.perf_counter()
                calls[label]()
                times[label].append(time.perf_counter() - start)
    p50 = {label: float(np.median(t)) * 1e3 for label, t in times.items()}
    base = p50["openvino f32, static shapes (openvino:f32)"]

    by_kind = {
        "openvino:f32": ov_by_kind(ov_request(exported, feed, args.threads, True, profile=True), feed, 50),
        "ort:cpu": ort_by_kind(exported, feed, args.threads, 50, work),
        "ort, fused": ort_by_kind(optimized, feed, args.threads, 50, work),
    }
    lines = [
        "# ONNX Runtime fp32 against OpenVINO fp32 on all-MiniLM-L6-v2 (1, 128)",
        "",
        f"`.venv/bin/python benchmarks/ort_fp32_gap.py`, {time.strftime('%Y-%m-%d')}, "
        f"{_cpu()}, {args.threads} threads, onnxruntime {ort.__version__}, OpenVINO {ov.__version__.split('-')[0]}. "
        f"p50 over {args.rounds} interleaved rounds of 20 calls; cosine of the first output to ort:cpu's.",
        "",
        "| configuration | p50 ms | openvino:f32 / it | cosine |",
        "|---|---|---|---|",
    ]
    lines += [f"| {label} | {ms:.2f} | {base / ms:.2f}x | {agreement[label]:.6f} |" for label, ms in p50.items()]
    lines += ["", "Time per run by operator kind (ms; profilers add some overhead of their own):", ""]
    lines += ["| kind | " + " | ".join(by_kind) + " |", "|---|" + "---|" * len(by_kind)]
    every = sorted({k for d in by_kind.values() for k in d}, key=lambda k: -max(d.get(k, 0) for d in by_kind.values()))
    for kind in every[:14]:
        cells = (f"{d[kind]:.2f}" if kind in d else "" for d in by_kind.values())
        lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    lines.append("| total | " + " | ".join(f"{sum(d.values()):.2f}" for d in by_kind.values()) + " |")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ort-fp32-gap.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def _cpu() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return ""


if __name__ == "__main__":
    main()
