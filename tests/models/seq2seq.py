"""Tiny encoder-decoders for the seq2seq generation tests: T5, BART, Marian and Whisper at 2 layers, width 32,
random weights drawn wide (``init_std``) so greedy choices are decisive rather than near-ties, saved as
folders with a byte-level BPE tokenizer trained on the repo's sentences (and Whisper's feature extractor,
a one-second window).
"""

from __future__ import annotations

from pathlib import Path

import torch

from tests.models.lm import SENTENCES

VOCAB = 320
PAD, EOS, UNK, BOS = 0, 1, 2, 3
ARCHITECTURES = ("t5", "bart", "marian", "whisper")
WINDOW_SECONDS = 1  # Whisper's feature extractor: 100 frames, so max_source_positions 50


def tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<pad>", "</s>", "<unk>", "<s>"]
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train([str(SENTENCES)], trainer)
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", EOS)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>", bos_token="<s>"
    )


def config(arch: str):
    import transformers as T

    seq2seq = dict(
        vocab_size=VOCAB,
        d_model=32,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        pad_token_id=PAD,
        eos_token_id=EOS,
        bos_token_id=BOS,
        init_std=0.3,
    )
    if arch == "t5":
        return T.T5Config(
            vocab_size=VOCAB, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4, pad_token_id=PAD,
            eos_token_id=EOS, decoder_start_token_id=PAD, initializer_factor=8.0,
        )  # fmt: skip
    if arch == "bart":
        return T.BartConfig(**seq2seq, max_position_embeddings=128, decoder_start_token_id=EOS, forced_eos_token_id=EOS)
    if arch == "marian":
        return T.MarianConfig(**seq2seq, max_position_embeddings=128, decoder_start_token_id=PAD, forced_eos_token_id=1)
    if arch == "whisper":
        return T.WhisperConfig(
            **seq2seq, num_mel_bins=80, max_source_positions=50 * WINDOW_SECONDS, max_target_positions=64,
            decoder_start_token_id=BOS, suppress_tokens=[4, 5], begin_suppress_tokens=[EOS],
        )  # fmt: skip
    raise ValueError(arch)


def tiny_seq2seq(arch: str, folder: Path, seed: int = 0) -> Path:
    """A saved folder of ``arch`` (random weights), its tokenizer, and for Whisper its feature extractor."""
    import transformers as T

    torch.manual_seed(seed)
    cfg = config(arch)
    cfg._attn_implementation = "eager"
    model_class = {
        "t5": T.T5ForConditionalGeneration,
        "bart": T.BartForConditionalGeneration,
        "marian": T.MarianMTModel,
        "whisper": T.WhisperForConditionalGeneration,
    }[arch]
    model = model_class(cfg).eval()
    model.save_pretrained(folder)
    tokenizer().save_pretrained(folder)
    if arch == "whisper":
        T.WhisperFeatureExtractor(feature_size=80, chunk_length=WINDOW_SECONDS).save_pretrained(folder)
    return folder
