"""``LanguageModel``: a generation bundle on a runtime, with its tokenizer.

``with modelport.load(OUT) as lm``: ``lm.generate(prompts)`` returns one ``Generation`` per prompt,
``lm.stream(prompts)`` yields ``TokenEvent``s as tokens come, and ``lm(...)`` still runs the raw graph
by feed names. Prompts are texts (tokenized with the bundle's tokenizer) or token ids (a list of ints
per prompt); several prompts run as one left-padded batch.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from typing import Any

import numpy as np

from modelport.bundle import Bundle
from modelport.errors import UsageError
from modelport.generation.base import GenerationModel
from modelport.generation.layout import DecoderLayout
from modelport.generation.loop import Generation, TokenEvent, batch_feed, decode
from modelport.generation.sampling import Decoding
from modelport.runtime.base import Runner

__all__ = ["LanguageModel", "GenerationStream", "is_generation", "TOKENIZER_FILES"]

# what a bundle may carry of a tokenizer (written by save_pretrained; all plain names)
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
    "added_tokens.json",
    "chat_template.jinja",
    "chat_template.json",
)


def is_generation(bundle: Bundle) -> bool:
    return (bundle.manifest.get("generation") or {}).get("task") == "text-generation"


class LanguageModel(GenerationModel):
    """A runner of the decoder graph plus the loop around it; nothing loads until ``load()``/``with``."""

    no_tokenizer = (
        "read text prompts",
        "pass token ids (--input-ids 1,2,3 / generate([[1, 2, 3]])), or re-export with the tokenizer saved "
        "in the model folder (tokenizer.save_pretrained(DIR))",
    )

    def __init__(self, bundle: Bundle, runner: Runner, prefill: Runner | None = None) -> None:
        if not is_generation(bundle):
            raise UsageError(
                f"{bundle.path} is not a generation bundle (it was exported without a KV cache)",
                "export a causal language model with `modelport export hf:DIR --task text-generation -o OUT`",
            )
        super().__init__(bundle, runner, prefill)
        self.layout = DecoderLayout.from_json(bundle.manifest["generation"]["layout"])

    # -- text ----------------------------------------------------------------------------------------
    def encode(self, prompts: Sequence[str | Sequence[int]], chat: bool = False) -> list[list[int]]:
        """Token ids per prompt: texts through the tokenizer (its chat template with ``chat``), ids checked."""
        out = []
        for index, prompt in enumerate(prompts):
            if isinstance(prompt, str):
                out.append(self._encode_text(prompt, chat))
                continue
            ids = [int(t) for t in np.asarray(prompt).reshape(-1)] if not isinstance(prompt, list) else prompt
            bad = [t for t in ids if not isinstance(t, (int, np.integer)) or not 0 <= int(t) < self.layout.vocab_size]
            if not ids or bad:
                raise UsageError(
                    f"prompt {index} " + (f"has token id {bad[0]!r}" if bad else "is empty"),
                    f"token ids are integers from 0 to {self.layout.vocab_size - 1}; a prompt needs at least one",
                )
            out.append([int(t) for t in ids])
        return out

    def _encode_text(self, text: str, chat: bool) -> list[int]:
        if chat:
            return self.encode_chat([{"role": "user", "content": text}])
        ids = self.tokenizer(text)["input_ids"]
        if not ids:
            raise UsageError("a prompt is empty after tokenization", "give it some text")
        return list(ids)

    def encode_chat(self, messages: list[dict[str, str]]) -> list[int]:
        """Chat messages (``role``, ``content``) through the tokenizer's chat template, ready for the reply."""
        tok = self.tokenizer
        if not getattr(tok, "chat_template", None):
            raise UsageError("the bundle's tokenizer has no chat template", "send a plain prompt (no chat) instead")
        text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        ids = tok(text, add_special_tokens=False)["input_ids"]
        if not ids:
            raise UsageError("the chat is empty after tokenization", "give it some text")
        return list(ids)

    def detokenize(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    # -- generation ----------------------------------------------------------------------------------
    def stream(
        self, prompts: str | Sequence[int] | Sequence[str | Sequence[int]], *, chat: bool = False, **options: Any
    ) -> GenerationStream:
        """``TokenEvent``s (prompt index, token id, new text) as each token is chosen; once it is exhausted,
        its ``results`` hold what ``generate`` returns (a list of ``Generation``)."""
        return GenerationStream(self._run(prompts, chat, options))

    def generate(
        self, prompts: str | Sequence[int] | Sequence[str | Sequence[int]], *, chat: bool = False, **options: Any
    ) -> Any:
        """One ``Generation`` per prompt (a list; one ``Generation`` for a single text prompt).

        ``options``: ``max_new_tokens`` (32), ``temperature`` (0: greedy), ``top_k``, ``top_p``,
        ``repetition_penalty``, ``seed``, ``stop`` (strings), ``ignore_eos`` (always ``max_new_tokens``)."""
        stream = self.stream(prompts, chat=chat, **options)
        for _ in stream:
            pass
        assert stream.results is not None
        return stream.results[0] if isinstance(prompts, str) else stream.results

    def _run(self, prompts: Any, chat: bool, options: dict[str, Any]) -> Generator[TokenEvent, None, list[Generation]]:
        cache = self._loaded_cache()
        listed = _as_list(prompts)
        stop = options.pop("stop", None) or ()
        decoding = Decoding(stop=(stop,) if isinstance(stop, str) else tuple(stop), **options)
        ids = self.encode(listed, chat)
        if decoding.stop and not self.has_tokenizer:
            raise UsageError("stop strings need the bundle's tokenizer, and it has none", "drop --stop")
        detok = self.detokenize if self.has_tokenizer else None
        return decode(cache, ids, decoding, eos_ids=self.eos_ids, pad_id=self.pad_id, detokenize=detok)

    def logits(self, tokens: Sequence[int]) -> np.ndarray:
        """The logits at every position of ``tokens`` fed in one pass from an empty cache ([len, vocab]):
        position i is the model's guess at token i + 1."""
        cache = self._loaded_cache()
        cache.start(1)
        return cache.step(batch_feed([list(tokens)], self.pad_id, self.layout.position_ids))[0]

    def score(self, prompt: Sequence[int], continuation: Sequence[int]) -> list[np.ndarray]:
        """Teacher forcing: the logits the bundle gives after the prompt and after each continuation token
        fed one step at a time (``len(continuation)`` arrays of [vocab]; the last token is not fed)."""
        cache = self._loaded_cache()
        cache.start(1)
        feed = batch_feed([list(prompt)], self.pad_id, self.layout.position_ids)
        out = [cache.step(feed)[0, -1]]
        mask, position = feed["attention_mask"], len(prompt)
        for token in list(continuation)[:-1]:
            mask = np.concatenate([mask, np.ones((1, 1), np.int64)], axis=1)
            feed = {"input_ids": np.array([[token]], np.int64), "attention_mask": mask}
            if self.layout.position_ids:
                feed["position_ids"] = np.array([[position]], np.int64)
            position += 1
            out.append(cache.step(feed)[0, -1])
        return out


class GenerationStream:
    """An iterator of ``TokenEvent``s; ``results`` (one ``Generation`` per prompt) once it is exhausted."""

    def __init__(self, run: Generator[TokenEvent, None, list[Generation]]) -> None:
        self._run = run
        self.results: list[Generation] | None = None

    def __iter__(self) -> GenerationStream:
        return self

    def __next__(self) -> TokenEvent:
        try:
            return next(self._run)
        except StopIteration as done:
            self.results = done.value
            raise StopIteration from None


def _as_list(prompts: Any) -> list[Any]:
    if isinstance(prompts, str):
        return [prompts]
    if isinstance(prompts, np.ndarray):
        return [prompts] if prompts.ndim == 1 else list(prompts)
    items = list(prompts)
    if items and all(isinstance(t, (int, np.integer)) for t in items):
        return [items]  # one prompt of token ids
    if not items:
        raise UsageError("no prompts given", "pass a text, a list of texts, or token ids")
    return items
