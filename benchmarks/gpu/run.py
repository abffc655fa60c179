"""GPU benchmark: BERT-base (batch 8, seq 128) on one NVIDIA GPU, every GPU path modelport offers, one run.

    python benchmarks/gpu/run.py [--out benchmarks/results/gpu.md] [--batch 8] [--seq 128] [--iters 100]

Rows: PyTorch eager (fp32 with TF32 off, TF32, fp16 weights), ONNX Runtime's CUDA provider (fp32, TF32, the
fp16 model of optimize's fp16 pass), ONNX Runtime's TensorRT provider fp16, native TensorRT fp16 and
``trtexec --fp16`` where the TensorRT wheel ships it. Each row: p50/p90 of wall time per call with the inputs
already on the GPU and the outputs copied back to the host (what a caller gets), the speed-up against eager
fp32, and last_hidden_state's max |diff| and cosine against eager fp32 on the same feed. A path that cannot run
here is a row with its reason, not a missing row. The bundle is exported (and verified on the CPU) first.
"""

from __future__ import annotations

import argparse
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "src")]

OUTPUT = "last_hidden_state"


def timed(call: Callable[[], Any], iters: int, warmup: int) -> tuple[float, float]:
    for _ in range(warmup):
        call()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1e3)
    return float(np.percentile(times, 50)), float(np.percentile(times, 90))


