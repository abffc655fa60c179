"""``verify(bundle)``: re-check a bundle against PyTorch, on any backend.

The reference is the model the user passes (an object or a MODEL string) or, without one, the source
the bundle records, imported only after ``sources.recorded.trusted_source`` has checked it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from modelport.bundle import Bundle
from modelport.deadline import DEFAULT_VERIFY_TIMEOUT
from modelport.errors import UsageError
from modelport.feeds import make_feeds, read_feed_set
from modelport.forward import plan_call, run_eager
from modelport.generation.model import is_generation
from modelport.generation.seq2seq import is_seq2seq
from modelport.options import check_timeout
from modelport.runtime.base import Runner
from modelport.runtime.ort import OPT_LEVELS
from modelport.runtime.registry import TORCH_BACKENDS, create, parse_backend
from modelport.sources.objects import as_loaded
from modelport.sources.recorded import trusted_source
from modelport.tolerances import DEFAULT_ATOL, DEFAULT_RTOL, check_tolerances
from modelport.verification.budget import DEFAULT_BUDGET, Budget, BudgetReport, score_outputs
from modelport.verification.generation import verify_generation
from modelport.verification.generation_report import GenerationReport
from modelport.verification.parity import ParityReport, Reference, check_runners
from modelport.verification.seq2seq import verify_seq2seq
from modelport.verification.text_verify import TextVerifyReport, verify_text

__all__ = ["verify", "check_budget"]


def verify(
    bundle_dir: str | Path | Bundle,
    model: Any = None,
    atol: float | None = None,
    rtol: float | None = None,
    progress: Callable[[str], None] | None = None,
    *,
    backend: str | None = None,
    threads: int | None = None,
    fallback: str = "refuse",
    verify_timeout: float = DEFAULT_VERIFY_TIMEOUT,
    data: Any = None,
) -> ParityReport | BudgetReport | GenerationReport | TextVerifyReport:
    """Re-check a bundle against PyTorch — ``model`` (an ``nn.Module``, ``ScriptModule``, ``ExportedProgram``
    or MODEL string) or the recorded source — on ``backend`` (default: the bundle's own; ort:cpu at both
    optimization levels, as at export). Tolerances default to the bundle's; a bundle written by ``optimize``
    is held to its recorded accuracy budget instead (``BudgetReport``); a generation bundle gets its generation
    checks (``GenerationReport``; ``data``: prompts, a text file or a list), and one that ``optimize`` compressed
    its text budget on the held-out text it carries (``TextVerifyReport``); an encoder-decoder bundle its seq2seq
    checks (``verification.seq2seq``; ``data``: texts, or a folder of WAV files). ``ParityError`` on a mismatch."""
    say = progress or (lambda _msg: None)
    check_tolerances(atol, rtol)
    check_timeout(verify_timeout)
    if model is None and not isinstance(bundle_dir, Bundle) and str(bundle_dir).lower().endswith(".onnx"):
        return _verify_file(Path(bundle_dir), atol, rtol, say, backend, threads, fallback, verify_timeout)
    bundle = bundle_dir if isinstance(bundle_dir, Bundle) else Bundle.open(bundle_dir)
    if is_generation(bundle):
        if atol is not None or rtol is not None:
            raise UsageError("a generation bundle is held to its logits tolerance, not to --atol/--rtol", "drop them")
        if bundle.optimization is not None:  # compressed by optimize: held to its text budget
            if data is not None:
                raise UsageError(
                    "an optimized generation bundle is re-checked on the held-out text it was judged on", "drop --data"
                )
            return verify_text(bundle, model, backend=backend, threads=threads, progress=say)
        return verify_generation(bundle, model, backend=backend, threads=threads, data=data, progress=say)
    if is_seq2seq(bundle):  # an encoder-decoder: its generation checks (``data``: texts, or a folder of WAV files)
        if atol is not None or rtol is not None:
            raise UsageError("a generation bundle is held to its logits tolerance, not to --atol/--rtol", "drop them")
        return verify_seq2seq(bundle, model, backend=backend, threads=threads, data=data, progress=say)
    canonical = parse_backend(backend or bundle.backend).canonical
    if bundle.optimization is not None and (atol is not None or rtol is not None):
        raise UsageError(
            f"{bundle.path} was written by `modelport optimize` and is held to its budget "
            f"{bundle.optimization.get('budget')}, not to --atol/--rtol",
            "drop --atol/--rtol",
        )
    bundle.signature.check_fits_memory()
    if model is None and bundle.imported:
        return _verify_imported(bundle, canonical, atol, rtol, {"threads": threads, "fallback": fallback},
                                verify_timeout, say)  # fmt: skip
    if model is None:  # the manifest's choice, not the user's: import it only if it is what was exported
        model = bundle.source
        if not model:
            raise UsageError(f"{bundle.path} does not record its source model", "pass the model (--model MODEL)")
        file = trusted_source(bundle.path, model, bundle.manifest["source"].get("sha256"))
        say(f"importing {file} (the source recorded in the bundle; its sha256 matches)" if file else f"loading {model}")
    say("loading the model")
    loaded = as_loaded(model)
    sig = bundle.signature
    recorded = bundle.manifest.get("parity") or {}
    atol = recorded.get("atol", DEFAULT_ATOL) if atol is None else atol
    rtol = recorded.get("rtol", DEFAULT_RTOL) if rtol is None else rtol
    options: dict[str, Any] = {"threads": threads, "fallback": fallback}
    if canonical in TORCH_BACKENDS:
        options["model"] = loaded
    plan = plan_call(loaded.module, sig, loaded.positional)
    if bundle.optimization is not None:
        say(f"comparing {canonical} with PyTorch under the budget {bundle.optimization.get('budget')}")

        def eager(feed: dict[str, Any], label: str) -> list[Any]:
            return run_eager(loaded.module, plan, feed, sig, timeout=verify_timeout, label=label)

        budget_report = check_budget(
            bundle, eager, "PyTorch eager", create(canonical, bundle, **options), verify_timeout
        )
        budget_report.raise_if_failed()
        return budget_report
    ref = Reference(loaded.module, plan, sig, timeout=verify_timeout, atol=atol, rtol=rtol)
    levels = OPT_LEVELS if canonical == "ort:cpu" else ("all",)
    runners = [create(canonical, bundle, optimization=level, **options) for level in levels]
    say(f"comparing {canonical} with PyTorch")
    report = check_runners(runners, ref, atol, rtol, canonical)
    report.raise_if_failed()
    return report


def _verify_file(
    path: Path,
    atol: float | None,
    rtol: float | None,
    say: Callable[[str], None],
    backend: str | None,
    threads: int | None,
    fallback: str,
    timeout: float,
) -> ParityReport | BudgetReport:
    """A plain ONNX file: imported into a temporary bundle (its check is ONNX Runtime against the reference
    evaluator), then, for another backend, that bundle verified on it."""
    import tempfile

    from modelport.ingest.importing import import_onnx

    tolerances = {k: v for k, v in (("atol", atol), ("rtol", rtol)) if v is not None}
    with tempfile.TemporaryDirectory(prefix="modelport-import-") as tmp:
        say(f"importing {path} on the fly (a bundle in a temporary folder; `modelport import` keeps one)")
        imported = import_onnx(path, Path(tmp) / "bundle", verify_timeout=timeout, progress=say, **tolerances)
        if backend not in (None, "ort:cpu"):
            return verify(imported.bundle, atol=atol, rtol=rtol, progress=say, backend=backend, threads=threads,
                          fallback=fallback, verify_timeout=timeout)  # fmt: skip
        if imported.parity is None:
            raise UsageError(f"{path} cannot be verified: {imported.notes[-1]}", "")
        return imported.parity


def _verify_imported(
    bundle: Bundle,
    canonical: str,
    atol: float | None,
    rtol: float | None,
    options: dict[str, Any],
    timeout: float,
    say: Callable[[str], None],
) -> ParityReport | BudgetReport:
    """A bundle imported from an ONNX file, which has no PyTorch source: against ONNX's reference evaluator
    on its own graph; an optimized one against the original float file (checked by the import) under its
    budget."""
    if bundle.optimization is not None:
        original = _original_file(bundle)
        say(f"comparing {canonical} with the original {original.name} (ONNX Runtime, fp32) under the budget")
        with create("ort:cpu", original, threads=options.get("threads")) as reference:
            names = [o.name for o in reference.outputs()]

            def float_answers(feed: dict[str, Any], label: str) -> list[Any]:
                got = reference.infer(feed, timeout=timeout, label=label)
                return [(name, got[name]) for name in names]

            report = check_budget(bundle, float_answers, f"the original {original.name}",
                                  create(canonical, bundle, **options), timeout)  # fmt: skip
        report.raise_if_failed()
        return report
    from modelport.ingest.evaluator import EVALUATOR, OnnxReference, ReferenceUnavailable

    recorded = bundle.manifest.get("parity") or {}
    atol = recorded.get("atol", DEFAULT_ATOL) if atol is None else atol
    rtol = recorded.get("rtol", DEFAULT_RTOL) if rtol is None else rtol
    say(f"computing {EVALUATOR}'s answers")
    try:
        ref = OnnxReference(bundle.model_path, bundle.signature, timeout=timeout)
    except ReferenceUnavailable as exc:
        raise UsageError(f"{bundle.path} cannot be verified: {exc.message}", "the import said so too") from None
    levels = OPT_LEVELS if canonical == "ort:cpu" else ("all",)
    runners = [create(canonical, bundle, optimization=level, **options) for level in levels]
    say(f"comparing {canonical} with {EVALUATOR}")
    report = check_runners(runners, ref, atol, rtol, canonical)  # type: ignore[arg-type]
    report.raise_if_failed()
    return report


def _original_file(bundle: Bundle) -> Path:
    from modelport.bundle import sha256

    source = bundle.manifest["source"]
    path = Path(source.get("model") or "")
    if not path.is_file() or sha256(path) != source.get("sha256"):
        raise UsageError(
            f"the ONNX file {bundle.path} was imported from ({path}) is gone or changed since",
            "verify on the machine that holds the original, or import and optimize again",
        )
    return path


def check_budget(
    bundle: Bundle,
    reference: Callable[[dict[str, Any], str], list[Any]],
    reference_name: str,
    runner: Runner,
    timeout: float | None,
) -> BudgetReport:
    """An optimized bundle against ``reference`` (answers as (name, array) pairs) under the budget
    ``optimize`` recorded, on the held-out feeds it stored (the data that judged it), or on the in-domain
    verification feeds when it stored none."""
    entry = bundle.optimization or {}
    budget = Budget.parse(entry.get("budget") or DEFAULT_BUDGET)
    sig = bundle.signature
    stored = entry.get("held_out_file")
    if stored and stored in bundle.manifest["files"]:
        feeds = read_feed_set(bundle.path / stored)
        data = f"the {len(feeds)} held-out feeds optimize judged it on ({stored})"
    else:  # x100 and negated stress feeds lie outside any calibrated range by design
        feeds = [f.arrays for f in make_feeds(sig) if not f.stress]
        data = f"{len(feeds)} generated feeds"
    labelled = [(feed, f"feed {i + 1}") for i, feed in enumerate(feeds)]
    answers = [reference(feed, label) for feed, label in labelled]
    with runner:
        names = [o.name for o in runner.outputs()]
        got = [runner.infer(feed, timeout=timeout, label=label) for feed, label in labelled]
    want = [{name: array for name, (_, array) in zip(names, answer, strict=False)} for answer in answers]
    report = BudgetReport(budget, runner.name, reference_name, data)
    report.outputs = score_outputs(budget, want, got)
    return report
