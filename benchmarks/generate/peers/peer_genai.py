"""Peer: greedy generation with onnxruntime-genai (its model builder's ONNX model, CPU, fp32).

Run with build/gen-genai-env/bin/python (benchmarks/generate/peers/setup.sh genai). Prints one JSON
line per round; on any failure prints {"system": ..., "error": "..."} and exits 0.

The model builder loads a tokenizer from its input folder. When the model folder has none, the
builder reads a copy in WORK_DIR/hf (links to the model's files) that gets a minimal word-level
tokenizer over the model's vocabulary; the user's folder is never written to.
"""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import argparse
import json
import subprocess
import sys
import time
from importlib import metadata

SYSTEM = "onnxruntime-genai"
PACKAGES = ("onnxruntime-genai", "onnxruntime", "onnx", "onnx-ir", "transformers", "torch")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "tokenizer_config.json")


def parse_args():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", required=True, help="local transformers folder of a causal LM")
    p.add_argument("--work", required=True, help="folder for the built ONNX model (reused when present)")
    p.add_argument("--batch", type=int, required=True)
    p.add_argument("--prompt-tokens", type=int, required=True)
    p.add_argument("--new-tokens", type=int, required=True)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--prompt-ids", required=True, help="JSON list of BATCH lists of PROMPT_TOKENS ids")
    return p.parse_args()


def load_prompts(path, batch, prompt_tokens):
    with open(path) as f:
        rows = json.load(f)
    if len(rows) != batch or any(len(r) != prompt_tokens for r in rows):
        raise ValueError(f"{path} must hold {batch} rows of {prompt_tokens} ids")
    return rows


def builder_input(model_dir, work_dir):
    """The folder to build from: the model itself, or a linked copy given a minimal tokenizer."""
    if any(os.path.exists(os.path.join(model_dir, f)) for f in TOKENIZER_FILES):
        return model_dir
    copy = os.path.join(work_dir, "hf")
    os.makedirs(copy, exist_ok=True)
    for name in os.listdir(model_dir):
        link = os.path.join(copy, name)
        if not os.path.lexists(link):
            os.symlink(os.path.abspath(os.path.join(model_dir, name)), link)
    if not os.path.exists(os.path.join(copy, "tokenizer.json")):
        from tokenizers import Tokenizer, models, pre_tokenizers
        from transformers import AutoConfig, PreTrainedTokenizerFast

        vocab_size = AutoConfig.from_pretrained(model_dir).vocab_size
        vocab = {f"t{i}": i for i in range(vocab_size)}
        tok = Tokenizer(models.WordLevel(vocab, unk_token="t0"))
        tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
        PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="t0").save_pretrained(copy)
    return copy


def build(model_dir, work_dir):
    """Build once with the model builder; the stamp file marks a finished build in WORK_DIR/onnx."""
    out = os.path.join(work_dir, "onnx")
    stamp = os.path.join(out, "peer-build.done")
    if os.path.exists(stamp):
        return out
    src = builder_input(model_dir, work_dir)
    cmd = [
        sys.executable,
        "-m",
        "onnxruntime_genai.models.builder",
        "-i",
        src,
        "-o",
        out,
        "-p",
        "fp32",
        "-e",
        "cpu",
        "-c",
        os.path.join(work_dir, "cache"),
    ]
    run = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    sys.stderr.write(run.stdout)
    if run.returncode != 0:
        lines = [line for line in run.stdout.splitlines() if line.strip()]
        raise RuntimeError(f"model builder failed: {lines[-1] if lines else run.returncode}")
    with open(stamp, "w") as f:
        f.write(model_dir + "\n")
    return out


def main():
    args = parse_args()
    import numpy as np
    import onnxruntime_genai as og

    rows = load_prompts(args.prompt_ids, args.batch, args.prompt_tokens)
    os.makedirs(args.work, exist_ok=True)
    onnx_dir = build(args.model, args.work)

    config = og.Config(onnx_dir)
    config.clear_providers()  # CPU
    config.overlay(json.dumps({"model": {"decoder": {"session_options": {"intra_op_num_threads": args.threads}}}}))
    model = og.Model(config)
    ids = np.array(rows, dtype=np.int32)
    n = args.new_tokens
    total = args.prompt_tokens + n
    versions = {name: metadata.version(name) for name in PACKAGES}
    for r in range(args.rounds):
        params = og.GeneratorParams(model)
        # min_length masks the eos id(s) until P+N: genai cannot switch eos off (an empty eos list
        # falls back to pad_token_id, and an id outside the vocabulary is refused).
        params.set_search_options(do_sample=False, min_length=total, max_length=total, batch_size=args.batch)
        generator = og.Generator(model, params)
        start = time.perf_counter()
        generator.append_tokens(ids)
        generator.generate_next_token()
        first = time.perf_counter()
        for _ in range(n - 1):
            generator.generate_next_token()
        end = time.perf_counter()
        seq = generator.get_sequence(0)
        if len(seq) != total or not generator.is_done():
            raise RuntimeError(f"sequence has {len(seq)} tokens, expected {total}")
        decode = (n - 1) * args.batch / (end - first) if n > 1 else None
        print(
            json.dumps(
                {
                    "system": SYSTEM,
                    "batch": args.batch,
                    "round": r,
                    "ttft_s": first - start,
                    "decode_tokens_per_s": decode,
                    "first_row_tokens": [int(t) for t in seq[args.prompt_tokens :]],
                    "versions": versions,
                }
            ),
            flush=True,
        )
        del generator


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # one JSON error line, exit 0: the caller records it as this peer's result
        msg = " ".join(f"{type(e).__name__}: {e}".split())[:500]
        print(json.dumps({"system": SYSTEM, "error": msg}), flush=True)
    sys.exit(0)
