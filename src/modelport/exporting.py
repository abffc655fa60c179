"""``export``: the path from a PyTorch model to a checked bundle.

export: load the source, settle the signature, capture (strategies in order), read the graph back,
verify against PyTorch on feeds beyond the example, write the bundle atomically. A model that fails
verification leaves no bundle unless ``keep_failed``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from modelport import bundle as bundles
from modelport import onnx_graph
from modelport.bundle import MODEL_FILE, Bundle
from modelport.capture import DEFAULT_OPSET, Attempt, ExportJob
from modelport.capture.auto import EXPORTERS, CaptureOutcome, capture
from modelport.deadline import DEFAULT_VERIFY_TIMEOUT
from modelport.errors import SourceError, UsageError
from modelport.feeds import make_feed
from modelport.forward import plan_call, run_eager
from modelport.options import check_opset, check_timeout
from modelport.sources import LoadedModel
from modelport.sources.hf_tasks import folder_task, task_names
from modelport.sources.hf_tasks import is_seq2seq as hf_is_seq2seq
from modelport.sources.objects import IN_MEMORY, as_dims, as_loaded, as_specs
from modelport.sources.recorded import source_file
from modelport.spec import Dim, InputSpec, Signature
from modelport.tolerances import DEFAULT_ATOL, DEFAULT_RTOL, check_tolerances
from modelport.verification.parity import ParityReport, Reference

__all__ = ["export", "ExportResult", "resolve_signature", "as_bundle"]

Progress = Callable[[str], None]


@dataclass
class ExportResult:
    bundle: Bundle
    parity: ParityReport
    attempts: list[Attempt] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    export_seconds: float = 0.0
    verify_seconds: float = 0.0


def resolve_signature(loaded: LoadedModel, inputs: list[InputSpec] | None, dims: list[Dim] | None) -> Signature:
    """Declared inputs win; otherwise the source's own (transformers configs, demos), with --dim applied."""
    if inputs:
        return Signature.build(inputs, dims or [])
    if loaded.signature is None:
        raise UsageError(
            f"{loaded.ref} does not say what inputs it takes",
            "declare them: --input NAME:DIMS[:DTYPE[:LOW..HIGH]] (one per forward argument)",
        )
    merged = {**loaded.signature.dims, **{d.name: d for d in dims or []}}
    return Signature.build(loaded.signature.inputs, {n: Dim(d.name, d.min, d.max, d.opt) for n, d in merged.items()})


def export(
    model: Any,
    output: str | Path,
    inputs: Any = None,
    dims: Any = None,
    exporter: str = "auto",
    opset: int = DEFAULT_OPSET,
    atol: float = DEFAULT_ATOL,
    rtol: float = DEFAULT_RTOL,
    keep_failed: bool = False,
    progress: Progress | None = None,
    strict_opset: bool = False,
    verify_timeout: float = DEFAULT_VERIFY_TIMEOUT,
    task: str | None = None,
    tokenizer: Any = None,
    data: Any = None,
) -> Any:
    """Export ``model`` to a verified bundle at ``output``, or raise the reason it cannot be trusted.

    ``model``: an ``nn.Module``, ``ScriptModule`` or ``ExportedProgram``, or a MODEL string
    (``file.py:factory``, ``model.pt``, ``model.pt2``, ``hf:DIR``, ``demo:minilm``). ``inputs``: spec strings
    (``"x:batch,3,224,224"``) or ``InputSpec``s; ``dims``: ``"batch=1..32"`` strings, ``Dim``s, or
    ``{"batch": (1, 32)}``. A module object is exported in eval mode and handed back in the mode it had.

    ``task="text-generation"`` (the default for an ``hf:`` folder of a ``...ForCausalLM``) writes a generation
    bundle: a decoder graph with a KV cache, checked by generating tokens against transformers
    (``generation_export.export_generation``; ``tokenizer`` for a model object, ``data`` prompts for the
    checks); ``task="feature-extraction"`` keeps a causal LM a fixed graph without a cache."""
    task = resolve_task(model, task, inputs)
    if task == "text-generation":
        from modelport.generation_export import export_generation

        return export_generation(model, output, tokenizer=tokenizer, opset=opset,
                                 exporter=exporter, data=data, keep_failed=keep_failed, progress=progress)  # fmt: skip
    if task in SEQ2SEQ_TASKS and is_seq2seq(model):
        from modelport.seq2seq_export import export_seq2seq

        return export_seq2seq(model, output, task=task, tokenizer=tokenizer, opset=opset, exporter=exporter,
                              data=data, keep_failed=keep_failed, progress=progress)  # fmt: skip
    if task not in (None, "feature-extraction") and isinstance(model, str) and model.startswith("hf:"):
        model = f"{model}?task={task}"  # loaded in the class for the task; the bundle records the ref
    if exporter not in EXPORTERS:
        raise UsageError(f"unknown exporter {exporter!r}", f"choose one of: {', '.join(EXPORTERS)}")
    check_tolerances(atol, rtol)
    check_opset(opset)
    target = bundles.output_path(output)  # now: the model's code may change the working directory
    bundles.check_replaceable(target)  # before minutes of work, not after
    check_timeout(verify_timeout)
    say = progress or (lambda _msg: None)
    say("loading the model")
    with _mode_kept(model):
        return _export(as_loaded(model), target, as_specs(inputs), as_dims(dims), exporter, opset, atol, rtol,
                       keep_failed, say, strict_opset, verify_timeout)  # fmt: skip


