"""``Seq2SeqModel``: an encoder-decoder bundle (T5, BART, Marian: text to text; Whisper: speech to text).

``with modelport.load(OUT) as model``: ``model.generate("translate this")`` or, for speech,
``model.generate(audio=samples_or_wav_path)`` returns a ``Generation`` (a list for a list of inputs).
The encoder graph (``encoder_model.onnx``) runs once per request and writes every decoder layer's
cross-attention keys/values; the decoder graph (``model.onnx``) then runs the same decode loop, cache
and sampling as a causal ``LanguageModel``, those keys/values held by the cache for the whole request.

The decoder starts from the bundle's ``decoder_prompt``, fixed at export from the model's generation
config: ``decoder_start_token_id``, and for Whisper the ids of its ``forced_decoder_ids`` / language and
task settings and ``<|notimestamps|>`` where the config has one: a plain transcription without
timestamps, the tokens transformers' Whisper ``generate`` starts from. A language the config leaves open
(a multilingual checkpoint) is detected per input as transformers does: one decoder step from the start
token, the likeliest language token. The config's token rules
(suppressed ids, forced first/last ids) are applied at every step as transformers applies them.
Several inputs run as one batch: texts right-padded under the encoder's mask, audio padded or cut to
the feature extractor's window; every row's decoder starts from the same prompt.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from modelport.bundle import Bundle
from modelport.errors import UsageError
from modelport.generation.audio import SAMPLE_RATE, waveform
from modelport.generation.base import GenerationModel
from modelport.generation.layout import Seq2SeqLayout
from modelport.generation.loop import Generation, TokenEvent, batch_feed, decode
from modelport.generation.model import GenerationStream
from modelport.generation.sampling import Decoding, Forcing
from modelport.runtime.base import Runner

__all__ = ["Seq2SeqModel", "is_seq2seq", "refuse_seq2seq", "SEQ2SEQ_TASKS", "ENCODER_FILE", "FEATURE_FILES"]

SEQ2SEQ_TASKS = ("text2text-generation", "automatic-speech-recognition")
ENCODER_FILE = "encoder_model.onnx"
FEATURE_FILES = ("preprocessor_config.json",)


def is_seq2seq(bundle: Bundle) -> bool:
    return (bundle.manifest.get("generation") or {}).get("task") in SEQ2SEQ_TASKS


def refuse_seq2seq(bundle: Bundle | None, doing: str) -> None:
    """``UsageError`` for a command that would see only the decoder graph of an encoder-decoder bundle."""
    if bundle is not None and is_seq2seq(bundle):
        raise UsageError(
            f"{bundle.path} is an encoder-decoder bundle (two graphs: {ENCODER_FILE} and model.onnx); {doing} does "
            "not handle it yet",
            "run it with `modelport generate` (or modelport.load(...).generate()) and check it with `modelport verify`",
        )


class Seq2SeqModel(GenerationModel):
    """Runners of the encoder and decoder graphs plus the loop; nothing loads until ``load()``/``with``."""

    no_tokenizer = (
        "read or write text",
        "pass token ids (generate([[1, 2, 3]])), or re-export with the tokenizer saved in the model folder "
        "(tokenizer.save_pretrained(DIR))",
    )

    def __init__(self, bundle: Bundle, runner: Runner, encoder: Runner) -> None:
        if not is_seq2seq(bundle):
            raise UsageError(
                f"{bundle.path} is not an encoder-decoder generation bundle",
                "export a T5/BART/Marian/Whisper folder with `modelport export hf:DIR --task text2text-generation` "
                "(Whisper: --task automatic-speech-recognition)",
            )
        super().__init__(bundle, runner)
        self.encoder = encoder
        info = bundle.manifest["generation"]
        self.task: str = info["task"]
        self.layout = Seq2SeqLayout.from_json(info["layout"])
        self.decoder_prompt: list[int] = list(info["decoder_prompt"])
        self.detect_language: dict[str, Any] | None = info.get("detect_language")
        self.forcing = Forcing(**{k: tuple(v) if isinstance(v, list) else v for k, v in info["forcing"].items()})
        self._features: Any = None

    @property
    def speech(self) -> bool:
        return self.layout.encoder_input == "input_features"

    def load(self) -> Seq2SeqModel:
        self.encoder.load()
        return super().load()

    def close(self) -> None:
        super().close()
        self.encoder.close()

    # -- inputs ----------------------------------------------------------------------------------------
    @property
    def feature_extractor(self) -> Any:
        """The bundle's ``WhisperFeatureExtractor`` (its ``preprocessor_config.json``: settings, no code)."""
        if self._features is None:
            from transformers import WhisperFeatureExtractor

            self._features = WhisperFeatureExtractor.from_pretrained(str(self.bundle.path), local_files_only=True)
        return self._features

    def encoder_feed(self, inputs: Sequence[Any]) -> dict[str, np.ndarray]:
        """The encoder graph's feed for a batch: texts or token-id lists (right-padded, with the mask), or
        audio (arrays / WAV paths through the feature extractor)."""
        if self.speech:
            waves = [waveform(a, i) for i, a in enumerate(inputs)]
            features = self.feature_extractor(waves, sampling_rate=SAMPLE_RATE, return_tensors="np")
            return {"input_features": np.asarray(features["input_features"], np.float32)}
        rows = [self._ids(item, index) for index, item in enumerate(inputs)]
        width = max(len(r) for r in rows)
        ids = np.full((len(rows), width), self.pad_id, np.int64)
        mask = np.zeros((len(rows), width), np.int64)
        for row, tokens in enumerate(rows):
            ids[row, : len(tokens)], mask[row, : len(tokens)] = tokens, 1
        return {"input_ids": ids, "attention_mask": mask}

    def _ids(self, item: Any, index: int) -> list[int]:
        if isinstance(item, str):
            ids = list(self.tokenizer(item)["input_ids"])
        else:
            ids = [int(t) for t in np.asarray(item).reshape(-1)]
            bad = [t for t in ids if not 0 <= t < self.layout.vocab_size]
            if bad:
                raise UsageError(
                    f"input {index} has token id {bad[0]}", f"token ids are 0 to {self.layout.vocab_size - 1}"
                )
        if not ids:
            raise UsageError(f"input {index} is empty", "give it some text")
        if len(ids) > self.layout.max_source:
            raise UsageError(
                f"input {index} is {len(ids)} tokens; the encoder reads at most {self.layout.max_source}",
                f"shorten it to at most {self.layout.max_source} tokens",
            )
        return ids

    def encode(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One encoder run: what every decoder step of this batch reads (cross keys/values, the mask)."""
        out = self.encoder.infer(feed)
        fixed = {name: out[name.replace("past_key_values.", "present.")] for name in self.layout.cross_names}
        if self.layout.encoder_mask:
            fixed["encoder_attention_mask"] = feed["attention_mask"]
        return fixed

    def prompts(self, fixed: dict[str, np.ndarray], rows: int) -> list[list[int]]:
        """Each row's first decoder tokens: the bundle's ``decoder_prompt``, with the language a multilingual
        Whisper left open detected per row as transformers does (one decoder step from the start token; the
        likeliest of the language ids)."""
        if not self.detect_language:
            return [list(self.decoder_prompt) for _ in range(rows)]
        cache = self._loaded_cache()
        ids = np.asarray(self.detect_language["ids"], np.int64)
        cache.start(rows)
        cache.hold(fixed)
        start = np.full((rows, 1), self.decoder_prompt[0], np.int64)
        logits = cache.step({"input_ids": start})[:, -1, :]
        chosen = ids[np.asarray(logits, np.float32)[:, ids].argmax(-1)]
        at = int(self.detect_language["at"])
        return [self.decoder_prompt[:at] + [int(lang)] + self.decoder_prompt[at:] for lang in chosen]

    def detokenize(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    # -- generation ------------------------------------------------------------------------------------
    def stream(self, inputs: Any = None, *, audio: Any = None, **options: Any) -> GenerationStream:
        """``TokenEvent``s as tokens are chosen; its ``results`` hold what ``generate`` returns, once exhausted."""
        return GenerationStream(self._run(inputs, audio, options))

    def generate(self, inputs: Any = None, *, audio: Any = None, **options: Any) -> Any:
        """One ``Generation`` per input (a list; one ``Generation`` for a single text, array or path).

        ``inputs``: texts or token-id lists (text-to-text); ``audio``: a 16 kHz mono float array or WAV path,
        or a list of them (speech). ``options`` as ``LanguageModel.generate``: ``max_new_tokens``,
        ``temperature``, ``top_k``, ``top_p``, ``repetition_penalty``, ``seed``, ``stop``, ``ignore_eos``."""
        stream = self.stream(inputs, audio=audio, **options)
        for _ in stream:
            pass
        assert stream.results is not None
        single = _single(audio if self.speech else inputs)
        return stream.results[0] if single else stream.results

    def _run(self, inputs: Any, audio: Any, options: dict[str, Any]) -> Generator[TokenEvent, None, list[Generation]]:
        cache = self._loaded_cache()
        listed = self._inputs(inputs, audio)
        stop = options.pop("stop", None) or ()
        decoding = Decoding(stop=(stop,) if isinstance(stop, str) else tuple(stop), **options)
        if decoding.stop and not self.has_tokenizer:
            raise UsageError("stop strings need the bundle's tokenizer, and it has none", "drop --stop")
        feed = self.encoder_feed(listed)
        fixed = self.encode(feed)
        prompts = self.prompts(fixed, len(listed))
        detok = self.detokenize if self.has_tokenizer else None
        results = yield from decode(
            cache, prompts, decoding, eos_ids=self.eos_ids, pad_id=self.pad_id, detokenize=detok,
            forcing=self.forcing or None, fixed=fixed,
        )  # fmt: skip
        lengths = feed["attention_mask"].sum(-1) if "attention_mask" in feed else [self.layout.max_source] * len(listed)
        for result, length in zip(results, lengths, strict=True):
            result.prompt_tokens = int(length)  # what the encoder read
        return results

    def _inputs(self, inputs: Any, audio: Any) -> list[Any]:
        given = audio if self.speech else inputs
        other = inputs if self.speech else audio
        if other is not None:
            raise UsageError(
                f"this bundle ({self.task}) reads {'audio' if self.speech else 'text'}, not "
                f"{'text' if self.speech else 'audio'}",
                "pass --audio FILE (generate(audio=...))" if self.speech else "pass --prompt TEXT (generate(TEXT))",
            )
        if given is None:
            raise UsageError(
                "no input given", "pass --audio FILE (generate(audio=...))" if self.speech else "pass --prompt TEXT"
            )
        if _single(given):
            return [given]
        items = list(given)
        if not items:
            raise UsageError("no input given", "pass at least one")
        return items

    def score(self, item: Any, continuation: Sequence[int]) -> list[np.ndarray]:
        """Teacher forcing on one input: the bundle's logits after the decoder prompt and after each
        continuation token fed one step at a time (``len(continuation)`` arrays of [vocab])."""
        cache = self._loaded_cache()
        fixed = self.encode(self.encoder_feed([item]))
        prompt = self.prompts(fixed, 1)[0]
        cache.start(1)
        cache.hold(fixed)
        out = [cache.step(batch_feed([prompt], self.pad_id, False))[0, -1]]
        for token in list(continuation)[:-1]:
            out.append(cache.step({"input_ids": np.array([[token]], np.int64)})[0, -1])
        return out


def _single(given: Any) -> bool:
    """One input, not a list of them: a text, a path, a 1-D array or a flat list of numbers."""
    if isinstance(given, (str, Path)):
        return True
    if isinstance(given, np.ndarray):
        return given.ndim == 1
    if isinstance(given, (list, tuple)) and given and all(isinstance(t, (int, float, np.number)) for t in given):
        return True
    return False
