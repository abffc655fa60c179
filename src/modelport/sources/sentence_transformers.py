"""A sentence-transformers folder (``SentenceTransformer.save``): the transformer with its pipeline inside the graph.

``modules.json`` lists the pipeline. Each module is matched by its class name only (the module path it
names is never imported): ``Transformer`` (the folder's model, its ``last_hidden_state`` as token
embeddings), ``Pooling`` (cls, mean, max, mean_sqrt_len_tokens, weightedmean, lasttoken, alone or
concatenated), ``Dense`` (weights from safetensors only; never a pickle) and ``Normalize``. Outputs
``token_embeddings`` and ``sentence_embedding``, the two that ``SentenceTransformer.encode`` can return.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from modelport.errors import SourceError, first_line
from modelport.sources.hf_tasks import SENTENCE_SIMILARITY, check_folder, is_sentence_transformers
from modelport.sources.loaded import LoadedModel

__all__ = ["SentenceEmbedder", "load_sentence_transformer", "read_pipeline"]

POOLING_MODES = ("cls", "mean", "max", "mean_sqrt_len_tokens", "weightedmean", "lasttoken")
ACTIVATIONS = {"Tanh": torch.nn.Tanh, "ReLU": torch.nn.ReLU, "GELU": torch.nn.GELU, "Identity": torch.nn.Identity,
               "Sigmoid": torch.nn.Sigmoid}  # fmt: skip


class SentenceEmbedder(torch.nn.Module):
    """The encoder's token embeddings, pooled over the attention mask, then each module of the pipeline."""

    def __init__(self, encoder: torch.nn.Module, modes: tuple[str, ...] = ("mean",), steps: Any = ()) -> None:
        super().__init__()
        self.encoder = encoder
        self.modes = modes
        self.steps = torch.nn.ModuleList(steps)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None
    ) -> dict[str, Any]:
        extra = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
        tokens = self.encoder(input_ids=input_ids, attention_mask=attention_mask, **extra).last_hidden_state
        pooled = torch.cat([pool(mode, tokens, attention_mask) for mode in self.modes], dim=-1)
        for step in self.steps:
            pooled = step(pooled)
        return {"token_embeddings": tokens, "sentence_embedding": pooled}