#: tasks whose bundle generates with an encoder graph and a decoder graph (for an encoder-decoder model)
SEQ2SEQ_TASKS = ("text2text-generation", "automatic-speech-recognition")


def resolve_task(model: Any, task: str | None, inputs: Any) -> str | None:
    """The task asked for, or the one an ``hf:`` folder was saved for when that one generates (a
    ``...ForCausalLM``: text-generation; T5, BART or Marian ``...ForConditionalGeneration``:
    text2text-generation; Whisper's: automatic-speech-recognition). None: a fixed graph of the model as it is.
    ``feature-extraction`` is that too, said out loud: a fixed graph without a cache."""
    if task is not None and task not in task_names():
        raise UsageError(f"unknown task {task!r}", f"choose one of: {', '.join(task_names())}")
    if task in ("text-generation", *SEQ2SEQ_TASKS) and inputs and (task == "text-generation" or is_seq2seq(model)):
        raise UsageError(f"--input does not apply to {task} (the decoder's inputs are fixed)", "drop --input")
    if task is None and isinstance(model, str) and model.startswith("hf:") and not inputs:
        folder = Path(model.removeprefix("hf:")).expanduser()
        if (folder / "config.json").is_file():
            own = folder_task(folder)
            if own == "text-generation" or (own in SEQ2SEQ_TASKS and hf_is_seq2seq(folder)):
                return own
    return task


def is_seq2seq(model: Any) -> bool:
    """An encoder-decoder: an ``hf:`` folder or a transformers model whose config says so."""
    if isinstance(model, str):
        folder = Path(model.removeprefix("hf:")).expanduser()
        return model.startswith("hf:") and hf_is_seq2seq(folder)
    return bool(getattr(getattr(model, "config", None), "is_encoder_decoder", False))


@contextlib.contextmanager
def _mode_kept(model: Any) -> Iterator[None]:
    """A module object the user handed in goes back in the mode it came in (export puts it in eval)."""
    was_training = isinstance(model, torch.nn.Module) and model.training
    try:
        yield
    finally:
        if was_training:
            model.train()


def _export(
    loaded: LoadedModel,
    target: Path,
    inputs: list[InputSpec] | None,
    dims: list[Dim] | None,
    exporter: str,
    opset: int,
    atol: float,
    rtol: float,
    keep_failed: bool,
    say: Progress,
    strict_opset: bool,
    verify_timeout: float,
) -> ExportResult:
    sig = resolve_signature(loaded, inputs, dims)
    sig.check_fits_memory()
    if loaded.exported_program is not None and inputs and loaded.signature is not None:
        from modelport.sources.exported_program import check_against_program

        check_against_program(sig, loaded.signature, loaded.ref)
    plan = plan_call(loaded.module, sig, loaded.positional)
    example = make_feed(sig, sig.example_sizes(), np.random.default_rng(1234))
    answers = run_eager(loaded.module, plan, example.arrays, sig, timeout=verify_timeout, label="example")
    if not answers:
        raise SourceError(
            f"{loaded.ref} returned no tensors on the example feed",
            "forward must return tensors (or tuples/dicts of them)",
        )
    output_names = _unique([name for name, _ in answers])
    say("computing PyTorch's answers")
    ref = Reference(loaded.module, plan, sig, timeout=verify_timeout, atol=atol, rtol=rtol)

    staging = bundles.staging_dir(target)
    try:
        job = ExportJob(
            module=loaded.module,
            signature=sig,
            plan=plan,
            output_names=output_names,
            path=staging / MODEL_FILE,
            example=[torch.from_numpy(example.arrays[s.name]) for s in sig.inputs],
            opset=opset,
            exported_program=loaded.exported_program,
            strict_opset=strict_opset,
        )
        start = time.perf_counter()
        outcome = capture(job, ref, exporter, atol, rtol, on_attempt=lambda name: say(f"exporting with {name}"))
        total = time.perf_counter() - start
        written = [a.path for a in outcome.attempts if a.path is not None and a.path.exists()]
        model_path = _keep(staging, outcome.path if outcome.error is None else (written or [None])[-1])
        verify_seconds = sum(a.verify_seconds for a in outcome.attempts)
        notes = loaded.notes + [n for a in outcome.attempts if a.strategy == outcome.strategy for n in a.notes]
        manifest = _manifest(loaded, sig, exporter, opset, outcome, model_path, total - verify_seconds, verify_seconds)
        manifest["notes"] = notes
        if outcome.error is not None:
            if keep_failed and model_path is not None:
                manifest["status"] = "failed verification"
                bundles.commit(staging, target, manifest)
            outcome.raise_if_failed()
        result_bundle = bundles.commit(staging, target, manifest)
    finally:
        bundles.discard(staging)  # no-op once committed
    assert outcome.report is not None
    return ExportResult(result_bundle, outcome.report, outcome.attempts, notes, total - verify_seconds, verify_seconds)


