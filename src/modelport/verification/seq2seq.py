"""Proof that an encoder-decoder bundle generates PyTorch's tokens: three checks against ``transformers``.

On each input (texts of several lengths, or audio clips shorter than, near and longer than the feature
extractor's window, which pads or cuts them as it does for PyTorch):

``teacher-forced``    the bundle (its encoder once, then its decoder one token a step) fed PyTorch's own
                      continuation: its logits at every step within ``logits_tolerance`` of PyTorch's
                      (one forward pass over the whole decoder sequence), relative to the step's logit
                      range, and the same argmax;
``greedy``            the bundle generating freely: the token ids of transformers' ``generate``
                      (greedy, ``num_beams=1``, the model's own token rules; end-of-sequence does not
                      stop either side, so every step is compared);
``batch-invariance``  all inputs as one padded batch: every row gets the tokens it got alone.

A near-tie (PyTorch's top-2 margin inside the difference measured at that step) is reported, not
failed, as for causal models (``verification.generation``); ``GenerationReport.raise_if_failed`` raises
``ParityError`` naming the check, the input, the step and the position.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from modelport.errors import UsageError
from modelport.generation.audio import SAMPLE_RATE, waveform
from modelport.generation.loop import decode
from modelport.generation.sampling import Decoding
from modelport.generation.seq2seq import Seq2SeqModel
from modelport.verification.generation import (
    DEFAULT_LOGITS_TOLERANCE,
    _parting,
    _Reference,
    _relative,
    _same_tokens,
    _teacher_forced,
    _token,
    reference_model,
)
from modelport.verification.generation_prompts import DEFAULT_TEXTS, read_texts
from modelport.verification.generation_report import Check, GenerationReport

__all__ = ["check_seq2seq", "verify_seq2seq", "default_inputs", "read_inputs", "NEW_TOKENS"]

NEW_TOKENS = 16
#: audio clip lengths, as fractions of the feature extractor's window (the last one is cut to it)
AUDIO_FRACTIONS = (0.3, 0.7, 1.4)
MAX_DATA_INPUTS = 8


def default_inputs(s2s: Seq2SeqModel, seed: int = 0) -> list[Any]:
    """Texts of several lengths (random ids without a tokenizer), or synthetic 16 kHz clips of several lengths."""
    rng = np.random.default_rng(seed)
    if s2s.speech:
        window = int(s2s.feature_extractor.n_samples)
        clips = []
        for fraction in AUDIO_FRACTIONS:
            t = np.arange(int(window * fraction)) / SAMPLE_RATE
            tone = 0.4 * np.sin(2 * np.pi * (220 + 900 * t) * t) + 0.05 * rng.standard_normal(t.size)
            clips.append(tone.astype(np.float32))
        return clips
    if s2s.has_tokenizer:
        return list(DEFAULT_TEXTS)
    top = max(2, min(33, s2s.layout.max_source))
    return [rng.integers(0, s2s.layout.vocab_size, n).tolist() for n in sorted({min(3, top), min(9, top), top})]


def read_inputs(data: Any, speech: bool) -> tuple[list[Any] | None, str | None]:
    """The user's inputs: texts (a text file, one per line, or a list) or audio (a folder of WAV files, or a
    list of arrays / paths)."""
    if data is None:
        return None, None
    if not speech:
        return read_texts(data)
    if isinstance(data, (str, Path)):
        folder = Path(data)
        files = sorted(folder.glob("*.wav")) if folder.is_dir() else []
        if not files:
            raise UsageError(f"--data {str(data)!r} is not a folder of .wav files", "pass a folder of 16 kHz WAV files")
        return [waveform(f) for f in files[:MAX_DATA_INPUTS]], folder.name
    items = [waveform(a, i) for i, a in enumerate(list(data)[:MAX_DATA_INPUTS])]
    if not items:
        raise UsageError("--data holds no audio", "pass at least one clip")
    return items, "audio given in Python"


def _torch_feed(feed: dict[str, np.ndarray]) -> dict[str, Any]:
    import torch

    return {name: torch.from_numpy(np.ascontiguousarray(array)) for name, array in feed.items()}


def pytorch_reference(
    model: Any, s2s: Seq2SeqModel, feed: dict[str, np.ndarray], new_tokens: int, prompt: list[int]
) -> _Reference:
    """transformers' greedy ``generate`` for exactly ``new_tokens`` (end-of-sequence does not stop it), and
    the logits of every step from one forward pass over the decoder prompt and those tokens."""
    import torch

    config = copy.deepcopy(model.generation_config)
    config.update(
        max_new_tokens=new_tokens, do_sample=False, num_beams=1, eos_token_id=[], pad_token_id=s2s.pad_id,
        no_repeat_ngram_size=0, repetition_penalty=1.0,
        bad_words_ids=[[t] for t in s2s.forcing.suppress if t not in (config.suppress_tokens or [])] or None,
    )  # fmt: skip
    config.max_length = None
    inputs = _torch_feed(feed)
    with torch.no_grad():
        out = model.generate(**inputs, generation_config=config)
        sequence = out[0].tolist()
        if not s2s.speech:  # transformers' Whisper returns only the new tokens; the others start with the prompt
            sequence = sequence[len(prompt) :]
        decoder = torch.tensor([prompt + sequence[:-1]], dtype=torch.int64)
        logits = model(**inputs, decoder_input_ids=decoder).logits[0, len(prompt) - 1 :]
    return _Reference(sequence, [row.float().numpy() for row in logits])


def _greedy(s2s: Seq2SeqModel, inputs: Sequence[Any], new_tokens: int) -> list[list[int]]:
    cache = s2s._loaded_cache()
    fixed = s2s.encode(s2s.encoder_feed(list(inputs)))
    prompts = s2s.prompts(fixed, len(inputs))
    decoding = Decoding(max_new_tokens=new_tokens, ignore_eos=True)
    # end-of-sequence is no stop here, so no minimum length holds it back (transformers' reference likewise)
    forcing = dataclasses.replace(s2s.forcing, min_eos_step=0)
    run = decode(cache, prompts, decoding, pad_id=s2s.pad_id, forcing=forcing or None, fixed=fixed)
    while True:
        try:
            next(run)
        except StopIteration as done:
            return [g.token_ids for g in done.value]


def _lengths(s2s: Seq2SeqModel, inputs: Sequence[Any]) -> list[int]:
    """Per input: its tokens (text) or its samples (audio), for the report."""
    if s2s.speech:
        return [int(waveform(a, i).size) for i, a in enumerate(inputs)]
    return [int(n) for n in s2s.encoder_feed(list(inputs))["attention_mask"].sum(-1)] if len(inputs) else []


def check_seq2seq(
    model: Any,
    s2s: Seq2SeqModel,
    inputs: Sequence[Any],
    new_tokens: int = NEW_TOKENS,
    logits_tolerance: float = DEFAULT_LOGITS_TOLERANCE,
    data: str | None = None,
) -> GenerationReport:
    """Every check on ``inputs`` (texts, token-id lists or audio, as ``Seq2SeqModel.generate`` takes them)."""
    start = time.perf_counter()
    lengths = [len(t) for t in (s2s.encoder_feed([i])["input_ids"][0] for i in inputs)] if not s2s.speech else None
    unit = "samples" if s2s.speech else "tokens"
    report = GenerationReport(lengths or _lengths(s2s, inputs), new_tokens, logits_tolerance, data=data, unit=unit)
    refs, solo = [], []
    for index, item in enumerate(inputs):
        feed = s2s.encoder_feed([item])
        prompt = s2s.prompts(s2s.encode(feed), 1)[0]  # a language left open: the one the bundle detects
        ref = pytorch_reference(model, s2s, feed, new_tokens, prompt)
        refs.append(ref)
        forced = s2s.score(item, ref.tokens)
        diffs = [_relative(a, b) for a, b in zip(forced, ref.logits, strict=True)]
        report.checks.append(_teacher_forced(index, prompt, ref, forced, diffs, logits_tolerance))
        ours = _greedy(s2s, [item], new_tokens)[0]
        solo.append(ours)
        report.checks.append(_same_tokens("greedy", index, prompt, ours, ref, diffs))
    if len(inputs) > 1:
        report.checks.append(
            _batch_invariance(s2s, inputs, _greedy(s2s, inputs, new_tokens), solo, refs, logits_tolerance)
        )
    report.seconds = time.perf_counter() - start
    return report


def _batch_invariance(
    s2s: Seq2SeqModel,
    inputs: Sequence[Any],
    batch: list[list[int]],
    solo: list[list[int]],
    refs: list[_Reference],
    tolerance: float,
) -> Check:
    how = "padded or cut to the feature extractor's window" if s2s.speech else "right-padded under the encoder's mask"
    for index, (together, alone) in enumerate(zip(batch, solo, strict=True)):
        if together == alone:
            continue
        step = _parting(together, alone)
        logits = refs[index].logits[step] if step < len(refs[index].logits) else None
        margin = float(np.diff(np.sort(logits)[-2:])[0]) if logits is not None else float("inf")
        if logits is not None and margin <= tolerance * float(logits.max() - logits.min()):
            continue  # a tie in PyTorch itself: either token is right
        return Check(
            "batch-invariance",
            index,
            False,
            f"in a batch of {len(inputs)} inputs ({how}) the row generated {_token(together, step)} where alone it "
            f"generated {_token(alone, step)}",
            step,
            len(s2s.decoder_prompt) + step,
            {"pytorch_top2_margin": margin},
        )
    return Check(
        "batch-invariance", None, True, f"a batch of {len(inputs)} inputs ({how}) gives every row its own tokens"
    )


def verify_seq2seq(
    bundle: Any,
    model: Any = None,
    *,
    backend: str | None = None,
    threads: int | None = None,
    data: Any = None,
    new_tokens: int = NEW_TOKENS,
    logits_tolerance: float | None = None,
    progress: Any = None,
) -> GenerationReport:
    """Every check of an encoder-decoder ``bundle`` against ``model`` (``hf:DIR``, a folder, a
    ``PreTrainedModel``) or the folder it records; ``ParityError`` on a failure."""
    from modelport.generation.api import load_seq2seq

    say = progress or (lambda _msg: None)
    model = reference_model(bundle, model, say)
    recorded = (bundle.manifest.get("parity") or {}).get("logits_tolerance", DEFAULT_LOGITS_TOLERANCE)
    tolerance = recorded if logits_tolerance is None else logits_tolerance
    say("checking its tokens against transformers' generate")
    with load_seq2seq(bundle, backend, threads=threads) as s2s:
        inputs, name = read_inputs(data, s2s.speech)
        report = check_seq2seq(model, s2s, inputs or default_inputs(s2s), new_tokens, tolerance, name)
    report.raise_if_failed()
    return report
