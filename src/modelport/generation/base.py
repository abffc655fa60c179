"""What both generation models share: a bundle's decoder graph on a runner, its step cache, its tokenizer.

``LanguageModel`` (a causal decoder) and ``Seq2SeqModel`` (an encoder and a decoder) are both used as
``with modelport.load(OUT) as model``, run their raw decoder graph by feed names (``model(...)``,
``infer``, ``inputs``, ``outputs``), describe their runner and cache the same way, and read the bundle's
tokenizer files (never code they name) only when text is asked for.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Self

import numpy as np

from modelport.bundle import Bundle
from modelport.errors import UsageError
from modelport.generation.cache import StateCache, StepCache, for_runner
from modelport.runtime.base import Runner

__all__ = ["GenerationModel", "pad_token_id"]


def pad_token_id(info: dict[str, Any]) -> int:
    """The pad id of a manifest's ``generation`` entry (0 where it records none)."""
    pad = info.get("pad_token_id")
    return int(pad) if pad is not None else 0


class GenerationModel:
    """A decoder runner plus its cache; subclasses set ``layout`` and may load more runners."""

    layout: Any  # the cache geometry (DecoderLayout / Seq2SeqLayout)
    #: what a bundle without a tokenizer cannot do, and the fix (the error when text is asked for)
    no_tokenizer = ("read text", "re-export with the tokenizer saved in the model folder (save_pretrained(DIR))")

    def __init__(self, bundle: Bundle, runner: Runner, prefill: Runner | None = None) -> None:
        self.bundle = bundle
        self.runner = runner
        self.prefill = prefill  # the runner of prompt passes, when not ``runner`` (``cache.PrefillCache``)
        info = bundle.manifest["generation"]
        self.eos_ids: list[int] = list(info.get("eos_token_ids") or [])
        self.pad_id: int = pad_token_id(info)
        self._tokenizer: Any = None
        self._cache: StepCache | None = None

    @property
    def name(self) -> str:
        return self.runner.name

    def load(self) -> Self:
        self.runner.load()
        if self.prefill is not None:
            self.prefill.load()
        self._cache = self.new_cache()
        return self

    def close(self) -> None:
        self.runner.close()
        if self.prefill is not None:
            self.prefill.close()
        self._cache = None

    def new_cache(self) -> StepCache:
        """A cache of its own on this model's runners (the serving scheduler keeps two)."""
        return for_runner(self.runner, self.layout, self.prefill)

    def __enter__(self) -> Self:
        return self.load()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __call__(self, feed: dict[str, Any] | None = None, /, **named: Any) -> dict[str, np.ndarray]:
        """The raw decoder graph by feed names (``input_ids=..., past_key_values.0.key=...``)."""
        return self.runner(feed, **named)

    def infer(self, feed: dict[str, Any], **options: Any) -> dict[str, np.ndarray]:
        return self.runner.infer(feed, **options)

    def inputs(self) -> Any:
        return self.runner.inputs()

    def outputs(self) -> Any:
        return self.runner.outputs()

    def describe(self) -> dict[str, Any]:
        info = self.runner.describe()
        info["kv_cache"] = type(self._cache).__name__ if self._cache is not None else None
        if self.prefill is not None:
            prefill = self.prefill.describe()
            info["prefill"] = {k: prefill[k] for k in ("backend", "inference_precision") if k in prefill}
        if isinstance(self._cache, StateCache) and self._cache.request is not None:
            info["kv_cache_held_as"] = self._cache.request.held_as()  # what OpenVINO stores, whatever was asked
        return info

    @property
    def tokenizer(self) -> Any:
        """The bundle's tokenizer (its own files, never code they name); ``UsageError`` if it has none."""
        if self._tokenizer is None:
            if not self.has_tokenizer:
                cannot, fix = self.no_tokenizer
                raise UsageError(f"{self.bundle.path} carries no tokenizer, so it cannot {cannot}", fix)
            from modelport.sources.hf import load_tokenizer

            self._tokenizer = load_tokenizer(Path(self.bundle.path))
        return self._tokenizer

    @property
    def has_tokenizer(self) -> bool:
        return bool(self.bundle.manifest["generation"].get("tokenizer"))

    def _loaded_cache(self) -> StepCache:
        if self._cache is None:
            raise RuntimeError(f"{type(self).__name__} is not loaded (used before load() or after close()); use `with`")
        return self._cache