def _keep(staging: Path, chosen: Path | None) -> Path | None:
    """The chosen attempt's files move to the bundle's root (their names, external data's included, stay);
    every attempt's own folder goes."""
    final = None
    if chosen is not None:
        for file in chosen.parent.iterdir():
            os.replace(file, staging / file.name)
        final = staging / chosen.name
    for folder in staging.glob(".attempt-*"):
        shutil.rmtree(folder)
    return final


def _manifest(
    loaded: LoadedModel,
    sig: Signature,
    exporter: str,
    opset: int,
    outcome: CaptureOutcome,
    model_path: Path | None,
    export_s: float,
    verify_s: float,
) -> dict[str, Any]:
    outputs, actual_opset = onnx_graph.summary(model_path) if model_path is not None else ([], None)
    return {
        "format": "modelport-bundle",
        "format_version": bundles.FORMAT_VERSION,
        "status": "verified",
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "source": _source(loaded),
        "inputs": sig.to_json(),
        "outputs": outputs,
        "opset": {"requested": opset, "actual": actual_opset},
        "capture": {
            "requested": exporter,
            "strategy": outcome.strategy,
            "attempts": [a.to_json() for a in outcome.attempts],
        },
        "versions": bundles.package_versions(),
        "parity": outcome.report.to_json() if outcome.report else None,
        "timings": {"export_s": round(export_s, 3), "verify_s": round(verify_s, 3)},
        "optimizations": [],
        "notes": [],
    }


def _source(loaded: LoadedModel) -> dict[str, Any]:
    """What ``verify`` re-imports, with the sha256 it checks first; an object in memory has nothing to re-import."""
    if loaded.ref.startswith("<"):
        return {"model": None, "kind": IN_MEMORY, "sha256": None}
    file = source_file(loaded.ref)
    digest = bundles.sha256(file) if file is not None and file.is_file() else None
    return {"model": loaded.ref, "kind": loaded.kind, "sha256": digest}


def _unique(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for name in names:
        count = seen.get(name, 0)
        seen[name] = count + 1
        out.append(name if count == 0 else f"{name}_{count}")
    return out


def as_bundle(model: Any, staging: Path, inputs: Any, dims: Any, on_export: Callable[[str], None] | None) -> Bundle:
    """``model`` as a bundle: opened when it is one (a ``Bundle`` or its directory), imported into ``staging``
    when it is an ``.onnx`` file, otherwise exported and verified there (``inputs``/``dims`` as for
    ``export``)."""
    if isinstance(model, (str, Path)) and Path(model).is_dir() and (Path(model) / bundles.MANIFEST).is_file():
        if inputs or dims:
            raise UsageError("--input/--dim apply when a MODEL is exported, not to a bundle", "drop them")
        model = Bundle.open(model)
    if isinstance(model, Bundle):
        if (model.manifest.get("generation") or {}).get("task") == "text-generation":
            raise UsageError(
                f"{model.path} is a generation bundle (a decoder with a KV cache); bench times fixed graphs",
                "time generation with benchmarks/generate/run.py, or export the model with --task feature-extraction",
            )
        return model
    say = on_export or (lambda _msg: None)
    if isinstance(model, (str, Path)) and str(model).lower().endswith(".onnx") and Path(model).is_file():
        from modelport.ingest.importing import import_onnx

        imported = import_onnx(model, staging, inputs, dims, progress=say)
        say(f"imported {model} on the fly ({imported.bundle.manifest['status']})")
        return imported.bundle
    result = export(model, staging, inputs, dims, progress=say, task="feature-extraction")  # a fixed graph to time
    say(
        f"exported and verified ({result.bundle.manifest['capture']['strategy']}, "
        f"{result.export_seconds + result.verify_seconds:.0f} s)"
    )
    return result.bundle
