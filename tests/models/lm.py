"""Tiny causal language models for the generation tests: every named architecture at 2 layers, hidden 64.

Random weights give near-ties that make greedy comparisons flaky, so each model is trained for a few
seconds on the repo's own sentences (``benchmarks/data/sentences.txt``) with a byte-level BPE tokenizer
trained on the same text: its next-token choices are decisive, as a real model's are.
"""

from __future__ import annotations

from pathlib import Path

import torch

SENTENCES = Path(__file__).resolve().parents[2] / "benchmarks" / "data" / "sentences.txt"
VOCAB = 384
EOS, PAD = "<|endoftext|>", "<pad>"
COMMON = dict(
    num_hidden_layers=2,
    hidden_size=64,
    intermediate_size=128,
    num_attention_heads=4,
    num_key_value_heads=2,
    vocab_size=VOCAB,
    max_position_embeddings=256,
    bos_token_id=0,
    eos_token_id=0,
    pad_token_id=1,
)
ARCHITECTURES = ("gpt2", "llama", "qwen2", "qwen3", "mistral", "phi3", "gemma2", "gemma3")


def tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB, special_tokens=[EOS, PAD], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train([str(SENTENCES)], trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, bos_token=EOS, pad_token=PAD)
    fast.chat_template = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}assistant:"
    return fast


def config(arch: str):
    import transformers as T

    if arch == "gpt2":
        return T.GPT2Config(
            n_layer=2,
            n_embd=64,
            n_head=4,
            vocab_size=VOCAB,
            n_positions=256,
            bos_token_id=0,
            eos_token_id=0,
            pad_token_id=1,
        )
    extra = {
        "llama": dict(
            rope_scaling={
                "rope_type": "llama3",
                "factor": 8.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 64,
            }
        ),
        "qwen3": dict(head_dim=16),
        "mistral": dict(sliding_window=24),
        "gemma2": dict(head_dim=16, sliding_window=24),
        "gemma3": dict(head_dim=16, sliding_window=24),
    }.get(arch, {})
    name = {
        "llama": "LlamaConfig",
        "qwen2": "Qwen2Config",
        "qwen3": "Qwen3Config",
        "mistral": "MistralConfig",
        "phi3": "Phi3Config",
        "gemma2": "Gemma2Config",
        "gemma3": "Gemma3TextConfig",
    }[arch]
    return getattr(T, name)(**COMMON, **extra)


def model_class(arch: str):
    import transformers as T

    return {
        "gpt2": T.GPT2LMHeadModel,
        "llama": T.LlamaForCausalLM,
        "qwen2": T.Qwen2ForCausalLM,
        "qwen3": T.Qwen3ForCausalLM,
        "mistral": T.MistralForCausalLM,
        "phi3": T.Phi3ForCausalLM,
        "gemma2": T.Gemma2ForCausalLM,
        "gemma3": T.Gemma3ForCausalLM,
    }[arch]


def train(model, tok, steps: int = 150, seq: int = 48, batch: int = 16, seed: int = 0):
    """A few seconds of next-token training on the sentences, so greedy choices are decisive."""
    torch.manual_seed(seed)
    ids = []
    for line in SENTENCES.read_text().splitlines():
        ids += tok(line)["input_ids"] + [tok.eos_token_id]
    data = torch.tensor(ids)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(steps):
        starts = torch.randint(0, len(data) - seq - 1, (batch,))
        x = torch.stack([data[s : s + seq] for s in starts])
        loss = model(input_ids=x, labels=x).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    return float(loss.detach())


def tiny_lm(arch: str, folder: Path, steps: int = 150) -> Path:
    """A trained tiny ``arch`` causal LM saved with its tokenizer in ``folder`` (an hf:DIR)."""
    tok = tokenizer()
    torch.manual_seed(0)
    cfg = config(arch)
    cfg._attn_implementation = "eager"
    model = model_class(arch)(cfg)
    train(model, tok, steps)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def scheduled(lm, prompts, options, pause: float = 0.0, **limits):
    """Each prompt (token ids) with its own ``Decoding`` options through a started ``Scheduler(lm, **limits)``,
    submitted ``pause`` seconds apart: (each prompt's ``Generation``, in order; the scheduler, stopped)."""
    import threading
    import time

    from modelport.generation.sampling import Decoding
    from modelport.generation.scheduler import Scheduler

    results: dict[int, object] = {}
    finished = threading.Event()

    def hear(index):
        def on_update(update):
            if update.result is not None:
                results[index] = update.result
                if len(results) == len(prompts):
                    finished.set()

        return on_update

    scheduler = Scheduler(lm, **limits).start()
    try:
        for index, (prompt, opts) in enumerate(zip(prompts, options, strict=True)):
            scheduler.submit(prompt, Decoding(**opts), hear(index))
            time.sleep(pause)
        assert finished.wait(120)
    finally:
        scheduler.stop()
    return [results[i] for i in range(len(prompts))], scheduler
