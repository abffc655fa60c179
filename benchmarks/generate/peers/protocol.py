"""What every generation peer shares: its arguments, its output lines, and the folder it builds from.

A peer runs in a venv of its own, so this module needs only the standard library (and numpy for logits).
Two modes, chosen by the arguments:

- generate: ``--batch --prompt-tokens --new-tokens --prompt-ids [--rounds]``; one JSON line per round with
  ``ttft_s``, ``decode_tokens_per_s``, ``first_row_tokens``, ``weight_bytes`` and ``versions``. Before its
  rounds a peer warms up on 4 new tokens, as modelport's worker does.
- score: ``--score CHUNKS.json --score-out OUT.npy``; teacher-forced logits of every chunk (a list of token id
  lists), saved as one float32 array [chunks, longest, vocab], zero-padded; one JSON line with ``weight_bytes``.

A peer whose model is an ONNX graph adds ``graph`` (its folder) to its lines, so the caller counts the bytes
a decode step reads from the graph itself rather than estimating them from the file size.

On any failure a peer prints ``{"system": ..., "error": ...}`` and exits 0: the caller records the reason.
"""

import argparse
import json
import os
import subprocess
import sys
from importlib import metadata

os.environ["HF_HUB_OFFLINE"] = "1"  # every peer reads local folders only: no hub here
os.environ["TRANSFORMERS_OFFLINE"] = "1"
WARMUP_TOKENS = 4
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "tokenizer_config.json")


def parse_args(doc, precisions):
    p = argparse.ArgumentParser(description=doc)
    p.add_argument("--model", required=True, help="local transformers folder of a causal LM")
    p.add_argument("--work", required=True, help="folder for what the peer builds (reused when present)")
    p.add_argument("--precision", choices=precisions, default=precisions[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch", type=int)
    p.add_argument("--prompt-tokens", type=int)
    p.add_argument("--new-tokens", type=int)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--prompt-ids", help="JSON list of BATCH lists of PROMPT_TOKENS ids")
    p.add_argument("--score", help="JSON list of token id lists: save their teacher-forced logits")
    p.add_argument("--score-out", help="where --score saves the logits (.npy)")
    args = p.parse_args()
    if args.score and not args.score_out:
        p.error("--score needs --score-out")
    if not args.score and None in (args.batch, args.prompt_tokens, args.new_tokens, args.prompt_ids):
        p.error("give --batch, --prompt-tokens, --new-tokens and --prompt-ids, or --score and --score-out")
    os.makedirs(args.work, exist_ok=True)
    return args


def load_prompts(args):
    with open(args.prompt_ids) as f:
        rows = json.load(f)
    if len(rows) != args.batch or any(len(r) != args.prompt_tokens for r in rows):
        raise ValueError(f"{args.prompt_ids} must hold {args.batch} rows of {args.prompt_tokens} ids")
    return rows


def load_chunks(args):
    with open(args.score) as f:
        return json.load(f)


def save_logits(path, logits):
    import numpy as np

    length = max(x.shape[0] for x in logits)
    out = np.zeros((len(logits), length, logits[0].shape[-1]), np.float32)
    for i, x in enumerate(logits):
        out[i, : x.shape[0]] = x
    np.save(path, out)


def scored(system, args, logits, weight_bytes, **extra):
    """Score mode's end: the logits saved to ``--score-out`` and the one JSON line."""
    save_logits(args.score_out, logits)
    emit(system, weight_bytes=weight_bytes, scored=args.score_out, **extra)


def run_tool(cmd, what):
    """Runs a peer's own converter or exporter; its output goes to stderr, its last line into the error."""
    run = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    sys.stderr.write(run.stdout)
    if run.returncode != 0:
        lines = [line for line in run.stdout.splitlines() if line.strip()]
        raise RuntimeError(f"{what} failed: {lines[-1] if lines else run.returncode}")


def emit(system, **row):
    print(json.dumps({"system": system, **row}), flush=True)


def versions(packages):
    return {name: metadata.version(name) for name in packages}


def file_bytes(*paths):
    return sum(os.path.getsize(p) for p in paths)


def with_tokenizer(model_dir, work_dir):
    """The folder to build from: the model itself when it has a tokenizer, else a copy of links to its files
    with a word-level tokenizer over its vocabulary (``t0``, ``t1``, ...); the user's folder is never written.

    The peers' converters need a tokenizer to write a vocabulary; the benchmark feeds token ids, so which
    strings the ids carry does not matter.
    """
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

        config = AutoConfig.from_pretrained(model_dir)
        tok = Tokenizer(models.WordLevel({f"t{i}": i for i in range(config.vocab_size)}, unk_token="t0"))
        tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
        special = {f"{k}_token": f"t{getattr(config, f'{k}_token_id', None) or 0}" for k in ("bos", "eos")}
        PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="t0", **special).save_pretrained(copy)
    return copy


def once(folder, build):
    """Runs ``build(folder)`` unless a stamp in FOLDER says it finished before; returns FOLDER."""
    stamp = os.path.join(folder, "peer-build.done")
    if not os.path.exists(stamp):
        os.makedirs(folder, exist_ok=True)
        build(folder)
        with open(stamp, "w") as f:
            f.write("done\n")
    return folder


def rounds(system, args, generate, weights, packages, **extra):
    """A warm-up, then ``args.rounds`` timed generations, one JSON line each (EXTRA added to every line).

    GENERATE(n) -> (ttft_s, decode_tokens_per_s, first row's new tokens)."""
    generate(WARMUP_TOKENS)
    found = versions(packages)
    for r in range(args.rounds):
        ttft, rate, tokens = generate(args.new_tokens)
        if len(tokens) != args.new_tokens:
            raise RuntimeError(f"generated {len(tokens)} tokens, expected {args.new_tokens}")
        emit(system, batch=args.batch, round=r, ttft_s=ttft, decode_tokens_per_s=rate, first_row_tokens=tokens,
             weight_bytes=weights, versions=found, **extra)  # fmt: skip


def by_one_token(run, n, batch):
    """For a system that times only whole generations, RUN(n) -> (seconds, tokens): the first-token time is a
    one-token run of the same prompts (the prompt's pass and one step), the decode rate the N-token run less
    that."""
    ttft, _ = run(1)
    total, tokens = run(n)
    return ttft, (n - 1) * batch / (total - ttft) if n > 1 else None, tokens


def run(system, main):
    """Calls ``main()``; any failure becomes the peer's one error line (exit 0)."""
    try:
        main()
    except Exception as e:  # the caller records the reason as this peer's result
        msg = " ".join(f"{type(e).__name__}: {e}".split())[:500]
        emit(system, error=msg)
    sys.exit(0)