def agreement(out: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    a, b = out.astype(np.float64).ravel(), ref.astype(np.float64).ravel()
    return float(np.abs(a - b).max()), float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


class Bench:
    def __init__(self, iters: int, warmup: int) -> None:
        self.iters, self.warmup = iters, warmup
        self.rows: list[dict[str, Any]] = []
        self.reference: np.ndarray | None = None

    def row(self, name: str, precision: str, make: Callable[[], Callable[[], np.ndarray]]) -> None:
        """``make`` builds the path (untimed) and returns one call that answers last_hidden_state on the host."""
        print(f"-- {name} ({precision})", flush=True)
        try:
            call = make()
            out = call()
            p50, p90 = timed(call, self.iters, self.warmup)
        except Exception as exc:  # a path that cannot run here is reported, not fatal
            traceback.print_exc(limit=3)
            reason = next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
            self.rows.append({"name": name, "precision": precision, "skipped": reason.split(" — ")[0][:200]})
            return
        if self.reference is None:
            self.reference = out
        diff, cos = agreement(out, self.reference)
        self.rows.append({"name": name, "precision": precision, "p50": p50, "p90": p90, "diff": diff, "cos": cos})
        print(f"   p50 {p50:.2f} ms  p90 {p90:.2f} ms  max|diff| {diff:.2e}  cos {cos:.6f}", flush=True)

    def table(self) -> str:
        base = self.rows[0].get("p50") if self.rows else None
        lines = [
            "| path | precision | p50 ms | p90 ms | vs eager fp32 | max abs diff | cosine |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in self.rows:
            if "skipped" in r:
                lines.append(f"| {r['name']} | {r['precision']} | not run: {r['skipped']} | | | | |")
                continue
            speed = f"{base / r['p50']:.2f}x" if base else ""
            lines.append(
                f"| {r['name']} | {r['precision']} | {r['p50']:.2f} | {r['p90']:.2f} | {speed} "
                f"| {r['diff']:.1e} | {r['cos']:.6f} |"
            )
        return "\n".join(lines)


def eager(model: Any, feed: dict[str, Any], *, tf32: bool = False, half: bool = False) -> Callable[[], np.ndarray]:
    import torch

    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    module = model.half() if half else model

    @torch.inference_mode()
    def call() -> np.ndarray:
        return module(**feed)[OUTPUT].float().cpu().numpy()

    return call


def ort_path(backend: str, model: Any, feed: dict[str, np.ndarray], closing: list) -> Callable[[], np.ndarray]:
    from modelport.runtime.registry import create

    runner = create(backend, model)
    runner.load()
    closing.append(runner)
    on_device = runner.device_feed(feed) if hasattr(runner, "device_feed") else feed
    return lambda: runner.infer(on_device)[OUTPUT]


def trtexec(onnx_path: Path, batch: int, seq: int) -> Callable[[], np.ndarray]:
    exe = shutil.which("trtexec")
    if exe is None:
        raise RuntimeError("trtexec is not on the PATH (the tensorrt wheel does not ship it)")
    shapes = f"input_ids:{batch}x{seq},attention_mask:{batch}x{seq}"
    done = subprocess.run(
        [exe, f"--onnx={onnx_path}", "--fp16", f"--shapes={shapes}"], capture_output=True, text=True, check=True
    )
    print(done.stdout[-2000:])
    raise RuntimeError("trtexec ran; its own timings are in the log above (no output to compare)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--iters", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=20)
    args = parser.parse_args()

    import onnxruntime as ort
    import torch
    from benchmarks.models import bert_base

    from modelport.exporting import export
    from modelport.optimization.passes import fp16

    if not torch.cuda.is_available():
        print("benchmarks/gpu/run.py needs a CUDA GPU that torch sees; there is none here", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="modelport-gpu-bench-"))
    started = time.perf_counter()
    model = bert_base()
    inputs = ["input_ids:batch,seq:int64:0..30522", "attention_mask:batch,seq:int64:0..2"]
    bundle = export(model, work / "bert", inputs, ["batch=1..8", "seq=1..128"]).bundle
    print(f"exported and verified in {time.perf_counter() - started:.0f} s", flush=True)

    rng = np.random.default_rng(0)
    feed = {
        "input_ids": rng.integers(0, 30522, (args.batch, args.seq), dtype=np.int64),
        "attention_mask": np.ones((args.batch, args.seq), np.int64),
    }
    on_gpu = {k: torch.from_numpy(v).cuda() for k, v in feed.items()}
    bench = Bench(args.iters, args.warmup)
    closing: list = []
    gpu_model = model.cuda()
    bench.row("PyTorch eager", "fp32 (TF32 off)", lambda: eager(gpu_model, on_gpu))
    bench.row("PyTorch eager", "tf32", lambda: eager(gpu_model, on_gpu, tf32=True))
    bench.row("ONNX Runtime CUDA (ort:cuda,cpu)", "fp32", lambda: ort_path("ort:cuda,cpu", bundle, feed, closing))
    bench.row("ONNX Runtime CUDA (ort:cuda,cpu:tf32)", "tf32",
              lambda: ort_path("ort:cuda,cpu:tf32", bundle, feed, closing))  # fmt: skip
    half_model = work / "bert-fp16.onnx"

    def fp16_path() -> Callable[[], np.ndarray]:
        fp16(bundle.model_path, half_model)
        return ort_path("ort:cuda,cpu", half_model, feed, closing)

    bench.row("ONNX Runtime CUDA, optimize's fp16 pass", "fp16", fp16_path)
    bench.row("ONNX Runtime TensorRT (ort:tensorrt,cuda,cpu:fp16)", "fp16",
              lambda: ort_path("ort:tensorrt,cuda,cpu:fp16", bundle, feed, closing))  # fmt: skip
    bench.row("TensorRT (tensorrt:fp16)", "fp16", lambda: ort_path("tensorrt:fp16", bundle, feed, closing))
    bench.row("trtexec --fp16", "fp16", lambda: trtexec(bundle.model_path, args.batch, args.seq))
    bench.row("PyTorch eager", "fp16 weights", lambda: eager(gpu_model, on_gpu, half=True))  # last: converts the model
    for runner in closing:
        runner.close()

    smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
                         capture_output=True, text=True).stdout.strip()  # fmt: skip
    header = (
        f"# GPU benchmark: BERT-base ({args.batch}, {args.seq})\n\n"
        f"`python benchmarks/gpu/run.py`, {time.strftime('%Y-%m-%d')}: {smi}; torch {torch.__version__}, "
        f"onnxruntime {ort.__version__} ({', '.join(ort.get_available_providers())}), Python "
        f"{platform.python_version()}. Wall time per call, inputs on the GPU, outputs copied to the host; "
        f"{args.iters} calls after {args.warmup} warm-up. Accuracy: last_hidden_state against eager fp32 "
        f"(TF32 off) on the same feed (random weights, seed 0).\n\n"
    )
    text = header + bench.table() + "\n"
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
