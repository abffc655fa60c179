"""A language model that knows something, trained here: quality budgets need one, and no trained LLM can be
downloaded on this machine.

A LLaMA-style decoder (8 layers, hidden 512, 8 heads, 2 KV heads, ~31 M parameters) with a byte-level BPE
tokenizer of 8192 tokens, both trained on the Python standard library's own sources (code, docstrings and
comments: text that ships with every interpreter, so anyone can rebuild the same model offline). Every
tenth file, in sorted order, is held out; the script reports the held-out perplexity. The result is cached in
``build/models/stdlib-lm`` (an hf folder: ``export hf:build/models/stdlib-lm --task text-generation``)
with ``train.json`` (its config, steps, tokens seen, losses and held-out perplexity) and
``held-out.txt`` (held-out text for ``optimize --data``).

Training runs a fixed number of steps (``--steps``, 460 by default: about 20 minutes on a quiet 2-core
machine), not a fixed time, so the same seeds give the same model on any machine, however busy.

What it can tell: whether a compressed model still predicts the next token of real text the way its fp32
self does (top-1 agreement, perplexity ratio, KL), on a model whose distributions are peaked where text is
predictable and flat where it is not, as a real model's are. What it cannot: the quality of a 1 B model
on natural language: it is small, saw well under a million tokens, and its text is Python.

    .venv/bin/python benchmarks/generate/stdlib_lm.py [--steps 460] [--out build/models/stdlib-lm]
"""

from __future__ import annotations

import argparse
import json
import math
import sysconfig
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "build" / "models" / "stdlib-lm"
VOCAB = 8192
SEQ = 256
CONFIG = dict(
    vocab_size=VOCAB,
    hidden_size=512,
    intermediate_size=1408,
    num_hidden_layers=8,
    num_attention_heads=8,
    num_key_value_heads=2,
    max_position_embeddings=1024,
    rms_norm_eps=1e-5,
    tie_word_embeddings=False,
    bos_token_id=0,
    eos_token_id=0,
    pad_token_id=1,
)


def sources() -> tuple[list[Path], list[Path]]:
    """The standard library's top-level modules and packages (tests and idlelib aside): train, held out."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    skip = ("test", "idlelib", "site-packages", "lib2to3", "tkinter", "turtledemo", "ensurepip")
    files = sorted(
        p for p in stdlib.rglob("*.py")
        if not any(part in skip for part in p.relative_to(stdlib).parts) and p.stat().st_size < 400_000
    )  # fmt: skip
    return [f for i, f in enumerate(files) if i % 10], [f for i, f in enumerate(files) if not i % 10]


def read(files: list[Path]) -> list[str]:
    out = []
    for f in files:
        try:
            out.append(f.read_text(encoding="utf-8"))
        except UnicodeDecodeError:
            continue
    return out


def train_tokenizer(texts: list[str]):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB,
        special_tokens=["<|endoftext|>", "<pad>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", bos_token="<|endoftext|>",
                                   pad_token="<pad>")  # fmt: skip


def encode(tok, texts: list[str]) -> torch.Tensor:
    ids: list[int] = []
    for text in texts:
        ids += tok(text)["input_ids"] + [tok.eos_token_id]
    return torch.tensor(ids, dtype=torch.int64)


@torch.no_grad()
def perplexity(model, data: torch.Tensor, windows: int = 64) -> float:
    model.eval()
    starts = torch.linspace(0, len(data) - SEQ - 1, windows).long()
    losses = [float(model(input_ids=data[s : s + SEQ][None], labels=data[s : s + SEQ][None]).loss) for s in starts]
    model.train()
    return math.exp(sum(losses) / len(losses))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=460)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1.5e-3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    stamp = args.out / "train.json"
    wanted = {"config": CONFIG, "seq": SEQ, "steps": args.steps, "batch": args.batch, "lr": args.lr}
    if stamp.is_file() and {k: json.loads(stamp.read_text()).get(k) for k in wanted} == wanted:
        print(f"{args.out} is ready (delete it to train again)")
        return
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    train_files, held_files = sources()
    train_texts, held_texts = read(train_files), read(held_files)
    print(f"{len(train_texts)} files to train on, {len(held_texts)} held out")
    tok = train_tokenizer(train_texts)
    data, held = encode(tok, train_texts), encode(tok, held_texts)
    print(f"{len(data)} training tokens, {len(held)} held-out tokens")
    config = LlamaConfig(**CONFIG)
    model = LlamaForCausalLM(config)
    params = sum(p.numel() for p in model.parameters())
    print(f"{params / 1e6:.1f} M parameters")
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.95), weight_decay=0.1)
    start, losses = time.perf_counter(), []
    model.train()
    for step in range(1, args.steps + 1):
        lr = args.lr * min(1.0, step / 100) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (step - 1) / args.steps)))
        for group in opt.param_groups:
            group["lr"] = lr
        starts = torch.randint(0, len(data) - SEQ - 1, (args.batch,))
        x = torch.stack([data[s : s + SEQ] for s in starts])
        loss = model(input_ids=x, labels=x).loss
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(float(loss.detach()))
        if step % 50 == 0:
            elapsed = time.perf_counter() - start
            print(f"step {step}, {elapsed / 60:.1f} min, loss {sum(losses[-50:]) / 50:.3f}", flush=True)
    step = args.steps
    model.eval()
    held_ppl = perplexity(model, held)
    print(f"held-out perplexity {held_ppl:.1f} after {step} steps ({step * args.batch * SEQ} tokens)")
    args.out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(args.out)
    tok.save_pretrained(args.out)
    lines = [line for text in held_texts[:40] for line in text.splitlines() if line.strip()]
    (args.out / "held-out.txt").write_text("\n".join(lines[:3000]) + "\n")
    stamp.write_text(json.dumps({
        **wanted, "parameters": params, "minutes": round((time.perf_counter() - start) / 60, 1),
        "tokens_seen": step * args.batch * SEQ,
        "final_train_loss": sum(losses[-50:]) / max(1, len(losses[-50:])), "held_out_perplexity": held_ppl,
        "train_tokens": len(data), "held_out_tokens": len(held), "stdlib": sysconfig.get_paths()["stdlib"],
    }, indent=2))  # fmt: skip
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
