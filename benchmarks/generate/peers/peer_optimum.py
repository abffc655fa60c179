"""Peer: greedy generation with optimum-onnx's ORTModelForCausalLM (ONNX Runtime, CPU, fp32).

Run with build/gen-optimum-env/bin/python (benchmarks/generate/peers/setup.sh optimum). See protocol.py for
the arguments and the JSON lines (generate mode only).
"""

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import protocol  # noqa: E402

SYSTEM = "optimum-onnx ORTModelForCausalLM"
PACKAGES = ("optimum-onnx", "optimum", "onnxruntime", "transformers", "torch")


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
    args = protocol.parse_args(__doc__, ["fp32"])
    import onnxruntime as ort
    import torch
    from optimum.onnxruntime import ORTModelForCausalLM

    torch.set_num_threads(args.threads)
    rows = protocol.load_prompts(args)
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
    versions = protocol.versions(PACKAGES)
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
    protocol.run(SYSTEM, main)
