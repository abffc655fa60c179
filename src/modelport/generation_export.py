"""``export(..., task="text-generation")``: a causal language model to a generation bundle, proven by
generating tokens against PyTorch.

The decoder graph (``capture.decoder``: optimum's names, an empty past for the prompt pass) is captured
with each strategy in turn, its grouped-query attention made to read the cache without a copy per head
(``capture.grouped_attention``; the manifest counts the layers), read back, and kept only if it passes every check of
``verification.generation`` (teacher-forced logits, greedy tokens equal to transformers' ``generate``,
prompt pass vs steps, batch invariance, a long context). The bundle carries the tokenizer files and
``generation_config.json`` beside the graph; the manifest's ``generation`` entry says what the decode
loop needs (layers, KV heads, head dim, KV dtype, special ids, maximum context) and holds the report.
"""

from __future__ import annotations

import functools
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from modelport import bundle as bundles
from modelport import onnx_graph
from modelport.bundle import MODEL_FILE, Bundle
from modelport.capture import Attempt, Outcome
from modelport.capture.check import check_graph
from modelport.capture.decoder import STRATEGIES, export_decoder, layout_of
from modelport.capture.exporter_log import recording
from modelport.capture.grouped_attention import GroupedAttention
from modelport.capture.rewrite import rewrite_in_place
from modelport.capture.rms_norm import DivideRMSNorm
from modelport.errors import CaptureError, GraphCheckError, ParityError, SourceError, UsageError
from modelport.generation.layout import BATCH, PAST, SEQ, TOTAL, DecoderLayout
from modelport.generation.model import TOKENIZER_FILES, LanguageModel
from modelport.options import DEFAULT_OPSET, check_opset
from modelport.runtime.registry import create
from modelport.sources.hf import is_causal_lm, load_folder, load_tokenizer
from modelport.spec import Dim, InputSpec, Signature
from modelport.verification.generation import DEFAULT_LOGITS_TOLERANCE, NEW_TOKENS, check_generation
from modelport.verification.generation_prompts import build_prompts, read_texts
from modelport.verification.generation_report import GenerationReport

__all__ = ["export_generation", "GenerationExport", "decoder_signature", "first_verified", "attempted"]

MAX_BATCH = 64


@dataclass
class GenerationExport:
    """What ``export`` returns for a generation bundle (``parity`` is the generation report)."""

    bundle: Bundle
    parity: GenerationReport
    attempts: list[Attempt]
    notes: list[str]
    export_seconds: float
    verify_seconds: float


@dataclass
class _Job:
    """One model's export: what every capture attempt needs."""

    model: Any
    layout: DecoderLayout
    manifest: dict[str, Any]
    staging: Path
    opset: int
    texts: list[str] | None
    data_name: str | None
    new_tokens: int
    tolerance: float
    say: Callable[[str], None]


def export_generation(
    model: Any,
    output: str | Path,
    *,
    tokenizer: Any = None,
    opset: int = DEFAULT_OPSET,
    exporter: str = "auto",
    data: str | Path | Sequence[str] | None = None,
    new_tokens: int = NEW_TOKENS,
    logits_tolerance: float = DEFAULT_LOGITS_TOLERANCE,
    keep_failed: bool = False,
    progress: Callable[[str], None] | None = None,
) -> GenerationExport:
    """``model``: ``hf:DIR`` (or a folder path) of a causal LM, or a transformers ``PreTrainedModel`` object
    (its ``tokenizer`` passed alongside, if the bundle should read text)."""
    say = progress or (lambda _msg: None)
    check_opset(opset)
    if exporter not in ("auto", *STRATEGIES):
        raise UsageError(
            f"exporter {exporter!r} does not apply to text generation", f"choose one of: auto, {', '.join(STRATEGIES)}"
        )
    target = bundles.output_path(output)
    bundles.check_replaceable(target)
    say("loading the model")
    model, tokenizer, source = _load(model, tokenizer)
    layout = layout_of(model)
    texts, data_name = read_texts(data)
    notes = [
        f"text-generation: a decoder graph with a KV cache ({layout.layers} layers, {layout.kv_heads} KV "
        f"heads of {layout.head_dim}); `modelport generate` runs it"
    ]
    staging = bundles.staging_dir(target)
    try:
        _save_tokenizer(tokenizer, model, staging)
        manifest = _manifest(model, layout, tokenizer, source, opset, exporter)
        job = _Job(model, layout, manifest, staging, opset, texts, data_name, new_tokens, logits_tolerance, say)
        strategies = STRATEGIES if exporter == "auto" else (exporter,)
        attempt = functools.partial(_attempt, job)
        return first_verified(strategies, attempt, staging, target, manifest, notes, keep_failed)
    finally:
        bundles.discard(staging)


_OUTCOMES = (
    (CaptureError, Outcome.FAILED_CAPTURE),
    (GraphCheckError, Outcome.FAILED_GRAPH_CHECK),
    (ParityError, Outcome.FAILED_VERIFICATION),
)


