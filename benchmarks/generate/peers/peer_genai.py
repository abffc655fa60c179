"""Peer: greedy generation with onnxruntime-genai (its model builder's ONNX model, CPU; fp32 or int4).

Run with build/gen-genai-env/bin/python (benchmarks/generate/peers/setup.sh genai). See protocol.py for the
arguments and the JSON lines. ``--precision int4`` is the builder's ``-p int4`` (its MatMulNBits defaults).

The model builder loads a tokenizer from its input folder; protocol.with_tokenizer gives it one when the
model has none. ``--score`` runs the builder's ``model.onnx`` in ONNX Runtime with an empty cache: genai
returns the last position's logits only, and teacher-forced scoring needs every position's.
"""

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import protocol  # noqa: E402

SYSTEM = "onnxruntime-genai"
PACKAGES = ("onnxruntime-genai", "onnxruntime", "onnx", "onnx-ir", "transformers", "torch")


def build(args):
    """Build once with the model builder into WORK_DIR/onnx-PRECISION."""

    def builder(out):
        src = protocol.with_tokenizer(args.model, args.work)
        cmd = [sys.executable, "-m", "onnxruntime_genai.models.builder", "-i", src, "-o", out,
               "-p", args.precision, "-e", "cpu", "-c", os.path.join(args.work, "cache")]  # fmt: skip
        protocol.run_tool(cmd, "model builder")

    # the fp32 build keeps run.py's folder name
    name = "onnx" if args.precision == "fp32" else f"onnx-{args.precision}"
    return protocol.once(os.path.join(args.work, name), builder)


def score(args, onnx_dir):
    """Teacher-forced logits of every chunk from the builder's graph, with a zero-length cache."""
    import numpy as np
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    session = ort.InferenceSession(os.path.join(onnx_dir, "model.onnx"), options, providers=["CPUExecutionProvider"])
    with open(os.path.join(args.model, "config.json")) as f:
        config = json.load(f)
    head = config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]
    logits = []
    for chunk in protocol.load_chunks(args):
        n = len(chunk)
        feeds = {}
        for inp in session.get_inputs():
            if inp.name == "input_ids":
                feeds[inp.name] = np.array([chunk], np.int64 if "int64" in inp.type else np.int32)
            elif inp.name == "attention_mask":
                feeds[inp.name] = np.ones((1, n), np.int64 if "int64" in inp.type else np.int32)
            elif inp.name == "position_ids":
                feeds[inp.name] = np.arange(n, dtype=np.int64 if "int64" in inp.type else np.int32)[None]
            elif inp.name.startswith("past_key_values"):
                dtype = np.float16 if "float16" in inp.type else np.float32
                feeds[inp.name] = np.zeros((1, inp.shape[1], 0, head), dtype)
            else:
                raise RuntimeError(f"unexpected input {inp.name} in the builder's graph")
        logits.append(session.run(["logits"], feeds)[0][0].astype(np.float32))
    return logits


def main():
    args = protocol.parse_args(__doc__, ["fp32", "int4"])
    import numpy as np
    import onnxruntime_genai as og

    onnx_dir = build(args)
    weights = protocol.file_bytes(*[os.path.join(onnx_dir, f) for f in os.listdir(onnx_dir) if "model.onnx" in f])
    if args.score:
        return protocol.scored(SYSTEM, args, score(args, onnx_dir), weights, graph=onnx_dir)
    rows = protocol.load_prompts(args)
    config = og.Config(onnx_dir)
    config.clear_providers()  # CPU
    config.overlay(json.dumps({"model": {"decoder": {"session_options": {"intra_op_num_threads": args.threads}}}}))
    model = og.Model(config)
    ids = np.array(rows, dtype=np.int32)

    def generate(n):
        total = args.prompt_tokens + n
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
        return first - start, (n - 1) * args.batch / (end - first) if n > 1 else None, [int(t) for t in seq[-n:]]

    protocol.rounds(SYSTEM, args, generate, weights, PACKAGES, graph=onnx_dir)


if __name__ == "__main__":
    protocol.run(SYSTEM, main)
