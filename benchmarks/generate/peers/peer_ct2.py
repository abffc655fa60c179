"""Peer: CTranslate2's Generator, converted from the transformers folder at int8 (its weight-only int8 on CPU).

Run with build/gen-ct2-env/bin/python (benchmarks/generate/peers/setup.sh ct2). See protocol.py for the
arguments and the JSON lines. Exactly N tokens greedily: ``min_length=max_length=N`` masks the end token.
The prompt goes through the decoder at once (``include_prompt_in_result=False``); the callback's first call
marks the first new token.
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import protocol  # noqa: E402

SYSTEM = "CTranslate2"
PACKAGES = ("ctranslate2", "transformers", "torch")


def build(args):
    def convert(out):
        import ctranslate2

        src = protocol.with_tokenizer(args.model, args.work)
        ctranslate2.converters.TransformersConverter(src, low_cpu_mem_usage=True).convert(
            out, quantization=args.precision, force=True
        )

    return protocol.once(os.path.join(args.work, f"ct2-{args.precision}"), convert)


def main():
    import json

    import ctranslate2
    import numpy as np

    args = protocol.parse_args(__doc__, ["int8", "int8_float32", "float32"])
    folder = build(args)
    with open(os.path.join(folder, "vocabulary.json")) as f:
        vocab = json.load(f)
    generator = ctranslate2.Generator(folder, device="cpu", compute_type=args.precision,
                                      intra_threads=args.threads, inter_threads=1)  # fmt: skip
    weights = protocol.file_bytes(os.path.join(folder, "model.bin"))
    if args.score:
        logits = []
        for chunk in protocol.load_chunks(args):
            out = generator.forward_batch([[vocab[t] for t in chunk]])
            logits.append(np.asarray(out, dtype=np.float32)[0])
        return protocol.scored(SYSTEM, args, logits, weights)

    prompts = [[vocab[t] for t in row] for row in protocol.load_prompts(args)]

    def generate(n):
        first = []

        def clock(step):
            if not first:
                first.append(time.perf_counter())
            return False

        start = time.perf_counter()
        results = generator.generate_batch(prompts, max_length=n, min_length=n, sampling_topk=1, beam_size=1,
                                           include_prompt_in_result=False, callback=clock)  # fmt: skip
        end = time.perf_counter()
        new = results[0].sequences_ids[0]
        if len(new) != n:
            raise RuntimeError(f"generated {len(new)} tokens, expected {n}")
        return first[0] - start, (n - 1) * args.batch / (end - first[0]) if n > 1 else None, new

    protocol.rounds(SYSTEM, args, generate, weights, PACKAGES)


if __name__ == "__main__":
    protocol.run(SYSTEM, main)
