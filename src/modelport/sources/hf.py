"""``hf:DIR``: a local transformers folder (config + weights). Offline: never reaches a hub.

The input specs are inferred from the config and forward's parameters: token ids within the
vocabulary, an attention mask (fed with padding), token types, decoder ids, pixel values, audio
samples, mel features. Caches are turned off so no cache object reaches the outputs. The class is
the one the folder was saved from (``config.architectures``), so a ``T5EncoderModel`` folder loads as
an encoder, or the one transformers has for the task asked for (``sources.hf_tasks``). A
sentence-transformers folder loads with its pooling instead (``sources.sentence_transformers``).
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from modelport.errors import SourceError, UsageError, first_line
from modelport.sources.hf_tasks import auto_class, check_folder, require_transformers
from modelport.sources.loaded import LoadedModel
from modelport.spec import Dim, InputSpec, Signature

__all__ = [
    "load",
    "load_folder",
    "infer_signature",
    "require_transformers",
    "load_tokenizer",
    "is_causal_lm",
]

MAX_SEQ = 128
MAX_BATCH = 8
SAMPLE_RATE = 16000  # the audio models' (Wav2Vec2, HuBERT, WavLM, Whisper) input rate
# model types whose position ids start after the padding id, so max_position_embeddings - pad - 1 fit
PADDED_POSITIONS = ("roberta", "xlm-roberta", "camembert", "longformer", "data2vec-text", "xmod")


def load(ref: str, task: str | None = None) -> LoadedModel:
    """The folder's model for ``task`` (default: the class it was saved from), with its inputs inferred.
    The ref a bundle records names a task other than the folder's own: ``hf:DIR?task=NAME``."""
    text = ref.removeprefix("hf:")
    if "?task=" in text:
        text, task = text.rsplit("?task=", 1)
    folder = Path(text).expanduser()
    check_folder(folder)
    model = load_folder(folder, task=task)
    own = task is None or task == "feature-extraction"
    return LoadedModel(
        model,
        "hf",
        f"hf:{folder.resolve()}" + ("" if own else f"?task={task}"),
        signature=infer_signature(model),
    )


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


def load_folder(folder: Path, cache: bool = False, task: str | None = None) -> Any:
    """The folder's model in its own class, or in the class transformers has for ``task`` (``feature-extraction``:
    its own class, one pass); ``cache=False`` turns the KV cache off (a fixed graph), ``True`` keeps it for
    generation."""
    transformers = require_transformers()
    try:
        # trust_remote_code=False: a folder's auto_map names Python files in it; never run them (and never ask)
        config = transformers.AutoConfig.from_pretrained(folder, local_files_only=True, trust_remote_code=False)
        if hasattr(config, "use_cache"):
            config.use_cache = cache
        # the class the folder was saved from (T5EncoderModel, BertForMaskedLM...), else the base AutoModel
        architecture = (getattr(config, "architectures", None) or [""])[0]
        model_class = getattr(transformers, architecture, None)
        if task not in (None, "feature-extraction"):
            model_class = auto_class(task, folder)
        elif not (isinstance(model_class, type) and issubclass(model_class, transformers.PreTrainedModel)):
            model_class = transformers.AutoModel  # a name that is no model class (a tokenizer, a typo)
        # eager attention: torch 2.13 cannot decompose the SDPA path of some architectures (T5) for ONNX,
        # and the eager one is the same computation
        model, info = model_class.from_pretrained(
            folder,
            config=config,
            local_files_only=True,
            attn_implementation="eager",
            trust_remote_code=False,
            output_loading_info=True,
        )
    except UsageError:
        raise
    except Exception as exc:
        raise SourceError(
            f"transformers could not load {folder}: {first_line(exc)}",
            "check that the folder was written by save_pretrained with a compatible transformers",
        ) from exc
    missing = sorted(info.get("missing_keys") or [])
    if missing and model_class.__name__ != architecture:
        # a head the folder has no weights for is drawn at random on every load: an export of it would
        # answer noise, and differently each time it is loaded
        raise SourceError(
            f"{folder} has no weights for {type(model).__name__}'s {', '.join(missing[:3])}"
            f"{'...' if len(missing) > 3 else ''} (it was saved as {architecture or 'another class'})",
            f"train and save the {task} head first, or export the task it was saved for (modelport tasks hf:{folder})",
        )
    return model


def infer_signature(model: Any) -> Signature:
    """The inputs forward takes, each with sizes and values the model accepts: token ids within the vocabulary
    (and decoder ids for an encoder-decoder), images of the configured size, audio samples, mel features.
    A model with a text and an image tower (CLIP, SigLIP) gets both, with separate batches, as its logits
    compare every text with every image."""
    config = model.config
    params = inspect.signature(model.forward).parameters
    inputs: list[InputSpec] = []
    dims = [Dim("batch", 1, MAX_BATCH)]
    if "input_ids" in params:
        inputs += _text_inputs(config, params, dims)
    if "pixel_values" in params:
        inputs += _image_inputs(config, "batch" if not inputs else "images", params, dims)
    if "input_values" in params:
        inputs += _waveform_inputs(config, dims)
    if "input_features" in params:
        inputs += _mel_inputs(config)
    if "decoder_input_ids" in params and getattr(config, "is_encoder_decoder", False) and inputs:
        decoder = _first_int(config, "max_target_positions", "max_position_embeddings", "n_positions") or MAX_SEQ
        dims.append(Dim("decoder_seq", 1, min(MAX_SEQ, decoder)))
        vocab = _first_int(config, "vocab_size")
        inputs.append(InputSpec("decoder_input_ids", ("batch", "decoder_seq"), "int64", 0, vocab))
    if not inputs:
        raise SourceError(
            f"cannot infer the inputs of {type(model).__name__} from its config",
            "declare them with --input and --dim",
        )
    used = {s for spec in inputs for s in spec.symbols}
    return Signature.build(inputs, [d for d in dims if d.name in used])


