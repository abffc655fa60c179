"""Tiny transformers folders, one per (architecture, task) row of the coverage table: random weights from
small configs, saved with ``save_pretrained`` so they load the way a user's folder does.

``build(row, folder)`` writes the folder; ``ROWS`` lists every row as ``(architecture, task)``. The
table script (``benchmarks/coverage/tasks.py``) and ``tests/test_hf_tasks.py`` both read them, so every
row of the table is a test.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

TEXT = dict(
    vocab_size=120,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=64,
    max_position_embeddings=64,
)
VISION = dict(
    image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64
)
AUDIO = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=64,
    conv_dim=(16, 16, 16),
    conv_stride=(5, 4, 4),
    conv_kernel=(10, 4, 4),
    num_conv_pos_embeddings=16,
    num_conv_pos_embedding_groups=2,
    vocab_size=40,
    pad_token_id=0,
)

#: (architecture, task) -> (config class, config keywords, model class)
_ROWS: dict[tuple[str, str], tuple[str, dict[str, Any], str]] = {
    ("bert", "feature-extraction"): ("BertConfig", TEXT, "BertModel"),
    ("bert", "fill-mask"): ("BertConfig", TEXT, "BertForMaskedLM"),
    ("bert", "text-classification"): ("BertConfig", {**TEXT, "num_labels": 3}, "BertForSequenceClassification"),
    ("bert", "token-classification"): ("BertConfig", {**TEXT, "num_labels": 5}, "BertForTokenClassification"),
    ("bert", "question-answering"): ("BertConfig", TEXT, "BertForQuestionAnswering"),
    ("roberta", "text-classification"): (
        "RobertaConfig",
        {**TEXT, "max_position_embeddings": 66, "pad_token_id": 1},
        "RobertaForSequenceClassification",
    ),
    ("vit", "image-classification"): ("ViTConfig", {**VISION, "num_labels": 4}, "ViTForImageClassification"),
    ("vit", "feature-extraction"): ("ViTConfig", VISION, "ViTModel"),
    ("detr", "object-detection"): (
        "DetrConfig",
        dict(
            use_timm_backbone=False,
            use_pretrained_backbone=False,
            backbone_config={
                "model_type": "resnet",
                "embedding_size": 16,
                "hidden_sizes": [16, 32, 32, 32],
                "depths": [1, 1, 1, 1],
                "out_features": ["stage4"],
            },
            d_model=32,
            encoder_layers=1,
            decoder_layers=1,
            encoder_attention_heads=4,
            decoder_attention_heads=4,
            encoder_ffn_dim=64,
            decoder_ffn_dim=64,
            num_queries=10,
            num_labels=3,
        ),
        "DetrForObjectDetection",
    ),
    ("resnet", "image-classification"): (
        "ResNetConfig",
        dict(embedding_size=16, hidden_sizes=[16, 32], depths=[1, 1], num_labels=3),
        "ResNetForImageClassification",
    ),
    ("wav2vec2", "feature-extraction"): ("Wav2Vec2Config", AUDIO, "Wav2Vec2Model"),
    ("wav2vec2", "automatic-speech-recognition"): ("Wav2Vec2Config", AUDIO, "Wav2Vec2ForCTC"),
    ("wav2vec2", "audio-classification"): (
        "Wav2Vec2Config",
        {**AUDIO, "num_labels": 3, "classifier_proj_size": 16},
        "Wav2Vec2ForSequenceClassification",
    ),
    ("hubert", "feature-extraction"): ("HubertConfig", AUDIO, "HubertModel"),
    ("wavlm", "feature-extraction"): ("WavLMConfig", {**AUDIO, "num_buckets": 32}, "WavLMModel"),
    ("clip", "zero-shot-image-classification"): (
        "CLIPConfig",
        {
            "text_config": {**TEXT, "max_position_embeddings": 16, "projection_dim": 16},
            "vision_config": {**VISION, "projection_dim": 16},
            "projection_dim": 16,
        },
        "CLIPModel",
    ),
    ("siglip", "zero-shot-image-classification"): (
        "SiglipConfig",
        {"text_config": {**TEXT, "max_position_embeddings": 16}, "vision_config": VISION},
        "SiglipModel",
    ),
    ("t5", "feature-extraction"): (
        "T5Config",
        dict(vocab_size=120, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4, decoder_start_token_id=0),
        "T5Model",
    ),
    ("bart", "feature-extraction"): (
        "BartConfig",
        dict(
            vocab_size=120,
            d_model=32,
            encoder_layers=2,
            decoder_layers=2,
            encoder_attention_heads=4,
            decoder_attention_heads=4,
            encoder_ffn_dim=64,
            decoder_ffn_dim=64,
            max_position_embeddings=64,
        ),
        "BartModel",
    ),
    ("marian", "feature-extraction"): (
        "MarianConfig",
        dict(
            vocab_size=120,
            d_model=32,
            encoder_layers=2,
            decoder_layers=2,
            encoder_attention_heads=4,
            decoder_attention_heads=4,
            encoder_ffn_dim=64,
            decoder_ffn_dim=64,
            max_position_embeddings=64,
            pad_token_id=119,
            decoder_start_token_id=119,
        ),
        "MarianModel",
    ),
    ("whisper", "feature-extraction"): (
        "WhisperConfig",
        dict(
            vocab_size=120,
            d_model=32,
            encoder_layers=2,
            decoder_layers=2,
            encoder_attention_heads=4,
            decoder_attention_heads=4,
            encoder_ffn_dim=64,
            decoder_ffn_dim=64,
            num_mel_bins=80,
            max_source_positions=32,
            max_target_positions=32,
            decoder_start_token_id=1,
            pad_token_id=0,
            bos_token_id=1,
            eos_token_id=2,
        ),
        "WhisperModel",
    ),
}
SENTENCE_ROW = ("bert", "sentence-similarity")
ROWS = (*_ROWS, SENTENCE_ROW)


def build(row: tuple[str, str], folder: Path) -> Path:
    """Write the row's tiny model to ``folder`` (random weights, seed 0) and return it."""
    import torch
    import transformers

    if row == SENTENCE_ROW:
        return sentence_transformers_folder(folder)[0]
    config_class, keywords, model_class = _ROWS[row]
    torch.manual_seed(0)
    config = getattr(transformers, config_class)(**keywords)
    getattr(transformers, model_class)(config).eval().save_pretrained(folder)
    return folder


def model_class(row: tuple[str, str]) -> str:
    return "SentenceEmbedder" if row == SENTENCE_ROW else _ROWS[row][2]


def sentence_transformers_folder(folder: Path, pooling: str = "mean", dense: bool = False) -> tuple[Path, Any]:
    """A sentence-transformers folder over the tiny BERT (a word-level tokenizer of w0..w99): the transformer,
    ``pooling``, a Dense layer to 16 when ``dense``, Normalize; returns the folder and the SentenceTransformer."""
    import sentence_transformers
    import sentence_transformers.models  # the modules' home in every version
    import transformers
    from tokenizers import Tokenizer, models, pre_tokenizers

    base = build(("bert", "feature-extraction"), folder.with_name(folder.name + "-bert"))
    vocab = {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, **{f"w{i}": i + 4 for i in range(100)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]"
    ).save_pretrained(base)
    st = sentence_transformers.models
    modules = [st.Transformer(str(base)), st.Pooling(32, pooling_mode=pooling)]
    modules += [st.Dense(32, 16)] if dense else []
    model = sentence_transformers.SentenceTransformer(modules=[*modules, st.Normalize()], device="cpu")
    model.save(str(folder))
    return folder, model
