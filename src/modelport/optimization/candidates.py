"""The candidates ``optimize`` tries: a model file (a pass chain from the fp32 export) and the runtime
configuration it runs on. Which ones apply depends on the precision asked for, the extras installed
and the machine; one that does not apply is listed with the reason, not silently left out.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelport.optimization.drift import NodeDrift
from modelport.optimization.recipes import RECIPES, Recipe
from modelport.runtime.openvino import cpu_has_bf16
from modelport.verification.budget import OutputScore

__all__ = ["Candidate", "plan", "names", "PRECISIONS"]

PRECISIONS = ("auto", "fp32", "fp16", "bf16", "int8")


@dataclass
class Candidate:
    name: str  # e.g. "int8-dynamic"
    precision: str  # fp32 | bf16 | fp16 | int8
    backend: str  # the runner it is measured and shipped on, e.g. "ort:cpu", "openvino:bf16"
    steps: list[str]  # the pass chain from the exported graph, in words
    base: str = "onnx"  # the graph it starts from: "onnx" (as exported) or "fused"
    recipe: Recipe | None = None  # what builds its model file from ``base`` (None: the float graph itself)
    skipped: str = ""  # why it was not tried
    model: Path | None = None  # its model file, once built
    build_s: float = 0.0
    excluded: list[str] = field(default_factory=list)  # nodes kept in higher precision to meet the budget
    screen: list[OutputScore] = field(default_factory=list)  # on the calibration feeds
    accuracy: list[OutputScore] = field(default_factory=list)  # on the held-out feeds
    drift: list[NodeDrift] = field(default_factory=list)  # worst nodes, when it broke the budget
    p50_ms: float | None = None
    failed: str = ""  # it was tried and could not be built or run

    @property
    def within(self) -> bool:
        return not self.skipped and not self.failed and bool(self.accuracy) and all(o.within for o in self.accuracy)

    @property
    def status(self) -> str:
        if self.skipped:
            return f"skipped: {self.skipped}"
        if self.failed:
            return f"failed: {self.failed}"
        return "within budget" if self.within else "outside budget"

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "precision": self.precision,
            "backend": self.backend,
            "steps": self.steps,
            "status": self.status,
            "within": self.within,
            "build_s": round(self.build_s, 2),
            "p50_ms": self.p50_ms,
            "excluded": self.excluded,
            "calibration_accuracy": [o.to_json() for o in self.screen],
            "accuracy": [o.to_json() for o in self.accuracy],
            "drift": [d.to_json() for d in self.drift],
        }


def names() -> list[str]:
    return [c.name for c in plan("auto", transformer=False)]


def plan(precision: str, *, transformer: bool, gpu: bool = False, only: list[str] | None = None) -> list[Candidate]:
    """Every candidate for ``precision`` (``auto``: all of them; ``only``: these by name), the inapplicable
    ones with their reason. With ``gpu`` (ONNX Runtime's CUDA provider runs here), fp32 on CUDA is a
    candidate and fp16 is measured on CUDA."""
    have_ov = importlib.util.find_spec("openvino") is not None
    have_nncf = importlib.util.find_spec("nncf") is not None
    no_ov = "" if have_ov else "openvino is not installed (pip install 'modelport[openvino]')"
    no_nncf = no_ov or ("" if have_nncf else "nncf is not installed (pip install 'modelport[openvino]')")
    fused = ["ONNX Runtime offline optimization (extended: fusions valid on any CPU)"]
    no_bf16 = "" if cpu_has_bf16() else "this CPU has no bf16 instructions (AVX512-BF16 or AMX)"
    ov_bf16 = "OpenVINO computes the float rest in bf16"
    no_gpu = "" if gpu else "no CUDA GPU that ONNX Runtime can use here (pip install 'modelport[gpu]' on a GPU machine)"
    gpu_backend = "ort:cuda,cpu" if gpu else "ort:cpu"
    candidates = [
        Candidate("onnx-fp32", "fp32", "ort:cpu", ["as exported"]),
        Candidate(
            "cuda-fp32",
            "fp32",
            "ort:cuda,cpu",
            ["as exported", "ONNX Runtime's CUDA provider, TF32 off"],
            skipped=no_gpu,
        ),
        Candidate("fused-fp32", "fp32", "ort:cpu", fused, base="fused"),
        Candidate("openvino-fp32", "fp32", "openvino:f32", ["as exported"], skipped=no_ov),
        Candidate(
            "openvino-bf16",
            "bf16",
            "openvino:bf16",
            ["as exported", "OpenVINO computes in bf16"],
            skipped=no_ov or no_bf16,
        ),
        Candidate(
            "fp16",
            "fp16",
            gpu_backend,
            ["as exported", "fp16 weights and compute, fp32 inputs/outputs"] + ["on the CUDA provider"] * gpu,
            recipe=RECIPES["fp16"],
            skipped=""
            if gpu
            else "no GPU: ONNX Runtime runs fp16 slower than fp32 on a CPU (ask with --precision fp16)",
        ),
        Candidate(
            "int8-dynamic",
            "int8",
            "ort:cpu",
            [*fused, "int8 dynamic quantization (MatMul weights)"],
            base="fused",
            recipe=RECIPES["int8-dynamic"],
        ),
        Candidate(
            "int8-static",
            "int8",
            "ort:cpu",
            ["int8 static QDQ, per-channel weights, calibrated (MinMax)"],
            recipe=RECIPES["int8-static"],
        ),
    ]
    weights = ["NNCF int8 weight compression; OpenVINO quantizes activations per run, in groups"]
    full = ["NNCF post-training int8 (QDQ)" + (", transformer preset" if transformer else "")]
    for suffix, backend, extra, skip in (("", "openvino:f32", [], ""), ("-bf16", "openvino:bf16", [ov_bf16], no_bf16)):
        candidates += [
            Candidate(
                "openvino-int8-weights" + suffix,
                "int8",
                backend,
                weights + extra,
                recipe=RECIPES["nncf-int8-weights"],
                skipped=no_nncf or skip,
            ),
            Candidate(
                "openvino-int8" + suffix,
                "int8",
                backend,
                full + extra,
                recipe=RECIPES["nncf-int8"],
                skipped=no_nncf or skip,
            ),
        ]
    if only:
        return [c for c in candidates if c.name in only]
    if precision == "auto":
        return candidates
    wanted = [c for c in candidates if c.precision == precision or c.name == "onnx-fp32"]
    for c in wanted:
        if c.name == "fp16":  # asked for by name: measured even where it is slow
            c.skipped = ""
    return wanted
