"""An encoder-decoder (T5, BART, Marian, Whisper) -> two ONNX graphs under optimum's names.

``encoder_model.onnx`` runs once per request and also writes every decoder layer's cross-attention
keys/values, so no decode step recomputes them::

    input_ids, attention_mask [batch_size, encoder_sequence_length]   (Whisper: input_features
    [batch_size, mel_bins, frames])  ->  last_hidden_state [batch_size, encoder_sequence_length, d_model],
    present.{i}.encoder.key/.value [batch_size, heads, encoder_sequence_length, head_dim]

``model.onnx`` (the decoder) serves the first step (an empty past) and every later one::

    input_ids [batch_size, sequence_length]  encoder_attention_mask [batch_size, encoder_sequence_length]
    past_key_values.{i}.decoder.key/.value [batch_size, heads, past_sequence_length, head_dim]
    past_key_values.{i}.encoder.key/.value [batch_size, heads, encoder_sequence_length, head_dim]
    ->  logits [batch_size, sequence_length, vocab], present.{i}.decoder.key/.value

Both wrappers go through the model's own forward: the encoder's cross keys/values are what one decoder
step writes into an empty transformers ``EncoderDecoderCache`` (whatever the architecture projects them
with), and the decoder rebuilds that cache from the flat tensors, marked as already written so that
cross-attention reads it instead of projecting ``encoder_hidden_states`` (a zero placeholder of the
right shape: only its shape reaches the masks). Capture is torch.export through the dynamo exporter,
the legacy tracer the fallback; the export then proves the pair by generating against PyTorch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from modelport.capture import EXTERNAL_DATA_BYTES
from modelport.capture.decoder import _cache_keyword
from modelport.errors import CaptureError, first_line
from modelport.generation.layout import BATCH, ENCODER_SEQ, PAST, SEQ, Seq2SeqLayout

__all__ = ["seq2seq_layout_of", "STRATEGIES", "export_encoder", "export_seq2seq_decoder", "ENCODER_FILE"]

STRATEGIES = ("dynamo", "trace")
ENCODER_FILE = "encoder_model.onnx"


def seq2seq_layout_of(model: Any) -> Seq2SeqLayout:
    """The two graphs' geometry, read off a transformers encoder-decoder's config."""
    config = model.config
    layers = _first(config, "decoder_layers", "num_decoder_layers", "num_layers")
    heads = _first(config, "decoder_attention_heads", "num_heads")
    hidden = _first(config, "d_model", "hidden_size")
    if not (layers and heads and hidden) or not getattr(config, "is_encoder_decoder", False):
        raise CaptureError(
            f"{type(model).__name__} is not an encoder-decoder with a standard cache (no decoder layer count, "
            "head count or width in its config)",
            "text2text-generation exports T5, BART, Marian and Whisper ...ForConditionalGeneration folders",
        )
    audio = getattr(model, "main_input_name", "input_ids") == "input_features"
    source = _first(config, "max_source_positions", "max_position_embeddings", "n_positions") or 512
    target = _first(config, "max_target_positions", "max_position_embeddings", "n_positions") or 512
    return Seq2SeqLayout(
        layers=int(layers),
        kv_heads=int(heads),
        head_dim=int(_first(config, "d_kv") or hidden // heads),
        vocab_size=int(config.vocab_size),
        max_context=int(target),
        sliding_window=None,
        position_ids=False,
        kv_dtype=str(next(model.parameters()).dtype).removeprefix("torch."),
        encoder_input="input_features" if audio else "input_ids",
        encoder_mask=not audio,
        max_source=int(source),
        mel_bins=int(getattr(config, "num_mel_bins", 0) or 0) if audio else 0,
        frames=2 * int(source) if audio else 0,  # Whisper's two convolutions halve the frames
        model_dim=int(hidden),
    )


def _first(config: Any, *names: str) -> int | None:
    for name in names:
        value = getattr(config, name, None)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def _empty_cache() -> Any:
    from transformers import DynamicCache, EncoderDecoderCache

    return EncoderDecoderCache(DynamicCache(), DynamicCache())


def _present(out: Any) -> Any:
    return out["cache"] if "cache" in out else out["past_key_values"]


def encoder_module(model: Any, layout: Seq2SeqLayout) -> Any:
    """``forward(input_ids, attention_mask)`` or ``forward(input_features)`` -> (last_hidden_state, cross
    keys/values of every layer)."""
    import torch

    keyword = _cache_keyword(model)
    start = int(model.config.decoder_start_token_id or 0)

    class _Encoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *inputs: Any) -> tuple[Any, ...]:
            named = dict(zip(layout.encoder_input_names, inputs, strict=True))
            hidden = self.model.get_encoder()(**named)[0]
            batch = hidden.shape[0]
            step = torch.full((batch, 1), start, dtype=torch.int64, device=hidden.device)
            cache = _empty_cache()
            out = self.model(
                encoder_outputs=(hidden,),
                attention_mask=named.get("attention_mask"),
                decoder_input_ids=step,
                use_cache=True,
                **{keyword: cache},
            )
            flat = []
            for layer in _present(out).cross_attention_cache.layers:
                flat += [layer.keys, layer.values]
            return (hidden, *flat)

    return _Encoder().eval()


def decoder_module(model: Any, layout: Seq2SeqLayout) -> Any:
    """``forward(input_ids, [encoder_attention_mask], *past)`` (past in ``layout.input_names`` order) ->
    (logits, the self-attention cache of every layer, one step longer)."""
    import torch
    from transformers import DynamicCache, EncoderDecoderCache

    keyword = _cache_keyword(model)

    class _Decoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: Any, *rest: Any) -> tuple[Any, ...]:
            mask, past = (rest[0], rest[1:]) if layout.encoder_mask else (None, rest)
            own, cross = DynamicCache(), DynamicCache()
            for i in range(layout.layers):
                own.update(past[4 * i], past[4 * i + 1], i)
                cross.update(past[4 * i + 2], past[4 * i + 3], i)
            cache = EncoderDecoderCache(DynamicCache(), DynamicCache())  # no shape test on symbolic sizes
            cache.self_attention_cache, cache.cross_attention_cache = own, cross
            cache.is_updated = dict.fromkeys(range(layout.layers), True)
            key = past[2]
            placeholder = torch.zeros(key.shape[0], key.shape[2], layout.model_dim, dtype=key.dtype)
            out = self.model(
                encoder_outputs=(placeholder,),
                attention_mask=mask,
                decoder_input_ids=input_ids,
                use_cache=True,
                **{keyword: cache},
            )
            flat = []
            for layer in _present(out).self_attention_cache.layers:
                flat += [layer.keys, layer.values]
            return (out["logits"], *flat)

    return _Decoder().eval()


def encoder_example(layout: Seq2SeqLayout, batch: int = 2, seq: int = 6) -> tuple[Any, ...]:
    """Text with right padding in the second row (so the mask is not specialized away); Whisper: noise."""
    import torch

    generator = torch.Generator().manual_seed(0)
    if layout.encoder_input == "input_features":
        return (torch.randn(batch, layout.mel_bins, layout.frames, generator=generator),)
    ids = torch.randint(0, layout.vocab_size, (batch, seq), generator=generator)
    mask = torch.ones(batch, seq, dtype=torch.int64)
    mask[1, -2:] = 0
    return ids, mask


def decoder_example(layout: Seq2SeqLayout, batch: int = 2, seq: int = 2, past: int = 3, source: int = 6) -> tuple:
    import torch

    generator = torch.Generator().manual_seed(0)
    source = layout.max_source if not layout.encoder_mask else source
    tensors: list[Any] = [torch.randint(0, layout.vocab_size, (batch, seq), generator=generator)]
    if layout.encoder_mask:
        mask = torch.ones(batch, source, dtype=torch.int64)
        mask[1, -2:] = 0
        tensors.append(mask)
    dtype = getattr(torch, layout.kv_dtype)
    for _ in range(layout.layers):
        for length in (past, past, source, source):
            shape = (batch, layout.kv_heads, length, layout.head_dim)
            tensors.append(torch.randn(shape, generator=generator).to(dtype))
    return tuple(tensors)


def _external(model: Any) -> bool:
    return sum(p.numel() * p.element_size() for p in model.parameters()) > EXTERNAL_DATA_BYTES * 0.75


def export_encoder(model: Any, layout: Seq2SeqLayout, path: Path, strategy: str, opset: int) -> None:
    """Write ``encoder_model.onnx`` with ``strategy``; ``CaptureError`` says why not."""
    text = layout.encoder_input == "input_ids"
    axes = {name: {0: BATCH, 1: ENCODER_SEQ} for name in layout.encoder_input_names} if text else {}
    if not text:
        axes = {"input_features": {0: BATCH}}
    outputs = {name: {0: BATCH, 2: ENCODER_SEQ} for name in layout.encoder_output_names[1:]}
    outputs["last_hidden_state"] = {0: BATCH, 1: ENCODER_SEQ}
    if not text:
        outputs = {name: {0: BATCH} for name in layout.encoder_output_names}
    _export(
        encoder_module(model, layout),
        encoder_example(layout),
        path,
        strategy,
        opset,
        layout.encoder_input_names,
        layout.encoder_output_names,
        axes,
        outputs,
        model,
        "encoder",
        layout.max_source,
    )


def export_seq2seq_decoder(model: Any, layout: Seq2SeqLayout, path: Path, strategy: str, opset: int) -> None:
    """Write the decoder graph (the bundle's ``model.onnx``) with ``strategy``; ``CaptureError`` says why not."""
    axes: dict[str, dict[int, str]] = {"input_ids": {0: BATCH, 1: SEQ}}
    if layout.encoder_mask:
        axes["encoder_attention_mask"] = {0: BATCH, 1: ENCODER_SEQ}
    for name in layout.input_names[1 + layout.encoder_mask :]:
        axes[name] = {0: BATCH, 2: PAST if ".decoder." in name else ENCODER_SEQ}
        if not layout.encoder_mask and ".encoder." in name:
            axes[name] = {0: BATCH}
    outputs = {name: {0: BATCH, 2: f"{PAST} + {SEQ}"} for name in layout.output_names[1:]}
    outputs["logits"] = {0: BATCH, 1: SEQ}
    _export(
        decoder_module(model, layout),
        decoder_example(layout),
        path,
        strategy,
        opset,
        layout.input_names,
        layout.output_names,
        axes,
        outputs,
        model,
        "decoder",
        layout.max_context,
    )


def _export(
    module: Any,
    example: tuple[Any, ...],
    path: Path,
    strategy: str,
    opset: int,
    names: list[str],
    output_names: list[str],
    axes: dict[str, dict[int, str]],
    output_axes: dict[str, dict[int, str]],
    model: Any,
    part: str,
    longest: int,
) -> None:
    import torch

    external = _external(model)
    try:
        if strategy == "dynamo":
            dims: dict[str, Any] = {}

            def dim(symbol: str) -> Any:
                top = 1024 if symbol == BATCH else 2 * longest if symbol != SEQ else longest
                if symbol not in dims:
                    dims[symbol] = torch.export.Dim(symbol, max=top)
                return dims[symbol]

            shapes = [{axis: dim(symbol) for axis, symbol in axes.get(name, {}).items()} or None for name in names]
            first, rest = (shapes[0], tuple(shapes[1:])) if part == "decoder" else (None, tuple(shapes))
            dynamic = {"input_ids": first, "rest": rest} if part == "decoder" else {"inputs": rest}
            program = torch.onnx.export(
                module,
                example,
                None,
                dynamo=True,
                dynamic_shapes=dynamic,
                input_names=names,
                output_names=output_names,
                opset_version=opset,
                external_data=external,
                verbose=False,
            )
            program.save(str(path), external_data=external)
        elif strategy == "trace":
            torch.onnx.export(
                module,
                example,
                str(path),
                dynamo=False,
                input_names=names,
                output_names=output_names,
                dynamic_axes={**axes, **output_axes},
                opset_version=opset,
            )
        else:
            raise CaptureError(f"unknown seq2seq strategy {strategy!r}", f"choose one of: {', '.join(STRATEGIES)}")
    except CaptureError:
        raise
    except Exception as exc:
        raise CaptureError(
            f"{strategy} could not capture the {part} of {type(model).__name__}: {first_line(exc)}",
            "this architecture's attention or cache is not exportable with this torch/transformers; report it",
        ) from exc