def pool(mode: str, tokens: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """sentence-transformers' pooling of ``tokens`` [batch, seq, hidden] over the kept positions of the mask."""
    mask = attention_mask.unsqueeze(-1).to(tokens.dtype)
    if mode == "cls":  # the first kept position (left padding moves it)
        first = attention_mask.to(torch.int32).argmax(dim=1)
        return tokens[torch.arange(tokens.shape[0]), first]
    if mode == "max":
        return tokens.masked_fill(mask == 0, float("-inf")).max(dim=1).values
    if mode in ("mean", "mean_sqrt_len_tokens"):
        count = mask.sum(dim=1).clamp(min=1e-9)
        return (tokens * mask).sum(dim=1) / (count if mode == "mean" else count.sqrt())
    if mode == "weightedmean":  # weights 1, 2, 3... counted from the first kept position
        weights = torch.arange(1, tokens.shape[1] + 1, dtype=tokens.dtype).view(1, -1, 1)
        weights = weights - attention_mask.to(torch.int32).argmax(dim=1).view(-1, 1, 1).to(tokens.dtype)
        weighted = mask * weights
        return (tokens * weighted).sum(dim=1) / weighted.sum(dim=1).clamp(min=1e-9)
    # lasttoken: the last kept position (a row with none: the first, as sentence-transformers does)
    seq = tokens.shape[1]
    values, indices = attention_mask.to(torch.int32).flip(1).max(1)
    last = torch.where(values == 0, torch.full_like(indices, seq - 1), indices)
    return (tokens * mask)[torch.arange(tokens.shape[0]), seq - last - 1]


class _Normalize(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.normalize(x, p=2, dim=1)


def read_pipeline(folder: Path) -> tuple[tuple[str, ...], list[torch.nn.Module]]:
    """The pooling modes and the steps after pooling (Dense, Normalize) that ``modules.json`` lists."""
    entries = _json(folder / "modules.json", folder)
    if not isinstance(entries, list):
        raise _bad(folder, "modules.json is not a list of modules")
    kinds = [(str(e.get("type", "")).rsplit(".", 1)[-1], str(e.get("path", ""))) for e in entries if _is_dict(e)]
    if not kinds or kinds[0][0] != "Transformer" or kinds[0][1] not in ("", "."):
        raise _bad(folder, "its first module is not the Transformer saved in the folder itself")
    modes: tuple[str, ...] = ()
    steps: list[torch.nn.Module] = []
    for kind, path in kinds[1:]:
        where = _inside(folder, path)
        if kind == "Pooling":
            modes = _pooling_modes(_json(where / "config.json", folder), folder)
        elif kind == "Dense":
            steps.append(_dense(where, folder))
        elif kind == "Normalize":
            steps.append(_Normalize())
        else:
            raise SourceError(
                f"{folder}: sentence-transformers module {kind!r} ({path}) cannot be exported by modelport",
                "export the transformer alone with --task feature-extraction and apply the rest yourself",
            )
    if not modes:
        raise _bad(folder, "modules.json has no Pooling module, so there is no sentence embedding")
    return modes, steps


def pipeline_folder(ref: str) -> Path | None:
    """The folder of an ``hf:`` ref that loads as a sentence-transformers pipeline: one with ``modules.json``
    and no other task asked for (``hf:DIR?task=feature-extraction`` is the transformer alone)."""
    text, _, task = ref.removeprefix("hf:").partition("?task=")
    folder = Path(text).expanduser()
    wanted = task == SENTENCE_SIMILARITY or (not task and is_sentence_transformers(folder))
    return folder if wanted else None


def load_sentence_transformer(folder: Path) -> LoadedModel:
    """The folder's transformer (``sources.hf.load_folder``) with the pooling and what follows it."""
    from modelport.sources.hf import infer_signature, load_folder

    check_folder(folder)
    modes, steps = read_pipeline(folder)
    encoder = load_folder(folder)
    signature = infer_signature(encoder)
    embedder = SentenceEmbedder(encoder, modes, steps).eval()
    return LoadedModel(embedder, "hf", f"hf:{folder.resolve()}", signature=signature)


def _pooling_modes(config: Any, folder: Path) -> tuple[str, ...]:
    if not isinstance(config, dict):
        raise _bad(folder, "its Pooling config is not a JSON object")
    if "pooling_mode" in config:  # sentence-transformers 5+: a name or a list of names
        named = config["pooling_mode"]
        modes = tuple(named) if isinstance(named, list) else (str(named),)
        modes = tuple("mean_sqrt_len_tokens" if m == "mean_sqrt_len" else m for m in modes)
    else:  # older: one flag per mode, concatenated in this order
        flags = {"cls": "pooling_mode_cls_token", "max": "pooling_mode_max_tokens", "mean": "pooling_mode_mean_tokens",
                 "mean_sqrt_len_tokens": "pooling_mode_mean_sqrt_len_tokens",
                 "weightedmean": "pooling_mode_weightedmean_tokens", "lasttoken": "pooling_mode_lasttoken"}  # fmt: skip
        modes = tuple(mode for mode, flag in flags.items() if config.get(flag))
    unknown = [m for m in modes if m not in POOLING_MODES]
    if unknown or not modes:
        raise _bad(folder, f"pooling mode {(unknown or ['none'])[0]!r} is not one of {', '.join(POOLING_MODES)}")
    return modes


def _dense(where: Path, folder: Path) -> torch.nn.Module:
    config = _json(where / "config.json", folder)
    weights = where / "model.safetensors"
    if not weights.is_file():
        raise SourceError(
            f"{where} has no model.safetensors (modelport never unpickles pytorch_model.bin)",
            "re-save the model with a sentence-transformers that writes safetensors (SentenceTransformer.save)",
        )
    activation = str(config.get("activation_function") or "Identity").rsplit(".", 1)[-1]
    if activation not in ACTIVATIONS or config.get("use_residual"):
        residual = " with a residual" if config.get("use_residual") else ""
        raise _bad(folder, f"its Dense module uses {activation!r}{residual}")
    from safetensors.torch import load_file

    state = load_file(str(weights))
    linear = torch.nn.Linear(int(config["in_features"]), int(config["out_features"]), bool(config.get("bias", True)))
    try:
        linear.load_state_dict({k.removeprefix("linear."): v for k, v in state.items()})
    except RuntimeError as exc:
        raise _bad(folder, f"its Dense weights do not fit its config: {first_line(exc)}") from None
    return torch.nn.Sequential(linear, ACTIVATIONS[activation]())


def _is_dict(value: Any) -> bool:
    return isinstance(value, dict)


def _inside(folder: Path, path: str) -> Path:
    """A module's folder, which must lie inside the model folder (a path in a file is never trusted)."""
    where = (folder / path).resolve()
    if not where.is_relative_to(folder.resolve()):
        raise _bad(folder, f"module path {path!r} points outside the folder")
    return where


def _json(path: Path, folder: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise _bad(folder, f"{path.relative_to(folder) if path.is_relative_to(folder) else path} is missing") from None
    except (OSError, ValueError) as exc:
        raise _bad(folder, f"{path.name} is not readable JSON: {first_line(exc)}") from None


def _bad(folder: Path, why: str) -> SourceError:
    return SourceError(
        f"{folder} is not a sentence-transformers folder modelport can read: {why}",
        "save it with SentenceTransformer.save(DIR), or export the transformer alone with --task feature-extraction",
    )
