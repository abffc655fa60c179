"""``hf:DIR``: a local transformers folder (config + weights). Offline: never reaches a hub.

The input specs are inferred from the config and forward's parameters: token ids within the
vocabulary, an attention mask (fed with padding), token types, pixel values. Caches are turned off
so no cache object reaches the outputs. The class is the one the folder was saved from
(``config.architectures``), so a ``T5EncoderModel`` folder loads as an encoder.
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import Any

from modelport.errors import MissingExtraError, SourceError, first_line
from modelport.sources.loaded import LoadedModel
from modelport.spec import Dim, InputSpec, Signature

__all__ = [
    "load",
    "load_folder",
    "infer_signature",
    "require_transformers",
    "load_tokenizer",
    "is_causal_lm",
    "is_causal_lm_folder",
]

WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
MAX_SEQ = 128
MAX_BATCH = 8


def require_transformers() -> Any:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import transformers
    except ImportError:
        raise MissingExtraError("hf: models", "hf") from None
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    return transformers


def load(ref: str) -> LoadedModel:
    folder = Path(ref.removeprefix("hf:")).expanduser()
    if not folder.is_dir():
        raise SourceError(
            f"transformers folder {str(folder)!r} does not exist",
            "pass hf:DIR with a folder written by model.save_pretrained(DIR)",
        )
    if not (folder / "config.json").is_file():
        raise SourceError(
            f"{folder} has no config.json, so it is not a transformers model folder",
            "pass a folder written by model.save_pretrained(DIR)",
        )
    if not any((folder / name).is_file() for name in WEIGHT_FILES):
        raise SourceError(
            f"{folder} has a config but no weights ({', '.join(WEIGHT_FILES[::2])})",
            "save the weights too: model.save_pretrained(DIR)",
        )
    model = load_folder(folder)
    return LoadedModel(model, "hf", f"hf:{folder.resolve()}", signature=infer_signature(model))


def load_tokenizer(folder: Path) -> Any:
    """The folder's tokenizer, from its own files only (never code it names)."""
    transformers = require_transformers()
    try:
        return transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True, trust_remote_code=False)
    except Exception as exc:  # transformers raises OSError, ValueError, KeyError... for a folder it cannot read
        raise SourceError(
            f"cannot load a tokenizer from {folder}: {first_line(exc)}",
            "save it beside the model (tokenizer.save_pretrained(DIR)), or pass the data as .npz feeds",
        ) from None


def load_folder(folder: Path, cache: bool = False) -> Any:
    """The folder's model in its own class; ``cache=False`` turns the KV cache off (a fixed graph), ``True``
    keeps it for generation."""
    transformers = require_transformers()
    try:
        # trust_remote_code=False: a folder's auto_map names Python files in it; never run them (and never ask)
        config = transformers.AutoConfig.from_pretrained(folder, local_files_only=True, trust_remote_code=False)
        if hasattr(config, "use_cache"):
            config.use_cache = cache
        # the class the folder was saved from (T5EncoderModel, BertForMaskedLM...), else the base AutoModel
        architecture = (getattr(config, "architectures", None) or [""])[0]
        model_class = getattr(transformers, architecture, None)
        if not (isinstance(model_class, type) and issubclass(model_class, transformers.PreTrainedModel)):
            model_class = transformers.AutoModel  # a name that is no model class (a tokenizer, a typo)
        # eager attention: torch 2.13 cannot decompose the SDPA path of some architectures (T5) for ONNX,
        # and the eager one is the same computation
        model = model_class.from_pretrained(
            folder, config=config, local_files_only=True, attn_implementation="eager", trust_remote_code=False
        )
    except Exception as exc:
        raise SourceError(
            f"transformers could not load {folder}: {first_line(exc)}",
            "check that the folder was written by save_pretrained with a compatible transformers",
        ) from exc
    return model


def infer_signature(model: Any) -> Signature:
    config = model.config
    params = inspect.signature(model.forward).parameters
    batch = Dim("batch", 1, MAX_BATCH)
    inputs: list[InputSpec] = []
    if "input_ids" in params and getattr(config, "vocab_size", None):
        max_pos = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None) or MAX_SEQ
        seq = Dim("seq", 1, min(MAX_SEQ, int(max_pos)))
        inputs.append(InputSpec("input_ids", ("batch", "seq"), "int64", 0, int(config.vocab_size)))
        if "attention_mask" in params:
            inputs.append(InputSpec("attention_mask", ("batch", "seq"), "int64", 0, 2))
        type_vocab = getattr(config, "type_vocab_size", 0)
        if "token_type_ids" in params and type_vocab:
            inputs.append(InputSpec("token_type_ids", ("batch", "seq"), "int64", 0, int(type_vocab)))
        return Signature.build(inputs, [batch, seq])
    if "pixel_values" in params:
        size = getattr(config, "image_size", 224)
        channels = getattr(config, "num_channels", 3)
        inputs.append(InputSpec("pixel_values", ("batch", channels, size, size), "float32"))
        return Signature.build(inputs, [batch])
    raise SourceError(
        f"cannot infer the inputs of {type(model).__name__} from its config",
        "declare them with --input and --dim",
    )


def is_causal_lm(model: Any) -> bool:
    """A decoder that generates text on its own: a ``...ForCausalLM`` (or LM-head) model that can generate."""
    name = type(model).__name__
    can = getattr(model, "can_generate", None)
    is_encoder_decoder = getattr(getattr(model, "config", None), "is_encoder_decoder", False)
    return bool(callable(can) and can() and not is_encoder_decoder and ("CausalLM" in name or "LMHead" in name))


def is_causal_lm_folder(folder: Path) -> bool:
    """Saved from a class transformers lists as a causal LM (``GPT2LMHeadModel``, ``LlamaForCausalLM``...)."""
    name = architecture(folder)
    if not name:
        return False
    require_transformers()
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    names = {n for v in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values() for n in ([v] if isinstance(v, str) else v)}
    return name in names or name.endswith("ForCausalLM")


def architecture(folder: Path) -> str:
    """The class name a folder was saved from (``config.json``'s ``architectures``), read as plain JSON."""
    import json

    try:
        names = json.loads((folder / "config.json").read_text()).get("architectures") or [""]
    except (OSError, ValueError, AttributeError):
        return ""
    return str(names[0]) if isinstance(names, list) and names else ""
