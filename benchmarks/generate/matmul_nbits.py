"""One int4 weight matrix, as a decode step and a prompt pass see it: ONNX Runtime's ``MatMulNBits`` (int8 compute,
``accuracy_level`` 4, and float compute) against OpenVINO reading the same file (f32 and bf16 inference), at
1, 4, 16 and 128 rows. The matrix is a 1.1 B LLaMA's MLP projection (2048 x 5632, int4 symmetric in blocks of
128, quantized by onnxruntime's own ``MatMulNBitsQuantizer``); 2 threads; the median of 5 timings of 50 runs.

This is why ``optimize`` has a candidate whose prompt pass runs on OpenVINO and whose steps run on ONNX
Runtime (``int4-sym-128-prefill-openvino-*``), and why batched int4 serving scales as it does: one row is
ONNX Runtime's case, many rows OpenVINO's (AMX bf16 where the CPU has it).

    .venv/bin/python benchmarks/generate/matmul_nbits.py

Results: ``benchmarks/results/matmul-nbits.md``.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
K, N, ROWS, THREADS = 2048, 5632, (1, 4, 16, 128), 2


def quantized(folder: Path, accuracy_level: int) -> Path:
    from onnx import TensorProto, helper, numpy_helper
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    weight = np.random.default_rng(0).standard_normal((K, N)).astype(np.float32) * 0.02
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["rows", K])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["rows", N])], [numpy_helper.from_array(weight, "w")],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    quantizer = MatMulNBitsQuantizer(model, block_size=128, is_symmetric=True, accuracy_level=accuracy_level)
    quantizer.process()
    path = folder / f"int4-acc{accuracy_level}.onnx"
    quantizer.model.save_model_to_file(str(path))
    return path


def timed(run) -> float:
    """Milliseconds per call: the median of 5 timings of 50 calls, after 3 warm-up calls."""
    for _ in range(3):
        run()
    times = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(50):
            run()
        times.append((time.perf_counter() - start) / 50 * 1e3)
    return statistics.median(times)


def main() -> None:
    import onnxruntime as ort
    import openvino as ov

    from modelport.benchmark.machine import fingerprint

    rng = np.random.default_rng(1)
    inputs = {m: rng.standard_normal((m, K)).astype(np.float32) for m in ROWS}
    rows: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        files = {level: quantized(Path(tmp), level) for level in (4, 0)}
        options = ort.SessionOptions()
        options.intra_op_num_threads = THREADS
        for level, label in ((4, "ONNX Runtime, int8 compute"), (0, "ONNX Runtime, float compute")):
            session = ort.InferenceSession(str(files[level]), options, providers=["CPUExecutionProvider"])
            rows[label] = [timed(lambda s=session, x=inputs[m]: s.run(None, {"x": x})) for m in ROWS]
        core = ov.Core()
        for precision in ("f32", "bf16"):
            config = {"INFERENCE_PRECISION_HINT": precision, "INFERENCE_NUM_THREADS": THREADS}
            request = core.compile_model(str(files[4]), "CPU", config).create_infer_request()
            rows[f"OpenVINO {ov.__version__.split('-')[0]}, {precision}"] = [
                timed(lambda r=request, x=inputs[m]: r.infer({0: x})) for m in ROWS
            ]
    machine = fingerprint(THREADS)
    lines = ["# One int4 MatMul (2048 x 5632, blocks of 128) at 1 to 128 rows", "",
             f"`benchmarks/generate/matmul_nbits.py`. Machine: {machine['cpu']}, {THREADS} threads. "
             "Milliseconds per call (median of 5 x 50), and each row count against one row.", "",
             "| runtime | " + " | ".join(f"{m} rows" for m in ROWS) + " |", "|---|" + "---:|" * len(ROWS)]  # fmt: skip
    for label, ms in rows.items():
        lines.append(f"| {label} | " + " | ".join(f"{t:.3f} ({t / ms[0]:.1f}x)" for t in ms) + " |")
    out = ROOT / "benchmarks" / "results" / "matmul-nbits.md"
    out.write_text("\n".join(lines) + "\n")
    print(out.read_text())


if __name__ == "__main__":
    main()
