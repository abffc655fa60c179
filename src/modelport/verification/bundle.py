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
from modelport.options import check_timeout, check_tolerances
from modelport.runtime.base import Runner
from modelport.runtime.ort import OPT_LEVELS
from modelport.runtime.registry import TORCH_BACKENDS, create, parse_backend
from modelport.sources.objects import as_loaded
from modelport.sources.recorded import trusted_source
from modelport.verification.budget import DEFAULT_BUDGET, Budget, BudgetReport, score_outputs
from modelport.verification.parity import DEFAULT_ATOL, DEFAULT_RTOL, ParityReport, Reference, check_runners

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
) -> ParityReport | BudgetReport:
    """Re-check a bundle against PyTorch — ``model`` (an ``nn.Module``, ``ScriptModule``, ``ExportedProgram``
    or MODEL string) or the recorded source — on ``backend`` (default: the bundle's own; ort:cpu at both
    optimization levels, as at export). Tolerances default to the bundle's; a bundle written by ``optimize``
    is held to its recorded accuracy budget instead (``BudgetReport``). Raises ``ParityError`` on a mismatch."""
    say = progress or (lambda _msg: None)
    check_tolerances(atol, rtol)
    check_timeout(verify_timeout)
    bundle = bundle_dir if isinstance(bundle_dir, Bundle) else Bundle.open(bundle_dir)
    canonical = parse_backend(backend or bundle.backend).canonical
    if bundle.optimization is not None and (atol is not None or rtol is not None):
        raise UsageError(
            f"{bundle.path} was written by `modelport optimize` and is held to its budget "
            f"{bundle.optimization.get('budget')}, not to --atol/--rtol",
            "drop --atol/--rtol",
        )
    bundle.signature.check_fits_memory()
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
    if bundle.optimization is not None:
        say(f"comparing {canonical} with PyTorch under the budget {bundle.optimization.get('budget')}")
        budget_report = check_budget(bundle, loaded, create(canonical, bundle, **options), verify_timeout)
        budget_report.raise_if_failed()
        return budget_report
    plan = plan_call(loaded.module, sig, loaded.positional)
    ref = Reference(loaded.module, plan, sig, timeout=verify_timeout, atol=atol, rtol=rtol)
    levels = OPT_LEVELS if canonical == "ort:cpu" else ("all",)
    runners = [create(canonical, bundle, optimization=level, **options) for level in levels]
    say(f"comparing {canonical} with PyTorch")
    report = check_runners(runners, ref, atol, rtol, canonical)
    report.raise_if_failed()
    return report


def check_budget(bundle: Bundle, loaded: Any, runner: Runner, timeout: float | None) -> BudgetReport:
    """An optimized bundle against PyTorch under the budget ``optimize`` recorded, on the held-out feeds it
    stored (the data that judged it), or on the in-domain verification feeds when it stored none."""
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
    plan = plan_call(loaded.module, sig, loaded.positional)
    labelled = [(feed, f"feed {i + 1}") for i, feed in enumerate(feeds)]
    answers = [run_eager(loaded.module, plan, feed, sig, timeout=timeout, label=label) for feed, label in labelled]
    with runner:
        names = [o.name for o in runner.outputs()]
        got = [runner.infer(feed, timeout=timeout, label=label) for feed, label in labelled]
    want = [{name: array for name, (_, array) in zip(names, answer, strict=False)} for answer in answers]
    report = BudgetReport(budget, runner.name, "PyTorch eager", data)
    report.outputs = score_outputs(budget, want, got)
    return report