def first_verified(
    strategies: Sequence[str],
    attempt: Callable[[str, Path], tuple[Attempt, GenerationReport | None]],
    staging: Path,
    target: Path,
    manifest: dict[str, Any],
    notes: list[str],
    keep_failed: bool,
    kept: Callable[[Path], None] | None = None,
) -> GenerationExport:
    """Run ``attempt(strategy, folder)`` for each strategy until one verifies, and commit its bundle: its graphs
    (not the side-file links) move into ``staging``, the manifest gets the attempts and timings. A failure is
    raised after committing the last attempt only under ``keep_failed``; ``kept(staging)`` completes the
    manifest from the kept graphs."""
    attempts: list[Attempt] = []
    report = None
    for index, strategy in enumerate(strategies):
        result, report = attempt(strategy, staging / f".attempt-{index}-{strategy}")
        attempts.append(result)
        if result.outcome == Outcome.EXPORTED:
            break
    chosen = attempts[-1] if attempts[-1].outcome == Outcome.EXPORTED else None
    keep = chosen or (attempts[-1] if keep_failed and attempts[-1].path and attempts[-1].path.exists() else None)
    if keep is not None and keep.path is not None:
        for file in keep.path.parent.iterdir():  # the graphs and their external data, not the side-file links
            if not file.is_symlink():
                file.replace(staging / file.name)
        manifest["outputs"], manifest["opset"]["actual"] = onnx_graph.summary(staging / MODEL_FILE)
        if kept is not None:
            kept(staging)
    for leftover in staging.glob(".attempt-*"):
        shutil.rmtree(leftover)
    export_s = sum(a.seconds - a.verify_seconds for a in attempts)
    verify_s = sum(a.verify_seconds for a in attempts)
    manifest["capture"].update(strategy=chosen.strategy if chosen else None, attempts=[a.to_json() for a in attempts])
    manifest.update(
        parity=report.to_json() if report else None,
        notes=notes,
        timings={"export_s": round(export_s, 3), "verify_s": round(verify_s, 3)},
    )
    if chosen is None:
        if keep is not None:
            manifest["status"] = "failed verification"
            bundles.commit(staging, target, manifest)
        raise _failure(attempts)
    bundle = bundles.commit(staging, target, manifest)
    assert report is not None
    return GenerationExport(bundle, report, attempts, notes, export_s, verify_s)


def attempted(
    strategy: str, folder: Path, work: Callable[[Attempt, Path], GenerationReport]
) -> tuple[Attempt, GenerationReport | None]:
    """One capture attempt: ``work(attempt, folder / model.onnx)`` captures, checks and generates, returning the
    report; a capture, graph or parity failure becomes the attempt's outcome and reason."""
    folder.mkdir()
    path = folder / MODEL_FILE
    result = Attempt(strategy, Outcome.EXPORTED, path=path)
    start = time.perf_counter()
    report = None
    try:
        report = work(result, path)
        report.raise_if_failed()
    except (CaptureError, GraphCheckError, ParityError) as exc:
        result.outcome = next(outcome for kind, outcome in _OUTCOMES if isinstance(exc, kind))
        result.reason = exc.one_line()
        result.error = exc
    result.seconds = time.perf_counter() - start
    return result, report


def _attempt(job: _Job, strategy: str, folder: Path) -> tuple[Attempt, GenerationReport | None]:
    """Capture with ``strategy`` into ``folder``, read the graph back, and generate against PyTorch."""

    def work(result: Attempt, path: Path) -> GenerationReport:
        job.say(f"exporting with {strategy} (decoder with KV cache)")
        with recording() as rec:
            export_decoder(job.model, job.layout, path, strategy, job.opset)
        result.warnings = rec.summary()
        grouped, norms = rewrite_in_place(path, GroupedAttention(), DivideRMSNorm())  # the graph checked below is kept
        job.manifest["generation"]["grouped_attention_layers"] = grouped.grouped
        job.manifest["generation"]["rms_norms_divided"] = norms.rewritten
        check_graph(path, Signature.from_json(job.manifest["inputs"]), job.opset, len(job.layout.output_names))
        for name in TOKENIZER_FILES + ("generation_config.json",):  # the attempt's bundle reads them
            if (job.staging / name).is_file():
                (folder / name).symlink_to(job.staging / name)
        job.say("checking its tokens against transformers' generate")
        verify_start = time.perf_counter()
        candidate = Bundle(folder, job.manifest)
        with LanguageModel(candidate, create("ort:cpu", candidate)) as lm:
            prompts = build_prompts(lm, job.texts, job.new_tokens)
            report = check_generation(job.model, lm, prompts, job.new_tokens, job.tolerance, job.data_name)
        result.verify_seconds = time.perf_counter() - verify_start
        return report

    return attempted(strategy, folder, work)


