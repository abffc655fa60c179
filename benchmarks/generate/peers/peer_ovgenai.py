"""Peer: OpenVINO GenAI's LLMPipeline on an optimum-intel export with NNCF weight compression (int4 or int8).

Run with build/gen-ovgenai-env/bin/python (benchmarks/generate/peers/setup.sh ovgenai). See protocol.py for
the arguments and the JSON lines.

The model is ``optimum-cli export openvino --task text-generation-with-past --weight-format int4|int8``: the
stateful IR (cache inside the model) with optimum-intel's own default compression settings for the format.
Generation feeds token ids (``TokenizedInputs``) with ``ignore_eos``, greedy, exactly N tokens. The first
token time is a one-token generation of the same prompts, with prefix caching off (with it on, the pipeline's
TTFT read 30-38 ms for a 128-token prompt on the 1.1 B model: the repeated prompt was a cache hit);
decode tokens/s is (N - 1) x batch over the N-token run less that time. ``--score`` runs the same IR
through optimum-intel's ``OVModelForCausalLM``, which returns every position's logits (the pipeline returns
tokens only).
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import protocol  # noqa: E402

SYSTEM = "OpenVINO GenAI"
PACKAGES = ("openvino-genai", "openvino", "optimum-intel", "nncf", "transformers", "torch")


def build(args):
    def export(out):
        src = protocol.with_tokenizer(args.model, args.work)
        cmd = [sys.executable, "-m", "optimum.commands.optimum_cli", "export", "openvino", "--model", src,
               "--task", "text-generation-with-past", "--weight-format", args.precision, out]  # fmt: skip
        protocol.run_tool(cmd, "optimum-cli export openvino")

    return protocol.once(os.path.join(args.work, f"ov-{args.precision}"), export)


def score(args, folder):
    import numpy as np
    import torch
    from optimum.intel import OVModelForCausalLM

    model = OVModelForCausalLM.from_pretrained(folder, ov_config={"INFERENCE_NUM_THREADS": str(args.threads)})
    logits = []
    for chunk in protocol.load_chunks(args):
        ids = torch.tensor([chunk])
        out = model(input_ids=ids, attention_mask=torch.ones_like(ids))
        logits.append(np.asarray(out.logits[0], dtype=np.float32))
    return logits


def main():
    args = protocol.parse_args(__doc__, ["int4", "int8"])
    folder = build(args)
    weights = protocol.file_bytes(os.path.join(folder, "openvino_model.bin"))
    if args.score:
        return protocol.scored(SYSTEM, args, score(args, folder), weights)

    import numpy as np
    import openvino as ov
    import openvino_genai as ov_genai

    ids = np.array(protocol.load_prompts(args), np.int64)
    inputs = ov_genai.TokenizedInputs(ov.Tensor(ids), ov.Tensor(np.ones_like(ids)))
    scheduler = ov_genai.SchedulerConfig()
    scheduler.enable_prefix_caching = False  # every run repeats the same prompts: a cached one times no prefill
    pipe = ov_genai.LLMPipeline(folder, "CPU", scheduler_config=scheduler, INFERENCE_NUM_THREADS=args.threads)

    def run(n):
        config = ov_genai.GenerationConfig(max_new_tokens=n, min_new_tokens=n, ignore_eos=True, do_sample=False)
        start = time.perf_counter()
        result = pipe.generate(inputs, config)
        new = list(result.tokens[0])
        if len(new) != n:
            raise RuntimeError(f"generated {len(new)} tokens, expected {n}")
        return time.perf_counter() - start, [int(t) for t in new]

    protocol.rounds(SYSTEM, args, lambda n: protocol.by_one_token(run, n, args.batch), weights, PACKAGES)


if __name__ == "__main__":
    protocol.run(SYSTEM, main)