def _first_int(config: Any, *names: str) -> int | None:
    for name in names:
        value = getattr(config, name, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def _text_inputs(config: Any, params: Any, dims: list[Dim]) -> list[InputSpec]:
    text = getattr(config, "text_config", None) or config
    vocab = _first_int(text, "vocab_size")
    if not vocab:
        return []
    max_pos = _first_int(text, "max_position_embeddings", "n_positions") or MAX_SEQ
    if getattr(text, "model_type", "") in PADDED_POSITIONS:  # positions count from pad_token_id + 1
        max_pos -= int(getattr(text, "pad_token_id", None) or 0) + 1
    dims.append(Dim("seq", 1, min(MAX_SEQ, max_pos)))
    inputs = [InputSpec("input_ids", ("batch", "seq"), "int64", 0, vocab)]
    if "attention_mask" in params:
        inputs.append(InputSpec("attention_mask", ("batch", "seq"), "int64", 0, 2))
    type_vocab = _first_int(text, "type_vocab_size")
    if "token_type_ids" in params and type_vocab:
        inputs.append(InputSpec("token_type_ids", ("batch", "seq"), "int64", 0, type_vocab))
    return inputs


def _image_inputs(config: Any, batch: str, params: Any, dims: list[Dim]) -> list[InputSpec]:
    """``pixel_values`` of the configured size (an int, [height, width] or {"height", "width"}), normalized; a
    model configured with no size (a detector, a ResNet) takes any, from 64 to 224 pixels a side. A detector's
    ``pixel_mask`` is fed all ones (no padding): a mask of other shapes than a top-left rectangle is not one
    its image processor makes."""
    vision = getattr(config, "vision_config", None) or config
    size = getattr(vision, "image_size", None)
    height: int | str
    width: int | str
    if isinstance(size, dict):
        height, width = int(size.get("height", 224)), int(size.get("width", 224))
    elif isinstance(size, (list, tuple)):
        height, width = int(size[0]), int(size[-1])
    elif isinstance(size, int):
        height = width = size
    else:
        height, width = "height", "width"
        dims += [Dim("height", 64, 224, 224), Dim("width", 64, 224, 224)]
    channels = _first_int(vision, "num_channels") or 3
    if batch != "batch":
        dims.append(Dim(batch, 1, MAX_BATCH))
    # what an image processor hands over: pixels scaled to 0..1, then normalized (about -2.2..2.7)
    inputs = [InputSpec("pixel_values", (batch, channels, height, width), "float32", -2.5, 2.5)]
    if "pixel_mask" in params:
        inputs.append(InputSpec("pixel_mask", (batch, height, width), "int64", 1, 2))
    return inputs


def _waveform_inputs(config: Any, dims: list[Dim]) -> list[InputSpec]:
    """``input_values`` [batch, samples] of 16 kHz audio, from the conv stack's receptive field to 2 s. Normal
    data: the feature extractor hands over each clip at zero mean and unit variance (a constant clip, which it
    never hands over, divides the first GroupNorm by its epsilon)."""
    receptive, stride = 1, 1
    for kernel, step in zip(getattr(config, "conv_kernel", ()), getattr(config, "conv_stride", ()), strict=False):
        receptive += (kernel - 1) * stride
        stride *= step
    dims.append(Dim("samples", max(receptive, SAMPLE_RATE // 10), 2 * SAMPLE_RATE, SAMPLE_RATE))
    return [InputSpec("input_values", ("batch", "samples"), "float32")]


def _mel_inputs(config: Any) -> list[InputSpec]:
    """``input_features`` [batch, mel bins, frames]: Whisper's encoder takes exactly 2 x its positions of
    frames (30 s of audio, padded), its feature extractor's log-mel scaled to about -1..1."""
    mel = _first_int(config, "num_mel_bins") or 80
    frames = 2 * (_first_int(config, "max_source_positions") or 1500)
    return [InputSpec("input_features", ("batch", mel, frames), "float32", -1.0, 1.0)]


def is_causal_lm(model: Any) -> bool:
    """A decoder that generates text on its own: a ``...ForCausalLM`` (or LM-head) model that can generate."""
    name = type(model).__name__
    can = getattr(model, "can_generate", None)
    is_encoder_decoder = getattr(getattr(model, "config", None), "is_encoder_decoder", False)
    return bool(callable(can) and can() and not is_encoder_decoder and ("CausalLM" in name or "LMHead" in name))
