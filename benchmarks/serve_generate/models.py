"""The served models of the serve-generate benchmark: the ~0.5 B LLaMA-style model of ``benchmarks/generate``
(random weights, seeded) with a stand-in word-level tokenizer (``t0`` .. ``t63999``: one word per id, so a
prompt of 128 words is 128 tokens and every new token is a piece of text to stream), its modelport bundle
(fp32, exported and verified once) and its best compressed form (int4, ``modelport optimize``).

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


def folder(say=print) -> Path:
    """The model's folder with the stand-in tokenizer (links to ``benchmarks/generate``'s weights)."""
    import run as generate_run  # benchmarks/generate/run.py
    from protocol import with_tokenizer

    hf = generate_run.BUILD / MODEL / "hf"
    if not (hf / "config.json").is_file():
        say(f"{MODEL}: building the random-weight model")
        generate_run.prepare(MODEL, say)
    return Path(with_tokenizer(str(hf), str(BUILD / MODEL)))


def bundles(say=print) -> dict[str, Path]:
    """``{"fp32": bundle, "int4": bundle}``, each built once."""
    from compressed import LOOSE, _ids

    import modelport

    hf = folder(say)
    fp32, int4 = BUILD / MODEL / "bundle", BUILD / MODEL / f"bundle-{INT4}"
    if not (fp32 / "modelport.json").is_file():
        say(f"{MODEL}: exporting and verifying the generation bundle")
        modelport.export(f"hf:{hf}", fp32, task="text-generation", progress=say)
    if not (int4 / "modelport.json").is_file():
        say(f"{MODEL}: modelport optimize --candidates {INT4}")
        modelport.optimize(fp32, int4, candidates=[INT4], budget=LOOSE, data=_ids(hf))  # (judged on the trained model)
    return {"fp32": fp32, "int4": int4}


if __name__ == "__main__":
    print(bundles())
