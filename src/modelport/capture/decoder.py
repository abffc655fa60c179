"""A causal language model with its KV cache -> one ONNX decoder graph under optimum's names.

The graph serves the prompt pass (an empty past, ``past_sequence_length`` 0) and every decode step
(one new token, the past of all before it)::

    input_ids [batch_size, sequence_length]  attention_mask [batch_size, total_sequence_length]
    position_ids [batch_size, sequence_length]  past_key_values.{i}.key/.value [batch_size, kv_heads,
    past_sequence_length, head_dim]  ->  logits [batch_size, sequence_length, vocab],
    present.{i}.key/.value [batch_size, kv_heads, past_sequence_length + sequence_length, head_dim]

``decoder_module`` puts the flat past tensors into a transformers ``DynamicCache`` of full layers
(no sliding trim: a sliding-window layer keeps every position and the model's own mask hides the ones
outside its window, so the cache layout is one for every architecture), runs the model and hands the
cache back flat. Capture is torch.export through the dynamo exporter; the legacy tracer is the
fallback. Neither is trusted: the export verifies the graph by generating tokens against PyTorch.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from modelport.capture import EXTERNAL_DATA_BYTES
from modelport.errors import CaptureError, first_line
from modelport.generation.layout import BATCH, PAST, SEQ, TOTAL, DecoderLayout

__all__ = ["decoder_module", "layout_of", "STRATEGIES", "export_decoder"]

#: capture strategies for a decoder, in the order they are tried
STRATEGIES = ("dynamo", "trace")


def layout_of(model: Any) -> DecoderLayout:
    """The cache geometry of a transformers causal LM; ``CaptureError`` for one without a standard cache."""
    config = model.config
    config = getattr(config, "text_config", None) or config
    layers = _first(config, "num_hidden_layers", "n_layer", "num_layers")
    heads = _first(config, "num_attention_heads", "n_head")
    hidden = _first(config, "hidden_size", "n_embd", "d_model")
    if not (layers and heads and hidden):
        raise CaptureError(
            f"{type(model).__name__}'s config has no layer count, head count or hidden size",
            "only decoders with a standard key/value cache export with --task text-generation",
        )
    kv_heads = _first(config, "num_key_value_heads", "n_kv_heads", "multi_query_group_num") or heads
    head_dim = _first(config, "head_dim") or hidden // heads
    max_context = _first(config, "max_position_embeddings", "n_positions", "max_seq_len", "seq_length") or 2048
    params = inspect.signature(model.forward).parameters
    return DecoderLayout(
        layers=int(layers),
        kv_heads=int(kv_heads),
        head_dim=int(head_dim),
        vocab_size=int(config.vocab_size),
        max_context=int(max_context),
        sliding_window=_first(config, "sliding_window"),
        position_ids="position_ids" in params,
        kv_dtype=str(next(model.parameters()).dtype).removeprefix("torch."),
    )


def _first(config: Any, *names: str) -> Any:
    for name in names:
        value = getattr(config, name, None)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def _cache_keyword(model: Any) -> str:
    """transformers 5.x calls the cache argument ``cache``; 4.x called it ``past_key_values``."""
    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def decoder_module(model: Any, layout: DecoderLayout) -> Any:
    """An ``nn.Module`` whose forward takes the graph's inputs as tensors and returns its outputs."""
    import torch
    from transformers import DynamicCache

    keyword = _cache_keyword(model)

    class _Decoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: Any, attention_mask: Any, *rest: Any) -> tuple[Any, ...]:
            position_ids, past = (rest[0], rest[1:]) if layout.position_ids else (None, rest)
            cache = DynamicCache()
            for i in range(layout.layers):
                cache.update(past[2 * i], past[2 * i + 1], i)
            kwargs = {"position_ids": position_ids} if layout.position_ids else {}
            out = self.model(
                input_ids=input_ids, attention_mask=attention_mask, use_cache=True, **{keyword: cache}, **kwargs
            )
            present = out["cache"] if "cache" in out else out["past_key_values"]
            flat = []
            for layer in present.layers:
                flat += [layer.keys, layer.values]
            return (out["logits"], *flat)

    return _Decoder().eval()


def example_inputs(layout: DecoderLayout, batch: int = 2, seq: int = 5, past: int = 3) -> tuple[Any, ...]:
    """An example with a past and left padding in the first row, so neither is specialized away."""
    import torch

    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(0, layout.vocab_size, (batch, seq), generator=generator)
    mask = torch.ones(batch, past + seq, dtype=torch.int64)
    mask[0, :2] = 0
    tensors = [ids, mask]
    if layout.position_ids:
        tensors.append((mask.cumsum(-1) - 1).clamp(min=0)[:, past:])
    dtype = getattr(torch, layout.kv_dtype)
    shape = (batch, layout.kv_heads, past, layout.head_dim)
    tensors += [torch.randn(shape, generator=generator).to(dtype) for _ in layout.past_names]
    return tuple(tensors)


def export_decoder(model: Any, layout: DecoderLayout, path: Path, strategy: str, opset: int) -> None:
    """Write the decoder graph of ``model`` to ``path`` with ``strategy``; ``CaptureError`` says why not."""
    import torch

    module = decoder_module(model, layout)
    example = example_inputs(layout)
    names = layout.input_names
    # protobuf's 2 GB limit counts the whole file: a model near it already needs its weights outside
    external = sum(p.numel() * p.element_size() for p in model.parameters()) > EXTERNAL_DATA_BYTES * 0.75
    try:
        if strategy == "dynamo":
            batch = torch.export.Dim(BATCH, max=1024)
            seq = torch.export.Dim(SEQ, max=layout.max_context)
            past = torch.export.Dim(PAST, max=layout.max_context)
            total = torch.export.Dim(TOTAL, max=2 * layout.max_context)
            shapes: dict[str, Any] = {"input_ids": {0: batch, 1: seq}, "attention_mask": {0: batch, 1: total}}
            if layout.position_ids:
                shapes["rest"] = ({0: batch, 1: seq},) + tuple({0: batch, 2: past} for _ in layout.past_names)
            else:
                shapes["rest"] = tuple({0: batch, 2: past} for _ in layout.past_names)
            program = torch.onnx.export(
                module,
                example,
                None,
                dynamo=True,
                dynamic_shapes=shapes,
                input_names=names,
                output_names=layout.output_names,
                opset_version=opset,
                external_data=external,
                verbose=False,
            )
            program.save(str(path), external_data=external)
        elif strategy == "trace":
            axes = {"input_ids": {0: BATCH, 1: SEQ}, "attention_mask": {0: BATCH, 1: TOTAL}}
            if layout.position_ids:
                axes["position_ids"] = {0: BATCH, 1: SEQ}
            axes.update({name: {0: BATCH, 2: PAST} for name in layout.past_names})
            axes.update({name: {0: BATCH, 2: f"{PAST} + {SEQ}"} for name in layout.output_names[1:]})
            axes["logits"] = {0: BATCH, 1: SEQ}
            torch.onnx.export(
                module,
                example,
                str(path),
                dynamo=False,
                input_names=names,
                output_names=layout.output_names,
                dynamic_axes=axes,
                opset_version=opset,
            )
        else:
            raise CaptureError(f"unknown decoder strategy {strategy!r}", f"choose one of: {', '.join(STRATEGIES)}")
    except CaptureError:
        raise
    except Exception as exc:
        raise CaptureError(
            f"{strategy} could not capture {type(model).__name__} with its cache: {first_line(exc)}",
            "this architecture's attention or cache is not exportable with this torch/transformers; "
            "export without the cache (--task feature-extraction) or report it",
        ) from exc
