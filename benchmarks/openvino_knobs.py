"""What OpenVINO's knobs do to all-MiniLM-L6-v2's int8-weights model (the candidate `optimize` picks for it):
static against dynamic shapes, and the group size OpenVINO quantizes each MatMul's activations in per run
(DYNAMIC_QUANTIZATION_GROUP_SIZE; 32 is its default, 0 turns it off). Speed: p50 at (1, 128) on the first
held-out sentence, every configuration timed in the same interleaved rounds. Accuracy: the worst cosine,
over outputs and held-out sentences, against the fp32 ONNX model (which agrees with PyTorch within 1e-5).
The sentences are split as `optimize` splits them.

    .venv/bin/python benchmarks/openvino_knobs.py --out benchmarks/results
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import openvino as ov

import modelport
from modelport.compare import cosine
from modelport.optimization import passes
from modelport.optimization.data import load_data
from modelport.runtime.registry import create

ROOT = Path(__file__).resolve().parent.parent
# (label, model: "fp32" or "int8w", precision hint, activation group size or None for OpenVINO's default, static)
CONFIGS = [
    ("bf16, no int8", "fp32", "bf16", None, True),
    ("int8 weights, groups of 32 (default), dynamic shapes", "int8w", "bf16", None, False),
    ("int8 weights, groups of 32 (default)", "int8w", "bf16", None, True),
    ("int8 weights, groups of 64", "int8w", "bf16", 64, True),
    ("int8 weights, groups of 128", "int8w", "bf16", 128, True),
    ("int8 weights, activations not quantized", "int8w", "bf16", 0, True),
    ("int8 weights, activations not quantized, f32", "int8w", "f32", 0, True),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--sentences", type=Path, default=ROOT / "benchmarks" / "data" / "sentences.txt")
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="openvino-knobs-"))
    bundle = modelport.export("demo:minilm", work / "minilm").bundle
    data = load_data(args.sentences, bundle)
    fp32 = bundle.path / "model.onnx"
    passes.prepare(fp32, work / "prepared.onnx")
    passes.nncf_int8_weights(work / "prepared.onnx", work / "int8w.onnx")
    models = {"fp32": fp32, "int8w": work / "int8w.onnx"}

    with create("ort:cpu", fp32) as reference:
        want = [reference.infer(feed) for feed in data.held_out]
    feed = data.held_out[0]
    core = ov.Core()
    rows = []
    for label, model, precision, group, static in CONFIGS:
        graph = core.read_model(str(models[model]))
        if static:
            graph.reshape({port: feed[port.get_any_name()].shape for port in graph.inputs})
        config: dict = {"INFERENCE_PRECISION_HINT": precision, "INFERENCE_NUM_THREADS": 2}
        if group is not None:
            config["DYNAMIC_QUANTIZATION_GROUP_SIZE"] = group
        compiled = core.compile_model(graph, "CPU", config)
        request = compiled.create_infer_request()
        ports = {name: next(p for p in compiled.outputs if name in p.get_names()) for name in want[0]}
        worst = 1.0
        for sample, expected in zip(data.held_out, want, strict=True):
            got = request.infer(sample)
            worst = min(worst, *(cosine(expected[n], np.asarray(got[p])) for n, p in ports.items()))
        for _ in range(10):
            request.infer(feed)
        rows.append({"label": label, "request": request, "worst": worst, "times": []})
    for index in range(args.rounds):  # interleaved: a slow spell of the machine falls on every row
        for row in rows[index % len(rows) :] + rows[: index % len(rows)]:
            for _ in range(25):
                start = time.perf_counter()
                row["request"].infer(feed)
                row["times"].append(time.perf_counter() - start)

    base = float(np.median(rows[2]["times"]))  # the default configuration
    lines = [
        "# OpenVINO's knobs on all-MiniLM-L6-v2's int8-weights model",
        "",
        f"`.venv/bin/python benchmarks/openvino_knobs.py`, {time.strftime('%Y-%m-%d')}, OpenVINO {ov.__version__}, "
        f"2 threads. p50 at (1, 128) over {args.rounds} interleaved rounds of 25 calls; worst cosine over outputs "
        f"and the {len(data.held_out)} held-out sentences against the fp32 ONNX model (budget: 0.999).",
        "",
        "| configuration | p50 ms | vs groups of 32, static | worst cosine |",
        "|---|---|---|---|",
    ]
    for row in rows:
        p50 = float(np.median(row["times"]))
        lines.append(f"| {row['label']} | {p50 * 1e3:.2f} | {base / p50:.2f}x | {row['worst']:.5f} |")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "openvino-knobs.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
