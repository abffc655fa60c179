"""``modelport upgrade``: lift an old file's opset so that onnxruntime runs it again, with proof that its
answers did not change; and the cure ``doctor`` names for such files.

The steps: onnxruntime is asked whether it runs the file as it is (it does: nothing to do, unless an
opset is asked for); ``onnx.version_converter`` lifts the default domain to ``ORT_MIN_OPSET`` (or the
opset asked for); onnxruntime must load the result; then it must answer what the original answers
(``upgrade_proof``: ONNX's test data beside the file, or the reference evaluator on the original), within
the project's tolerance. Only then are ``NEW.onnx`` and ``NEW.proof.json`` written (each at a temporary
name, then renamed). Any step that fails refuses in one line (``conversion``): the converter's missing
adapter, an op onnxruntime lacks at any opset (training-only ops, custom domains), a locale the machine
lacks; or the first node whose answer changed and what the conversion did to it (``first_difference``).
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NoReturn

import onnx

from modelport import interrupts
from modelport.bundle import atomic_write
from modelport.compare import compare
from modelport.deadline import DEFAULT_VERIFY_TIMEOUT, within
from modelport.diagnose.findings import Finding
from modelport.diagnose.graph import default_opset
from modelport.diagnose.open_model import open_onnx
from modelport.errors import ModelFileError, ModelportError, ParityError, UsageError, as_path, first_line
from modelport.ingest.conversion import convert, load_error, ort_reason, ort_version, refusal
from modelport.ingest.first_difference import first_difference
from modelport.ingest.upgrade_proof import Case, cases_for
from modelport.runtime.ort_session import cpu_session
from modelport.tolerances import DEFAULT_ATOL, DEFAULT_RTOL

__all__ = ["upgrade", "UpgradeReport", "check_upgrade", "name_the_cure", "ORT_MIN_OPSET"]

# The lowest default-domain opset this onnxruntime runs. Established on onnxruntime 1.32 with the 2018 files
# shipped inside the onnx wheel (backend/test/data/pytorch-*, opset 6): loading one logs "ONNX Runtime only
# *guarantees* support for models stamped with opset version 7 or above for opset domain 'ai.onnx'", 34 of
# them are refused for kernels it no longer has (Add(6), Gemm(6), BatchNormalization(6), PRelu(6),
# AveragePool(1), Pow(1)...), and every one of those loads once converted to 7. tests/test_upgrade.py checks
# that this stays true of the installed onnxruntime (opset 6 refused, 7 runs).
ORT_MIN_OPSET = 7
DOCTOR_TIMEOUT = 30.0  # seconds per evaluator or runtime call when doctor tries the cure
_CURED = ("no-kernel", "ancient-opset")  # doctor's findings that a proved upgrade fixes
_PROTOBUF_LIMIT = 2**31 - 1  # the converter takes the model through one serialized protobuf


@dataclass
class UpgradeReport:
    """What ``upgrade`` did and the proof for it; ``to_json()`` is what ``NEW.proof.json`` holds."""

    source: Path
    source_sha256: str
    opset_from: int | None
    opset_to: int | None
    status: str = "refused"  # "upgraded", "current" (onnxruntime runs it as it is) or "refused"
    output: Path | None = None
    proof: Path | None = None
    feeds: list[dict[str, Any]] = field(default_factory=list)
    max_abs_diff: dict[str, float] = field(default_factory=dict)  # per output, over every feed
    atol: float = DEFAULT_ATOL
    rtol: float = DEFAULT_RTOL
    notes: list[str] = field(default_factory=list)
    refusal: str = ""

    @property
    def passed(self) -> bool:
        return self.status == "upgraded"

    def summary(self) -> str:
        if self.status == "current":
            return (
                f"{self.source} already runs in onnxruntime {ort_version()} (opset {self.opset_from}): nothing to "
                "do; --opset N lifts it anyway"
            )
        if self.status == "refused":
            return f"{self.source}: refused — {self.refusal}"
        worst = max(self.max_abs_diff.values(), default=0.0)
        origin = self.feeds[0]["answers_from"] if self.feeds else "?"
        return (
            f"{self.output}: opset {self.opset_from} -> {self.opset_to}, answers as before on {len(self.feeds)} "
            f"feed(s) from {origin} (max abs diff {worst:.3g}; atol {self.atol:g}, rtol {self.rtol:g}); proof: "
            f"{self.proof}"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "source": str(self.source),
            "source_sha256": self.source_sha256,
            "output": str(self.output) if self.output else None,
            "proof": str(self.proof) if self.proof else None,
            "opset": {"from": self.opset_from, "to": self.opset_to},
            "feeds": self.feeds,
            "max_abs_diff": self.max_abs_diff,
            "tolerance": {"atol": self.atol, "rtol": self.rtol},
            "passed": self.passed,
            "notes": self.notes,
            "refusal": self.refusal,
            "versions": {"onnx": onnx.__version__, "onnxruntime": ort_version()},
        }


@dataclass
class Attempt:
    report: UpgradeReport
    model: onnx.ModelProto | None = None  # the upgraded model, when the proof passed
    error: ModelportError | None = None


def upgrade(
    path: str | Path,
    output: str | Path,
    opset: int | None = None,
    *,
    atol: float = DEFAULT_ATOL,
    rtol: float = DEFAULT_RTOL,
    timeout: float | None = DEFAULT_VERIFY_TIMEOUT,
) -> UpgradeReport:
    """Lift ``path`` to ``opset`` (default ``ORT_MIN_OPSET``) and write it to ``output`` with
    ``<output stem>.proof.json`` beside it, once onnxruntime answers as the original does. A file that
    onnxruntime already runs is left alone (status "current") unless ``opset`` is given. Refusals raise:
    ``ParityError`` (exit 1) when the answers changed, naming the first node that differs; ModelportError
    (exit 2) when the converter or onnxruntime lacks what the file needs."""
    model_path, _ = open_onnx(path)
    target = Path(as_path(output, "the output file")).expanduser().absolute()
    if target.exists() and target.resolve() == model_path.resolve():
        raise UsageError(f"-o {output} is the file being upgraded", "write the upgraded file to a new path")
    if target.is_dir():
        raise UsageError(f"-o {output} is a directory", "give the file to write, e.g. -o new.onnx")
    attempt = check_upgrade(model_path, opset, atol=atol, rtol=rtol, timeout=timeout)
    if attempt.error is not None:
        raise attempt.error
    report = replace(attempt.report, notes=list(attempt.report.notes))
    if attempt.model is None:
        return report  # "current": nothing to write
    report.output, report.proof = target, target.with_suffix(".proof.json")
    interrupts.check()  # an interrupt that something swallowed still means: write nothing
    atomic_write(target, lambda fh: fh.write(attempt.model.SerializeToString()))  # type: ignore[union-attr]
    text = json.dumps(report.to_json(), indent=2) + "\n"
    atomic_write(report.proof, lambda fh: fh.write(text.encode()))
    return report


def check_upgrade(
    path: str | Path,
    opset: int | None = None,
    *,
    atol: float = DEFAULT_ATOL,
    rtol: float = DEFAULT_RTOL,
    timeout: float | None = DEFAULT_VERIFY_TIMEOUT,
) -> Attempt:
    """The whole upgrade in memory: the report, the upgraded model when the proof passed, or the refusal.
    Cached per file (path, size, mtime) within the process, so doctor and upgrade try each file once."""
    model_path, _ = open_onnx(path)
    stat = model_path.stat()
    return _cached(str(model_path.resolve()), stat.st_size, stat.st_mtime_ns, opset, atol, rtol, timeout)


@functools.lru_cache(maxsize=16)
def _cached(
    path: str, size: int, mtime: int, opset: int | None, atol: float, rtol: float, timeout: float | None
) -> Attempt:
    model_path = Path(path)
    digest = hashlib.sha256(model_path.read_bytes()).hexdigest()
    report = UpgradeReport(model_path, digest, None, opset, atol=atol, rtol=rtol)
    try:
        model = _upgraded(model_path, report, opset, timeout)
    except UsageError:
        raise
    except ModelportError as exc:
        report.status, report.refusal = "refused", exc.one_line()
        return Attempt(report, None, exc)
    return Attempt(report, model)


def _upgraded(
    model_path: Path, report: UpgradeReport, opset: int | None, timeout: float | None
) -> onnx.ModelProto | None:
    try:
        model = onnx.load(str(model_path))  # with its external data: the converter needs the weights
    except Exception as exc:
        raise ModelFileError(
            f"cannot read {model_path} with its weights: {first_line(exc)[:160]}",
            "its external data files must lie where the model names them (modelport doctor says where)",
        ) from None
    source = report.opset_from = default_opset(model)
    target = report.opset_to = opset or max(ORT_MIN_OPSET, source or 0)
    newest = onnx.defs.onnx_opset_version()
    if source is None:
        raise UsageError(
            f"{model_path} imports no default-domain opset: there is nothing to lift",
            "upgrade lifts the default (ai.onnx) domain only",
        )
    if opset is not None and not source <= opset <= newest:
        raise UsageError(
            f"--opset {opset} is outside {source}..{newest}: upgrade lifts from the file's opset ({source}) to at "
            f"most the newest this onnx {onnx.__version__} knows ({newest})",
            f"pass --opset between {source} and {newest}, or leave it out ({ORT_MIN_OPSET}, the lowest onnxruntime "
            "runs)",
        )
    refused = load_error(model_path)
    if refused is None and (opset is None or opset == source):
        report.status = "current"
        return None
    if target <= source:
        raise refusal(
            refused or "", model_path, f"onnxruntime {ort_version()} refuses it, and not for its opset ({source})"
        )
    if model.ByteSize() > _PROTOBUF_LIMIT:
        raise ModelportError(
            f"{model_path} is over 2 GiB with its weights; onnx's version converter takes a model through one "
            "protobuf, which cannot be that large",
            "re-export the model from its source at a current opset",
        )
    upgraded = convert(model, source, target, report.notes)
    refused = load_error(upgraded)
    if refused is not None:
        raise refusal(refused, model_path, f"after lifting opset {source} to {target}, onnxruntime still refuses it")
    _prove(model_path, model, upgraded, report, timeout)
    report.status = "upgraded"
    return upgraded


def _prove(
    model_path: Path, model: onnx.ModelProto, upgraded: onnx.ModelProto, report: UpgradeReport, timeout: float | None
) -> None:
    cases = cases_for(model_path, model, timeout)
    session = cpu_session(upgraded)
    names = [o.name for o in session.get_outputs()]
    for case in cases:
        entry = case.to_json()
        report.feeds.append(entry)
        try:
            arrays = within(lambda c=case: session.run(names, c.feed), timeout, "onnxruntime", case.label)
        except ModelportError:
            raise
        except Exception as exc:
            _answers_changed(model, upgraded, case, report, timeout, f"onnxruntime fails on it: {ort_reason(exc)}")
        diffs = {
            n: compare(n, case.expected[n], a, report.atol, report.rtol) for n, a in zip(names, arrays, strict=True)
        }
        entry["max_abs_diff"] = {n: d.max_abs for n, d in diffs.items()}
        for name, diff in diffs.items():
            report.max_abs_diff[name] = max(report.max_abs_diff.get(name, 0.0), diff.max_abs)
        bad = next((n for n, d in diffs.items() if not d.passed), None)
        if bad is not None:
            what = diffs[bad].why or f"max abs diff {diffs[bad].max_abs:.3g}"
            _answers_changed(model, upgraded, case, report, timeout, f"output {bad!r} differs ({what})")


def _answers_changed(
    model: onnx.ModelProto,
    upgraded: onnx.ModelProto,
    case: Case,
    report: UpgradeReport,
    timeout: float | None,
    symptom: str,
) -> NoReturn:
    culprit = first_difference(model, upgraded, case, report.atol, report.rtol, timeout)
    lifted = f"opset {report.opset_from} -> {report.opset_to}"
    hint = (
        "the conversion changes what this node computes: keep the original file for an onnxruntime that still runs "
        "it, or re-export the model from its source at a current opset"
    )
    if culprit is None:
        message = f"the upgraded file ({lifted}) does not answer as the original on feed {case.label!r}: {symptom}"
    else:
        node = culprit.node
        index = f"node #{culprit.index}" if culprit.index >= 0 else "a node the converter added"
        name = f" {node.name!r}" if node.name else ""
        message = (
            f"the upgraded file ({lifted}) does not answer as the original on feed {case.label!r}: {index} "
            f"({node.op_type}{name}, output {culprit.output!r}) {culprit.what}; what changed: {culprit.change}"
        )
    raise ParityError(message, hint, report)


def name_the_cure(model_path: Path, findings: list[Finding]) -> list[Finding]:
    """When onnxruntime refuses the file (doctor's no-kernel findings) and an upgrade, tried here, loads and
    answers as the original, those findings and the ancient-opset warning get ``modelport upgrade`` as
    their fix; the findings are left as they are otherwise."""
    if not any(f.code == "no-kernel" for f in findings):
        return findings
    try:
        attempt = check_upgrade(model_path, timeout=DOCTOR_TIMEOUT)
    except Exception:  # the cure is a courtesy: doctor's own findings stand without it
        return findings
    report = attempt.report
    if attempt.model is None:
        return findings
    new = f"{model_path.stem}-opset{report.opset_to}.onnx"
    fix = (
        f"modelport upgrade {model_path} -o {new} (lifts opset {report.opset_from} to {report.opset_to}; tried "
        f"here: onnxruntime runs it and it answers as the original on {len(report.feeds)} feed(s))"
    )
    return [replace(f, fix=fix) if f.code in _CURED else f for f in findings]
