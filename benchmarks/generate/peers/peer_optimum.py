"""Peer: greedy generation with optimum-onnx's ORTModelForCausalLM (ONNX Runtime, CPU, fp32).

Run with build/gen-optimum-env/bin/python (benchmarks/generate/peers/setup.sh optimum). Prints one JSON
line per round; on any failure prints {"system": ..., "error": "..."} and exits 0.
"""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import argparse
import json
import sys
import time
from importlib import metadata

SYSTEM = "optimum-onnx ORTModelForCausalLM"
PACKAGES = ("optimum-onnx", "optimum", "onnxruntime", "transformers", "torch")


def parse_args():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", required=True, help="local transformers folder of a causal LM")
    p.add_argument("--work", required=True, help="folder for the exported ONNX model (reused when present)")
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


def export(model_dir, work_dir):
    """Export once: the stamp file marks a finished export in work_dir."""
    stamp = os.path.join(work_dir, "peer-export.done")
    if os.path.exists(stamp):
        return
    from optimum.onnxruntime import ORTModelForCausalLM

    model = ORTModelForCausalLM.from_pretrained(model_dir, export=True, use_cache=True)
    model.save_pretrained(work_dir)
    with open(stamp, "w") as f:
        f.write(model_dir + "\n")


class FirstTokenClock:
    """A generate() streamer: put() is called with the prompt, then once per new token."""

    def __init__(self):
        self.calls = 0
        self.first_token_at = None

    def put(self, value):
        self.calls += 1
        if self.calls == 2:
            self.first_token_at = time.perf_counter()

    def end(self):
        pass


def main():
    args = parse_args()
    import onnxruntime as ort
    import torch
    from optimum.onnxruntime import ORTModelForCausalLM

    torch.set_num_threads(args.threads)
    rows = load_prompts(args.prompt_ids, args.batch, args.prompt_tokens)
    os.makedirs(args.work, exist_ok=True)
    export(args.model, args.work)

    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    model = ORTModelForCausalLM.from_pretrained(
        args.work, use_cache=True, provider="CPUExecutionProvider", session_options=options
    )
    # Greedy for exactly N tokens: min_new_tokens=N masks the eos id(s) (as onnxruntime-genai's
    # min_length does), so nothing stops early.
    gen = model.generation_config
    if gen.pad_token_id is None:
        gen.pad_token_id = 0
    gen.do_sample = False
    gen.num_beams = 1
    for key in ("temperature", "top_p", "top_k"):
        setattr(gen, key, None)

    input_ids = torch.tensor(rows, dtype=torch.long)
    attention_mask = torch.ones_like(input_ids)
    n = args.new_tokens
    versions = {name: metadata.version(name) for name in PACKAGES}
    for r in range(args.rounds):
        clock = FirstTokenClock()
        start = time.perf_counter()
        out = model.generate(
            input_ids=input_ids,
            attention_mask=attention_mask,
            generation_config=gen,
            max_new_tokens=n,
            min_new_tokens=n,
            streamer=clock,
        )
        end = time.perf_counter()
        new = out[:, args.prompt_tokens :]
        if new.shape[1] != n:
            raise RuntimeError(f"generated {new.shape[1]} tokens, expected {n}")
        ttft = clock.first_token_at - start
        decode = (n - 1) * args.batch / (end - clock.first_token_at) if n > 1 else None
        print(
            json.dumps(
                {
                    "system": SYSTEM,
                    "batch": args.batch,
                    "round": r,
                    "ttft_s": ttft,
                    "decode_tokens_per_s": decode,
                    "first_row_tokens": new[0].tolist(),
                    "versions": versions,
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # one JSON error line, exit 0: the caller records it as this peer's result
        msg = " ".join(f"{type(e).__name__}: {e}".split())[:500]
        print(json.dumps({"system": SYSTEM, "error": msg}), flush=True)
    sys.exit(0)
