"""``export(..., task="text2text-generation" | "automatic-speech-recognition")``: an encoder-decoder (T5,
BART, Marian; Whisper) to a generation bundle of two graphs, proven by generating tokens against PyTorch.

``encoder_model.onnx`` (run once per request; it also writes every decoder layer's cross-attention
keys/values) and ``model.onnx`` (the decoder with its self-attention cache) are captured with each
strategy in turn (``capture.seq2seq``), read back, and kept only if the pair passes every check of
``verification.seq2seq`` (teacher-forced logits, ``generate``'s greedy tokens, batch invariance). The
bundle carries the tokenizer files, ``generation_config.json`` and, for speech, the feature extractor's
``preprocessor_config.json``; the manifest's ``generation`` entry says what the loop needs (the layout,
special ids, the decoder's first tokens, the token rules of the generation config) and holds the report.
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
from modelport.capture import Attempt
from modelport.capture.check import check_graph
from modelport.capture.exporter_log import recording
from modelport.capture.seq2seq import STRATEGIES, export_encoder, export_seq2seq_decoder, seq2seq_layout_of
from modelport.errors import SourceError, UsageError
from modelport.generation.layout import BATCH, ENCODER_SEQ, PAST, SEQ, Seq2SeqLayout
from modelport.generation.seq2seq import ENCODER_FILE, FEATURE_FILES, SEQ2SEQ_TASKS, Seq2SeqModel
from modelport.generation_export import GenerationExport, attempted, first_verified
from modelport.options import DEFAULT_OPSET, check_opset
from modelport.runtime.registry import create
from modelport.sources.hf import load_folder, load_tokenizer
from modelport.spec import Dim, InputSpec, Signature
from modelport.verification.generation import DEFAULT_LOGITS_TOLERANCE
from modelport.verification.generation_report import GenerationReport
from modelport.verification.seq2seq import NEW_TOKENS, check_seq2seq, default_inputs, read_inputs

__all__ = [
    "export_seq2seq",
    "seq2seq_signature",
    "encoder_signature",
    "decoder_prompt",
    "language_to_detect",
    "forcing_of",
]

MAX_BATCH = 64
#: generation-config settings the bundle's loop does not apply (it decodes greedily or samples, one beam)
_NOT_APPLIED = ("num_beams", "no_repeat_ngram_size", "length_penalty")


@dataclass
class _Job:
    model: Any
    layout: Seq2SeqLayout
    manifest: dict[str, Any]
    staging: Path
    opset: int
    inputs: list[Any] | None
    data_name: str | None
    new_tokens: int
    tolerance: float
    say: Callable[[str], None]


def export_seq2seq(
    model: Any,
    output: str | Path,
    *,
    task: str = "text2text-generation",
    tokenizer: Any = None,
    opset: int = DEFAULT_OPSET,
    exporter: str = "auto",
    data: str | Path | Sequence[Any] | None = None,
    new_tokens: int = NEW_TOKENS,
    logits_tolerance: float = DEFAULT_LOGITS_TOLERANCE,
    keep_failed: bool = False,
    progress: Callable[[str], None] | None = None,
) -> GenerationExport:
    """``model``: ``hf:DIR`` (or a folder path) of a ``...ForConditionalGeneration`` encoder-decoder, or the
    transformers model object (its ``tokenizer`` alongside; for Whisper a ``WhisperProcessor``, which holds the
    feature extractor too)."""
    say = progress or (lambda _msg: None)
    check_opset(opset)
    if task not in SEQ2SEQ_TASKS:
        raise UsageError(f"task {task!r} is not an encoder-decoder task", f"choose one of: {', '.join(SEQ2SEQ_TASKS)}")
    if exporter not in ("auto", *STRATEGIES):
        raise UsageError(
            f"exporter {exporter!r} does not apply to {task}", f"choose one of: auto, {', '.join(STRATEGIES)}"
        )
    target = bundles.output_path(output)
    bundles.check_replaceable(target)
    say("loading the model")
    model, tokenizer, features, source = _load(model, tokenizer)
    layout = seq2seq_layout_of(model)
    _check_task(model, layout, task, features)
    inputs, data_name = read_inputs(data, layout.encoder_input == "input_features")
    kind = "speech-to-text (Whisper)" if task == "automatic-speech-recognition" else "text-to-text"
    notes = [
        f"{task}: {kind}, an encoder graph ({ENCODER_FILE}, run once per request, cross-attention keys/values "
        f"included) and a decoder graph with a KV cache ({MODEL_FILE}: {layout.layers} layers, {layout.kv_heads} "
        f"heads of {layout.head_dim}); `modelport generate` runs them"
    ]
    ignored = _not_applied(model)
    if ignored:
        notes.append(
            f"the generation config's {', '.join(ignored)} are not applied: the bundle decodes greedily (or samples) "
            "with one beam, and is checked against transformers' generate under the same"
        )
    staging = bundles.staging_dir(target)
    try:
        _save_side_files(tokenizer, features, model, staging)
        manifest = _manifest(model, layout, task, tokenizer, features, source, opset, exporter)
        job = _Job(model, layout, manifest, staging, opset, inputs, data_name, new_tokens, logits_tolerance, say)
        strategies = STRATEGIES if exporter == "auto" else (exporter,)

        def kept(folder: Path) -> None:
            manifest["generation"]["encoder"]["outputs"] = onnx_graph.summary(folder / ENCODER_FILE)[0]

        attempt = functools.partial(_attempt, job)
        return first_verified(strategies, attempt, staging, target, manifest, notes, keep_failed, kept)
    finally:
        bundles.discard(staging)


def _attempt(job: _Job, strategy: str, folder: Path) -> tuple[Attempt, GenerationReport | None]:
    """Capture both graphs with ``strategy`` into ``folder``, read them back, and generate against PyTorch."""
    layout = job.layout

    def work(result: Attempt, path: Path) -> GenerationReport:
        job.say(f"exporting with {strategy} (encoder, then decoder with KV cache)")
        with recording() as rec:
            export_encoder(job.model, layout, folder / ENCODER_FILE, strategy, job.opset)
            export_seq2seq_decoder(job.model, layout, path, strategy, job.opset)
        result.warnings = rec.summary()
        check_graph(folder / ENCODER_FILE, encoder_signature(layout), job.opset, len(layout.encoder_output_names))
        check_graph(path, Signature.from_json(job.manifest["inputs"]), job.opset, len(layout.output_names))
        for file in job.staging.iterdir():  # the candidate reads the side files (tokenizer, features, config)
            if file.is_file() and not file.name.startswith("."):
                (folder / file.name).symlink_to(file)
        job.say("checking its tokens against transformers' generate")
        verify_start = time.perf_counter()
        candidate = Bundle(folder, job.manifest)
        decoder, encoder = create("ort:cpu", candidate), create("ort:cpu", folder / ENCODER_FILE)
        with Seq2SeqModel(candidate, decoder, encoder) as s2s:
            inputs = job.inputs or default_inputs(s2s)
            report = check_seq2seq(job.model, s2s, inputs, job.new_tokens, job.tolerance, job.data_name)
        result.verify_seconds = time.perf_counter() - verify_start
        return report

    return attempted(strategy, folder, work)


def _load(model: Any, tokenizer: Any) -> tuple[Any, Any, Any, dict[str, Any]]:
    """(model, tokenizer, feature extractor or None, the manifest's source entry)."""
    features = getattr(tokenizer, "feature_extractor", None)
    if features is not None:  # a processor: its tokenizer and its feature extractor
        tokenizer = getattr(tokenizer, "tokenizer", None)
    if isinstance(model, (str, Path)):
        folder = Path(str(model).removeprefix("hf:")).expanduser()
        if not (folder / "config.json").is_file():
            raise SourceError(
                f"{folder} is not a transformers model folder (no config.json)",
                "pass hf:DIR with a folder written by model.save_pretrained(DIR)",
            )
        loaded = load_folder(folder, cache=True)
        if not getattr(loaded.config, "is_encoder_decoder", False):
            raise UsageError(
                f"{folder} holds a {type(loaded).__name__}, not an encoder-decoder",
                "text2text-generation needs a T5/BART/Marian ...ForConditionalGeneration folder "
                "(automatic-speech-recognition: Whisper's); a ...ForCausalLM folder: --task text-generation",
            )
        if tokenizer is None and (folder / "tokenizer_config.json").is_file():
            tokenizer = load_tokenizer(folder)
        if features is None and (folder / FEATURE_FILES[0]).is_file():
            features = folder / FEATURE_FILES[0]
        digest = bundles.sha256(folder / "config.json")
        return loaded, tokenizer, features, {"model": f"hf:{folder.resolve()}", "kind": "hf", "sha256": digest}
    if not getattr(getattr(model, "config", None), "is_encoder_decoder", False) or not hasattr(model, "generate"):
        raise UsageError(
            f"a {type(model).__name__} is not a transformers encoder-decoder",
            "pass a T5/BART/Marian/Whisper ...ForConditionalGeneration model (or hf:DIR)",
        )
    model.eval()
    model.config.use_cache = True
    return model, tokenizer, features, {"model": None, "kind": "object", "sha256": None}


def _check_task(model: Any, layout: Seq2SeqLayout, task: str, features: Any) -> None:
    speech = layout.encoder_input == "input_features"
    if speech != (task == "automatic-speech-recognition"):
        raise UsageError(
            f"{type(model).__name__} reads {'audio' if speech else 'text'}, so it does not export as {task}",
            f"use --task {'automatic-speech-recognition' if speech else 'text2text-generation'}",
        )
    if not speech:
        return
    if features is None:
        raise UsageError(
            f"{type(model).__name__} needs its feature extractor and none was found",
            "save it beside the model (WhisperFeatureExtractor(...).save_pretrained(DIR), preprocessor_config.json)",
        )
    extractor = _extractor(features)
    frames = int(extractor.nb_max_frames)
    if frames != layout.frames or int(extractor.feature_size) != layout.mel_bins:
        raise UsageError(
            f"the feature extractor writes {extractor.feature_size} mel bins x {frames} frames; the model reads "
            f"{layout.mel_bins} x {layout.frames} (2 x max_source_positions)",
            "save the feature extractor made for this model (its chunk_length and feature_size)",
        )


def _extractor(features: Any) -> Any:
    if isinstance(features, Path):
        from transformers import WhisperFeatureExtractor

        return WhisperFeatureExtractor.from_pretrained(str(features.parent), local_files_only=True)
    return features


def _save_side_files(tokenizer: Any, features: Any, model: Any, staging: Path) -> None:
    if tokenizer is not None:
        tokenizer.save_pretrained(staging)
        for path in staging.iterdir():  # only plain files the bundle may list
            if path.is_dir() and not path.name.startswith("."):
                shutil.rmtree(path)
    if isinstance(features, Path):
        shutil.copyfile(features, staging / FEATURE_FILES[0])
    elif features is not None:
        features.save_pretrained(staging)
    config = getattr(model, "generation_config", None)
    if config is not None:
        config.save_pretrained(staging)


def decoder_prompt(model: Any) -> list[int]:
    """The decoder's first tokens (``language_to_detect`` says where a detected language goes)."""
    return _prompt_and_language(model)[0]


def language_to_detect(model: Any) -> dict[str, Any] | None:
    """For a multilingual Whisper whose config leaves the language open: where its token goes in the
    decoder's first tokens and the ids to choose among (``Seq2SeqModel`` picks one per input, as
    transformers' ``detect_language`` does: the likeliest of them after the start token)."""
    return _prompt_and_language(model)[1]


def _prompt_and_language(model: Any) -> tuple[list[int], dict[str, Any] | None]:
    """``decoder_start_token_id``; for Whisper also what its ``generate`` puts after it for a plain
    transcription: the ids of ``forced_decoder_ids`` (when no language/task is set), the language and task
    tokens when the generation config names them (a language it leaves open is detected per input), then
    ``<|notimestamps|>`` where the config has one."""
    config = model.generation_config
    start = config.decoder_start_token_id
    if start is None:
        start = model.config.decoder_start_token_id
    if start is None:
        raise UsageError(
            f"{type(model).__name__}'s config has no decoder_start_token_id", "set it in the folder's config.json"
        )
    prompt: list[int | None] = [int(start)]
    if getattr(model, "main_input_name", "") != "input_features":
        return [int(start)], None
    language, task = getattr(config, "language", None), getattr(config, "task", None)
    forced = getattr(config, "forced_decoder_ids", None) or getattr(model.config, "forced_decoder_ids", None)
    if language is None and task is None and forced:
        for position, token in sorted(forced):
            if position != len(prompt):
                break
            prompt.append(None if token is None else int(token))
    lang_ids = getattr(config, "lang_to_id", None) or {}
    detect = None
    if lang_ids and not any(t in lang_ids.values() for t in prompt):
        if language is None:  # transformers detects it: the likeliest language token after the start token
            if len(prompt) > 1 and prompt[1] is None:
                prompt = prompt[:1] + prompt[2:]
            detect = {"at": 1, "ids": sorted(int(i) for i in lang_ids.values())}
        else:
            code = language if language.startswith("<|") else f"<|{language}|>"
            if code not in lang_ids:
                raise UsageError(
                    f"language {language!r} is not in the generation config's lang_to_id",
                    f"choose one of: {', '.join(sorted(lang_ids))}",
                )
            prompt.insert(1, int(lang_ids[code]))
    prompt = [t for t in prompt if t is not None]
    task_ids = getattr(config, "task_to_id", None) or {}
    if task_ids and task is not None and not any(t in task_ids.values() for t in prompt):
        prompt.append(int(task_ids[task]))
    elif task_ids and language is not None and not any(t in task_ids.values() for t in prompt):
        prompt.append(int(task_ids["transcribe"]))  # a language named, no task: transcribe, as transformers does
    no_timestamps = getattr(config, "no_timestamps_token_id", None)
    if no_timestamps is not None and not getattr(config, "return_timestamps", False) and prompt[-1] != no_timestamps:
        prompt.append(int(no_timestamps))
    return [int(t) for t in prompt], detect


def forcing_of(model: Any) -> dict[str, Any]:
    """The token rules of the generation config, as ``generation.sampling.Forcing`` takes them."""
    config = model.generation_config

    def ids(value: Any) -> list[int]:
        if value is None:
            return []
        return [int(value)] if isinstance(value, int) else [int(v) for v in value]

    bos = getattr(config, "forced_bos_token_id", None)
    banned = [int(words[0]) for words in (getattr(config, "bad_words_ids", None) or []) if len(words) == 1]
    eos = config.eos_token_id if config.eos_token_id is not None else model.config.eos_token_id
    # transformers counts min_length over the decoder's whole sequence, its first tokens included
    prompt = len(decoder_prompt(model)) + (language_to_detect(model) is not None)
    min_eos = max(int(getattr(config, "min_new_tokens", None) or 0), int(config.min_length or 0) - prompt)
    return {
        "suppress": sorted(set(ids(getattr(config, "suppress_tokens", None)) + banned)),
        "begin_suppress": ids(getattr(config, "begin_suppress_tokens", None)),
        "forced_bos": int(bos) if bos is not None else None,
        "forced_eos": ids(getattr(config, "forced_eos_token_id", None)),
        "eos": ids(eos) if min_eos > 0 else [],
        "min_eos_step": max(min_eos, 0),
    }


def _not_applied(model: Any) -> list[str]:
    config = model.generation_config
    defaults = {"num_beams": 1, "no_repeat_ngram_size": 0, "min_length": 0, "length_penalty": 1.0}
    found = []
    for name in _NOT_APPLIED:
        value = getattr(config, name, None)
        if value is not None and value != defaults.get(name):
            found.append(f"{name}={value}")
    longer = [words for words in (getattr(config, "bad_words_ids", None) or []) if len(words) > 1]
    if longer:
        found.append(f"bad_words_ids of several tokens ({len(longer)})")
    return found


def _manifest(
    model: Any,
    layout: Seq2SeqLayout,
    task: str,
    tokenizer: Any,
    features: Any,
    source: dict[str, Any],
    opset: int,
    exporter: str,
) -> dict[str, Any]:
    config = model.generation_config
    eos = config.eos_token_id if config.eos_token_id is not None else model.config.eos_token_id
    eos_ids = [eos] if isinstance(eos, int) else [int(e) for e in (eos or [])]
    pad = config.pad_token_id if config.pad_token_id is not None else model.config.pad_token_id
    if pad is None and tokenizer is not None:
        pad = tokenizer.pad_token_id
    pad = pad[0] if isinstance(pad, list) else pad
    bos = getattr(config, "bos_token_id", None)
    return {
        "format": "modelport-bundle",
        "format_version": bundles.FORMAT_VERSION,
        "status": "verified",
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "source": source,
        "inputs": seq2seq_signature(layout).to_json(),
        "outputs": [],
        "opset": {"requested": opset, "actual": None},
        "capture": {"requested": exporter, "strategy": None, "attempts": []},
        "versions": bundles.package_versions(),
        "parity": None,
        "timings": {},
        "optimizations": [],
        "notes": [],
        "generation": {
            "task": task,
            "architecture": type(model).__name__,
            "layout": layout.to_json(),
            "bos_token_id": bos if isinstance(bos, int) else None,
            "eos_token_ids": eos_ids,
            "pad_token_id": int(pad if pad is not None else (eos_ids[0] if eos_ids else 0)),
            "tokenizer": tokenizer is not None,
            "chat_template": False,
            "feature_extractor": features is not None,
            "decoder_prompt": decoder_prompt(model),
            "detect_language": language_to_detect(model),
            "forcing": forcing_of(model),
            "encoder": {"file": ENCODER_FILE, "inputs": encoder_signature(layout).to_json(), "outputs": []},
        },
    }


def encoder_signature(layout: Seq2SeqLayout) -> Signature:
    """``encoder_model.onnx``'s inputs: token ids and mask, or Whisper's fixed-size log-mel features."""
    batch = Dim(BATCH, 1, MAX_BATCH, 1)
    if layout.encoder_input == "input_features":
        features = InputSpec("input_features", (BATCH, layout.mel_bins, layout.frames), "float32")
        return Signature.build([features], [batch])
    inputs = [
        InputSpec("input_ids", (BATCH, ENCODER_SEQ), "int64", 0, layout.vocab_size),
        InputSpec("attention_mask", (BATCH, ENCODER_SEQ), "int64", 0, 2),
    ]
    return Signature.build(inputs, [batch, Dim(ENCODER_SEQ, 1, layout.max_source, 8)])


def seq2seq_signature(layout: Seq2SeqLayout) -> Signature:
    """The decoder graph's inputs (``past_sequence_length`` is 0 at the first step)."""
    top = layout.max_context
    inputs = [InputSpec("input_ids", (BATCH, SEQ), "int64", 0, layout.vocab_size)]
    source: int | str = ENCODER_SEQ if layout.encoder_mask else layout.max_source
    if layout.encoder_mask:
        inputs.append(InputSpec("encoder_attention_mask", (BATCH, ENCODER_SEQ), "int64", 0, 2))
    for name in layout.input_names[len(inputs) :]:
        length = PAST if ".decoder." in name else source
        inputs.append(InputSpec(name, (BATCH, layout.kv_heads, length, layout.head_dim), layout.kv_dtype))
    dims = [Dim(BATCH, 1, MAX_BATCH, 1), Dim(SEQ, 1, top, 1), Dim(PAST, 0, top, 1)]
    if layout.encoder_mask:
        dims.append(Dim(ENCODER_SEQ, 1, layout.max_source, 8))
    return Signature.build(inputs, dims)
