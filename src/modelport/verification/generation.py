"""Proof that a generation bundle generates PyTorch's tokens: five checks against ``transformers``.

On each prompt (several lengths, one near the declared maximum context and past the sliding window
where the model has one) PyTorch's greedy ``generate`` gives the reference tokens and the logits of
every step. Then:

``teacher-forced``     the bundle fed PyTorch's own continuation, one token a step: its logits at every
                       step within ``logits_tolerance`` of PyTorch's, relative to that step's logit range
                       (max - min), and the same argmax;
``greedy``             the bundle generating freely: the same token ids as ``generate``;
``prompt-vs-steps``    the last logits after one pass over the prompt equal those after feeding the
                       prompt token by token (its last 64 tokens, on a longer prompt; a cache that is
                       written or read wrong shows up here);
``batch-invariance``   all prompts in one left-padded batch: each row gets the tokens it got alone;
``long-context``       the greedy check on the longest prompt (reported with its length).

Where two token sequences part, the report gives the step and PyTorch's top-2 margin there: a margin
inside the numerical difference measured at that step is a near-tie (fp32 rounding may pick either
token; reported, not failed), anything else is a failure. ``GenerationReport.raise_if_failed`` raises
``ParityError`` naming the check, the prompt, the step and the position.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modelport.errors import UsageError
from modelport.generation.loop import decode
from modelport.generation.model import LanguageModel
from modelport.generation.sampling import Decoding
from modelport.verification.generation_prompts import build_prompts, read_texts
from modelport.verification.generation_report import Check, GenerationReport

__all__ = [
    "GenerationReport",
    "Check",
    "check_generation",
    "verify_generation",
    "pytorch_greedy",
    "DEFAULT_LOGITS_TOLERANCE",
]

#: max |logit difference| / (max - min logit) at a step. fp32 ONNX Runtime against PyTorch eager measured
#: 1e-7 to 3e-7 of the range on the tiny test models (GPT-2, LLaMA, Qwen2/3, Mistral, Phi-3, Gemma 2/3);
#: 1e-4 leaves ~300x margin and still fails a cache read one position off (differences of 1e-1 and more).
DEFAULT_LOGITS_TOLERANCE = 1e-4
NEW_TOKENS = 16
SINGLE_STEPS = 64  # the prompt's last tokens fed one step at a time in prompt-vs-steps


@dataclass
class _Reference:
    tokens: list[int]
    logits: list[np.ndarray]  # one [vocab] per step


def pytorch_greedy(model: Any, prompt: Sequence[int], new_tokens: int, pad_id: int) -> _Reference:
    """transformers' ``generate``, greedy, for exactly ``new_tokens`` (an end-of-sequence token does not stop
    it: every step is compared), with the logits of every step (before any processing)."""
    import torch
    from transformers import GenerationConfig

    config = GenerationConfig(
        max_new_tokens=new_tokens,
        do_sample=False,
        eos_token_id=[],
        pad_token_id=pad_id,
        return_dict_in_generate=True,
        output_logits=True,
    )
    ids = torch.tensor([list(prompt)], dtype=torch.int64)
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), generation_config=config)
    tokens = out.sequences[0, len(prompt) :].tolist()
    logits = [step[0].float().numpy() for step in out.logits]
    return _Reference(tokens, logits)


def check_generation(
    model: Any,
    lm: LanguageModel,
    prompts: Sequence[Sequence[int]],
    new_tokens: int = NEW_TOKENS,
    logits_tolerance: float = DEFAULT_LOGITS_TOLERANCE,
    data: str | None = None,
) -> GenerationReport:
    """Every check on ``prompts`` (token ids; the last is taken as the long-context one)."""
    start = time.perf_counter()
    report = GenerationReport([len(p) for p in prompts], new_tokens, logits_tolerance, data=data)
    refs = [pytorch_greedy(model, p, new_tokens, lm.pad_id) for p in prompts]
    solo = []
    for index, (prompt, ref) in enumerate(zip(prompts, refs, strict=True)):
        forced = lm.score(prompt, ref.tokens)
        diffs = [_relative(a, b) for a, b in zip(forced, ref.logits, strict=True)]
        report.checks.append(_teacher_forced(index, prompt, ref, forced, diffs, logits_tolerance))
        ours = _greedy(lm, [prompt], new_tokens)[0]
        solo.append(ours)
        name = "long-context" if index == len(prompts) - 1 and len(prompts) > 1 else "greedy"
        report.checks.append(_same_tokens(name, index, prompt, ours, ref, diffs))
        report.checks.append(_prompt_vs_steps(lm, index, prompt, logits_tolerance))
    batch = _greedy(lm, prompts, new_tokens)
    report.checks.append(_batch_invariance(prompts, batch, solo, refs, logits_tolerance))
    report.seconds = time.perf_counter() - start
    return report


def _greedy(lm: LanguageModel, prompts: Sequence[Sequence[int]], new_tokens: int) -> list[list[int]]:
    run = decode(lm._loaded_cache(), prompts, Decoding(max_new_tokens=new_tokens, ignore_eos=True), pad_id=lm.pad_id)
    while True:
        try:
            next(run)
        except StopIteration as done:
            return [g.token_ids for g in done.value]


def _relative(ours: np.ndarray, ref: np.ndarray) -> float:
    spread = float(ref.max() - ref.min()) or 1.0
    return float(np.abs(ours.astype(np.float64) - ref).max()) / spread


def _margin(logits: np.ndarray) -> float:
    top = np.sort(logits.astype(np.float64))[-2:]
    return float(top[1] - top[0])


def _spread(logits: np.ndarray) -> float:
    return float(logits.max() - logits.min())


def _parting(ours: list[int], theirs: list[int]) -> int:
    """The first step where two token sequences differ (the shorter one's length if one is a prefix)."""
    return next((i for i, (a, b) in enumerate(zip(ours, theirs, strict=False)) if a != b), min(len(ours), len(theirs)))


def _token(tokens: list[int], step: int) -> str:
    return str(tokens[step]) if step < len(tokens) else "nothing"


def _teacher_forced(
    index: int, prompt: Sequence[int], ref: _Reference, forced: list[np.ndarray], diffs: list[float], tolerance: float
) -> Check:
    figures = {"max_relative_diff": max(diffs, default=0.0), "steps": len(diffs)}
    for step, (ours, theirs, diff) in enumerate(zip(forced, ref.logits, diffs, strict=True)):
        where = (step, len(prompt) + step, figures)
        if diff > tolerance:
            return Check(
                "teacher-forced",
                index,
                False,
                f"logits differ by {diff:.3g} of their range (tolerance {tolerance:g})",
                *where,
            )
        mine, pytorch = int(ours.argmax()), int(theirs.argmax())
        if mine != pytorch and _margin(theirs) > 2 * diff * _spread(theirs):
            return Check(
                "teacher-forced",
                index,
                False,
                f"argmax {mine} where PyTorch's is {pytorch} (top-2 margin {_margin(theirs):.3g})",
                *where,
            )
    worst = figures["max_relative_diff"]
    return Check(
        "teacher-forced",
        index,
        True,
        f"{len(diffs)} steps, logits within {worst:.2g} of their range, argmax agrees",
        figures=figures,
    )


def _same_tokens(
    name: str, index: int, prompt: Sequence[int], ours: list[int], ref: _Reference, diffs: list[float]
) -> Check:
    figures: dict[str, Any] = {"prompt_tokens": len(prompt), "tokens": len(ref.tokens)}
    if ours == ref.tokens:
        return Check(name, index, True, f"{len(ours)} tokens equal to transformers' generate", figures=figures)
    step = _parting(ours, ref.tokens)
    where = (step, len(prompt) + step, figures)
    if step >= min(len(ours), len(ref.tokens)):
        return Check(name, index, False, f"{len(ours)} tokens where transformers generated {len(ref.tokens)}", *where)
    margin = _margin(ref.logits[step])
    measured = diffs[step] * _spread(ref.logits[step])
    figures.update({"step": step, "pytorch_top2_margin": margin, "logits_diff_at_step": measured})
    text = (
        f"token {ours[step]} where transformers chose {ref.tokens[step]}; PyTorch's top-2 margin there is {margin:.3g}"
    )
    if margin <= 2 * measured:
        return Check(
            name,
            index,
            True,
            f"near-tie: {text}, inside the measured difference {measured:.3g}; the {step} tokens before it are equal",
            *where,
        )
    return Check(name, index, False, text, *where)


def _prompt_vs_steps(lm: LanguageModel, index: int, prompt: Sequence[int], tolerance: float) -> Check:
    """One pass over the prompt against its last ``SINGLE_STEPS`` tokens fed one at a time after a pass over
    the rest (the whole prompt token by token when it is that short)."""
    if len(prompt) < 2:
        return Check("prompt-vs-steps", index, True, "a one-token prompt has no steps to compare")
    whole = lm.score(prompt, [0])[-1]
    split = max(1, len(prompt) - SINGLE_STEPS)
    stepped = lm.score(prompt[:split], list(prompt[split:]) + [0])[-1]
    diff = _relative(stepped, whole)
    how = f"after {len(prompt) - split} single steps" + (f" (after a pass over {split})" if split > 1 else "")
    detail = f"last logits after one pass and {how} differ by {diff:.2g} of their range"
    figures = {"max_relative_diff": diff, "single_steps": len(prompt) - split}
    if diff <= tolerance:
        return Check("prompt-vs-steps", index, True, detail, figures=figures)
    last = len(prompt) - 1
    return Check("prompt-vs-steps", index, False, f"{detail} (tolerance {tolerance:g})", last, last, figures)


def _batch_invariance(
    prompts: Sequence[Sequence[int]],
    batch: list[list[int]],
    solo: list[list[int]],
    refs: list[_Reference],
    tolerance: float,
) -> Check:
    lengths = f"lengths {min(len(p) for p in prompts)}-{max(len(p) for p in prompts)}"
    for index, (together, alone) in enumerate(zip(batch, solo, strict=True)):
        if together == alone:
            continue
        step = _parting(together, alone)
        logits = refs[index].logits[step] if step < len(refs[index].logits) else None
        margin = _margin(logits) if logits is not None else float("inf")
        if logits is not None and margin <= tolerance * _spread(logits):
            continue  # a tie in PyTorch itself: either token is right
        return Check(
            "batch-invariance",
            index,
            False,
            f"in a left-padded batch of {len(prompts)} prompts ({lengths}) "
            f"the row generated {_token(together, step)} where alone it generated {_token(alone, step)}",
            step,
            len(prompts[index]) + step,
            {"pytorch_top2_margin": margin},
        )
    return Check(
        "batch-invariance",
        None,
        True,
        f"a left-padded batch of {len(prompts)} prompts ({lengths}) gives every row its own tokens",
    )


def verify_generation(
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
    """Every generation check of ``bundle`` against ``model`` (``hf:DIR``, a folder, a ``PreTrainedModel``)
    or the folder it records; ``ParityError`` on a failure."""
    from modelport.generation.api import load_generator

    say = progress or (lambda _msg: None)
    model = reference_model(bundle, model, say)
    recorded = (bundle.manifest.get("parity") or {}).get("logits_tolerance", DEFAULT_LOGITS_TOLERANCE)
    tolerance = recorded if logits_tolerance is None else logits_tolerance
    texts, name = read_texts(data)
    say("checking its tokens against transformers' generate")
    with load_generator(bundle, backend, threads=threads) as lm:
        report = check_generation(model, lm, build_prompts(lm, texts, new_tokens), new_tokens, tolerance, name)
    report.raise_if_failed()
    return report


def reference_model(bundle: Any, model: Any, say: Any) -> Any:
    """The fp32 PyTorch model: ``model`` (``hf:DIR``, a folder, a ``PreTrainedModel``) or the folder the
    bundle records."""
    from modelport.sources.hf import load_folder

    if model is None:
        model = bundle.source
        if not model:
            raise UsageError(f"{bundle.path} does not record its source model", "pass it: --model hf:DIR")
    if isinstance(model, (str, Path)):
        say(f"loading {model} (fp32 PyTorch, the reference)")
        model = load_folder(Path(str(model).removeprefix("hf:")).expanduser(), cache=True)
    return model