def _failure(attempts: list[Attempt]) -> Exception:
    for kind in (ParityError, GraphCheckError, CaptureError):
        for attempt in attempts:
            if isinstance(attempt.error, kind):
                attempt.error.message = f"{attempt.strategy}: {attempt.error.message}"
                attempt.error.attempts = attempts  # type: ignore[attr-defined]
                return attempt.error
    return CaptureError("no strategy captured the model", "report it")


def _load(model: Any, tokenizer: Any) -> tuple[Any, Any, dict[str, Any]]:
    """(model, tokenizer, the manifest's source entry)."""
    if isinstance(model, (str, Path)):
        folder = Path(str(model).removeprefix("hf:")).expanduser()
        if not (folder / "config.json").is_file():
            raise SourceError(
                f"{folder} is not a transformers model folder (no config.json)",
                "pass hf:DIR with a folder written by model.save_pretrained(DIR)",
            )
        loaded = load_folder(folder, cache=True)
        if not is_causal_lm(loaded):
            raise UsageError(
                f"{folder} holds a {type(loaded).__name__}, not a causal language model",
                "text-generation needs a ...ForCausalLM folder; use --task feature-extraction for a fixed graph",
            )
        if tokenizer is None and (folder / "tokenizer_config.json").is_file():
            tokenizer = load_tokenizer(folder)
        digest = bundles.sha256(folder / "config.json")
        return loaded, tokenizer, {"model": f"hf:{folder.resolve()}", "kind": "hf", "sha256": digest}
    if not is_causal_lm(model):
        raise UsageError(
            f"a {type(model).__name__} is not a transformers causal language model",
            "pass a ...ForCausalLM model (or hf:DIR) for text-generation",
        )
    model.eval()
    model.config.use_cache = True
    return model, tokenizer, {"model": None, "kind": "object", "sha256": None}


def _save_tokenizer(tokenizer: Any, model: Any, staging: Path) -> None:
    if tokenizer is not None:
        tokenizer.save_pretrained(staging)
        for path in staging.iterdir():  # only plain files the bundle may list
            if path.is_dir() and not path.name.startswith("."):
                shutil.rmtree(path)
    config = getattr(model, "generation_config", None)
    if config is not None:
        config.save_pretrained(staging)


def _manifest(
    model: Any, layout: DecoderLayout, tokenizer: Any, source: dict[str, Any], opset: int, exporter: str
) -> dict[str, Any]:
    config = getattr(model, "generation_config", None)
    eos = getattr(config, "eos_token_id", None)
    if eos is None:
        eos = getattr(model.config, "eos_token_id", None)
    eos_ids = [eos] if isinstance(eos, int) else [int(e) for e in (eos or [])]
    pad = getattr(config, "pad_token_id", None)
    if pad is None and tokenizer is not None:
        pad = tokenizer.pad_token_id
    if pad is None:
        pad = eos_ids[0] if eos_ids else 0
    bos = getattr(config, "bos_token_id", None)
    if isinstance(pad, list):
        pad = pad[0]
    return {
        "format": "modelport-bundle",
        "format_version": bundles.FORMAT_VERSION,
        "status": "verified",
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "source": source,
        "inputs": decoder_signature(layout).to_json(),
        "outputs": [],
        "opset": {"requested": opset, "actual": None},
        "capture": {"requested": exporter, "strategy": None, "attempts": []},
        "versions": bundles.package_versions(),
        "parity": None,
        "timings": {},
        "optimizations": [],
        "notes": [],
        "generation": {
            "task": "text-generation",
            "architecture": type(model).__name__,
            "layout": layout.to_json(),
            "bos_token_id": bos if isinstance(bos, int) else None,
            "eos_token_ids": eos_ids,
            "pad_token_id": int(pad),
            "tokenizer": tokenizer is not None,
            "chat_template": bool(getattr(tokenizer, "chat_template", None)),
        },
    }


def decoder_signature(layout: DecoderLayout) -> Signature:
    """The graph's inputs as a signature (``past_sequence_length`` is 0 at the prompt pass)."""
    top = layout.max_context
    inputs = [
        InputSpec("input_ids", (BATCH, SEQ), "int64", 0, layout.vocab_size),
        InputSpec("attention_mask", (BATCH, TOTAL), "int64", 0, 2),
    ]
    if layout.position_ids:
        inputs.append(InputSpec("position_ids", (BATCH, SEQ), "int64", 0, top))
    shape = (BATCH, layout.kv_heads, PAST, layout.head_dim)
    inputs += [InputSpec(name, shape, layout.kv_dtype) for name in layout.past_names]
    dims = [Dim(BATCH, 1, MAX_BATCH, 1), Dim(SEQ, 1, top, 1), Dim(PAST, 0, top, 1), Dim(TOTAL, 1, top, 2)]
    return Signature.build(inputs, dims)
