"""The served models of the serve-generate benchmark: the ~0.5 B LLaMA-style model of ``benchmarks/generate``
(random weights, seeded) with a stand-in word-level tokenizer (``t0`` .. ``t63999``: one word per id, so a
prompt of 128 words is 128 tokens and every new token is a piece of text to stream), its modelport bundle
(fp32, exported and verified once) and its compressed forms (``modelport optimize``): ``int4`` (int4-sym-128
on ONNX Runtime), ``int4-prefill`` (the same, prompt passes on OpenVINO in bf16), and on OpenVINO
``int4-openvino`` (the same int4 weights) and ``bf16-openvino`` (bf16 inference); bf16 where the CPU has it
(AMX or AVX-512 BF16).

    .venv/bin/python benchmarks/serve_generate/models.py    # builds what is missing under build/serve-generate
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "build" / "serve-generate"
sys.path[:0] = [str(ROOT / "benchmarks" / "generate"), str(ROOT / "benchmarks" / "generate" / "peers")]

MODEL = "llama-0.5b"
INT4 = "int4-sym-128"
CANDIDATES = {"int4": INT4, "int4-prefill": f"{INT4}-prefill-openvino-bf16", "int4-openvino": f"openvino-{INT4}",
              "bf16-openvino": "openvino-bf16"}  # fmt: skip


def folder(say=print) -> Path:
    """The model's folder with the stand-in tokenizer (links to ``benchmarks/generate``'s weights)."""
    import run as generate_run  # benchmarks/generate/run.py
    from protocol import with_tokenizer

    hf = generate_run.BUILD / MODEL / "hf"
    if not (hf / "config.json").is_file():
        say(f"{MODEL}: building the random-weight model")
        generate_run.prepare(MODEL, say)
    return Path(with_tokenizer(str(hf), str(BUILD / MODEL)))


def bundles(variants=("fp32", "int4"), say=print) -> dict[str, Path]:
    """``{variant: bundle}`` for ``fp32`` and the ``CANDIDATES``' variants asked for, each built once."""
    from compressed import LOOSE, _ids

    import modelport

    hf = folder(say)
    out = {"fp32": BUILD / MODEL / "bundle"}
    if not (out["fp32"] / "modelport.json").is_file():
        say(f"{MODEL}: exporting and verifying the generation bundle")
        modelport.export(f"hf:{hf}", out["fp32"], task="text-generation", progress=say)
    for variant in variants:
        if variant == "fp32":
            continue
        candidate = CANDIDATES[variant]
        out[variant] = BUILD / MODEL / f"bundle-{candidate}"
        if not (out[variant] / "modelport.json").is_file():
            say(f"{MODEL}: modelport optimize --candidates {candidate}")
            modelport.optimize(
                out["fp32"], out[variant], candidates=[candidate], budget=LOOSE, data=_ids(hf)
            )  # fmt: skip  (quality is judged on the trained model)
    return out


if __name__ == "__main__":
    print(bundles())
