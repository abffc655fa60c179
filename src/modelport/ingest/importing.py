"""``import_onnx``: a bundle from any ONNX file (tf2onnx, a model zoo, a colleague, 2018), checked.

``doctor`` runs first and a file with errors is refused with its findings. The signature comes from the
graph: fixed sizes stay fixed, each named dimension (``dim_param``) becomes a symbol of that name (made an
identifier), an unnamed one a symbol named after its input and axis; sizes and value ranges come from
``inputs``/``dims`` when given, otherwise from defaults that the notes state (symbols 1..32; an integer
input that indexes an embedding table ranges over the table, other integers 0..10). External data is
brought inside the bundle. ONNX Runtime is then checked against ONNX's reference evaluator
(``onnx.reference``, an independent numpy implementation) on feeds across the declared sizes: a
disagreement refuses the import; a graph the evaluator cannot run, or not in time, is imported with
``status: "imported"`` and a note saying it was not checked, instead of ``"verified"``.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import onnx

from modelport import bundle as bundles
from modelport import onnx_graph
from modelport.bundle import MODEL_FILE, Bundle
from modelport.deadline import DEFAULT_VERIFY_TIMEOUT, VerifyTimeoutError
from modelport.diagnose.open_model import open_onnx
from modelport.errors import ModelFileError, UsageError
from modelport.ingest.doctor import doctor
from modelport.ingest.evaluator import EVALUATOR, OnnxReference, ReferenceUnavailable
from modelport.options import check_timeout
from modelport.sources.objects import as_dims, as_specs
from modelport.spec import DTYPES, Dim, InputSpec, Signature
from modelport.tolerances import DEFAULT_ATOL, DEFAULT_RTOL, check_tolerances
from modelport.verification.parity import ParityReport, check_parity

__all__ = ["import_onnx", "ImportResult", "graph_signature"]

VERIFIED, UNCHECKED = "verified", "imported"
INLINE_LIMIT = 1_800_000_000  # bytes of a model kept in one protobuf (its hard limit is 2 GiB)
_NOT_IDENT = re.compile(r"[^A-Za-z0-9_]")


@dataclass
class ImportResult:
    bundle: Bundle
    parity: ParityReport | None  # None: the reference evaluator could not run the graph (see notes)
    notes: list[str] = field(default_factory=list)

    @property
    def checked(self) -> bool:
        return self.parity is not None

    def to_json(self) -> dict[str, Any]:
        return {
            "bundle": str(self.bundle.path),
            "status": self.bundle.manifest["status"],
            "signature": str(self.bundle.signature),
            "parity": self.parity.to_json() if self.parity else None,
            "notes": self.notes,
        }


def import_onnx(
    model: str | Path,
    output: str | Path,
    inputs: Any = None,
    dims: Any = None,
    *,
    atol: float = DEFAULT_ATOL,
    rtol: float = DEFAULT_RTOL,
    verify_timeout: float = DEFAULT_VERIFY_TIMEOUT,
    progress: Callable[[str], None] | None = None,
) -> ImportResult:
    """Import the ONNX file ``model`` as a bundle at ``output``. ``inputs`` (``"x:N,3,224,224:float32:0..1"``
    strings or ``InputSpec``s) replace what the graph says of those inputs; ``dims`` (``"N=1..8"``) bound
    its symbols. Raises with the doctor's findings for a broken file, ``ParityError`` when ONNX Runtime and
    the reference evaluator disagree."""
    check_tolerances(atol, rtol)
    check_timeout(verify_timeout)
    say = progress or (lambda _msg: None)
    target = bundles.output_path(output)
    bundles.check_replaceable(target)
    say("checking the file (doctor)")
    path, graph = open_onnx(model)
    if Path(model).is_dir():
        raise UsageError(f"{model} is a directory", "pass the .onnx file itself; a bundle needs no import")
    report = doctor(path)
    if report.errors:
        first = report.errors[0]
        more = f" (and {len(report.errors) - 1} more: modelport doctor {path})" if len(report.errors) > 1 else ""
        raise ModelFileError(f"{path} cannot be imported: {first.message}{more}", first.fix)
    sig, notes = graph_signature(graph, as_specs(inputs) or [], as_dims(dims) or [])
    sig.check_fits_memory()
    staging = bundles.staging_dir(target)
    try:
        _copy_model(path, graph, staging / MODEL_FILE)
        say(f"checking ONNX Runtime against {EVALUATOR}")
        parity: ParityReport | None = None
        try:
            reference = OnnxReference(staging / MODEL_FILE, sig, timeout=verify_timeout)
            parity = check_parity(staging / MODEL_FILE, reference, atol, rtol)  # type: ignore[arg-type]
        except (ReferenceUnavailable, VerifyTimeoutError) as exc:
            notes.append(f"not checked against an independent implementation: {exc.one_line()}")
        if parity is not None:
            parity.raise_if_failed()
        manifest = _manifest(path, sig, staging / MODEL_FILE, parity, notes)
        result = bundles.commit(staging, target, manifest)
    finally:
        bundles.discard(staging)
    return ImportResult(result, parity, notes)


def graph_signature(graph: onnx.ModelProto, given: list[InputSpec], dims: list[Dim]) -> tuple[Signature, list[str]]:
    """The inputs the graph declares (initializers listed as inputs, as before IR 4, left out), with
    ``given`` specs replacing theirs and ``dims`` bounding the symbols; and the notes on every default."""
    weights = {t.name: t for t in graph.graph.initializer}
    declared = {s.name: s for s in given}
    specs, notes, symbols = [], [], {}
    for value in graph.graph.input:
        if value.name in weights:
            continue
        spec = _input_spec(value, symbols)
        if value.name in declared:
            spec = _checked_override(declared.pop(value.name), spec)
        elif spec.is_integer:
            spec, note = _integer_range(graph, spec, weights)
            notes.append(note)
        specs.append(spec)
    if declared:
        names = ", ".join(sorted(declared))
        raise UsageError(f"--input {names}: the graph has no such input", "inputs: " + ", ".join(s.name for s in specs))
    if not specs:
        raise UsageError("the graph takes no inputs", "nothing to feed: modelport imports models with inputs")
    bounded = {d.name for d in dims}
    for symbol, origin in symbols.items():
        if symbol not in bounded:
            notes.append(f"dimension {symbol!r} ({origin}) assumed 1..32 (--dim {symbol}=MIN..MAX to change)")
    return Signature.build(specs, dims), notes


def _input_spec(value: onnx.ValueInfoProto, symbols: dict[str, str]) -> InputSpec:
    if not value.type.HasField("tensor_type"):
        kind = value.type.WhichOneof("value") or "untyped value"
        raise UsageError(f"input {value.name!r} is a {kind}, not a tensor", "modelport imports tensor inputs only")
    tensor = value.type.tensor_type
    dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type).name if tensor.elem_type else "?"
    if dtype not in DTYPES:
        raise UsageError(f"input {value.name!r} has type {dtype}, which modelport cannot feed", "")
    if not tensor.HasField("shape"):
        raise UsageError(
            f"input {value.name!r} has no shape in the graph", f"declare it: --input {value.name}:DIMS:{dtype}"
        )
    shape: list[int | str] = []
    for axis, dim in enumerate(tensor.shape.dim):
        if dim.HasField("dim_value") and dim.dim_value > 0:
            shape.append(dim.dim_value)
            continue
        named = bool(dim.dim_param)
        symbol = _identifier(dim.dim_param) if named else _identifier(f"{value.name}_{axis}")
        symbols.setdefault(symbol, f"named {dim.dim_param!r} in the graph" if named else f"{value.name!r} axis {axis}")
        shape.append(symbol)
    return InputSpec(value.name, tuple(shape), dtype)


def _checked_override(spec: InputSpec, graph_spec: InputSpec) -> InputSpec:
    if spec.dtype != graph_spec.dtype or len(spec.dims) != len(graph_spec.dims):
        raise UsageError(
            f"--input {spec} does not fit the graph's {graph_spec}", "keep the graph's dtype and rank; change sizes"
        )
    for want, have in zip(spec.dims, graph_spec.dims, strict=True):
        if isinstance(have, int) and want != have:
            raise UsageError(f"--input {spec} changes a size the graph fixes to {have}", "keep the fixed sizes")
    return spec


def _integer_range(
    graph: onnx.ModelProto, spec: InputSpec, weights: dict[str, onnx.TensorProto]
) -> tuple[InputSpec, str]:
    """Token ids index an embedding table: its rows; a [batch, seq] ``...mask``: 0/1 padding; else 0..9."""
    table = _embedding_rows(graph, spec.name, weights)
    if table:
        return replace(
            spec, low=0, high=table
        ), f"input {spec.name!r} indexes a {table}-row table: values 0..{table - 1}"
    if spec.name.lower().endswith("mask") and len(spec.dims) == 2:
        return replace(spec, low=0, high=2), f"input {spec.name!r} taken for a padding mask: rows of 1s then 0s"
    return spec, f"input {spec.name!r} assumed to hold 0..9 (--input {spec.name}:...:LOW..HIGH to change)"


def _embedding_rows(graph: onnx.ModelProto, name: str, weights: dict[str, onnx.TensorProto]) -> int | None:
    """The rows of the table ``name`` indexes when it feeds a Gather (axis 0) on an initializer directly."""
    for node in graph.graph.node:
        if node.op_type == "Gather" and len(node.input) == 2 and node.input[1] == name and node.input[0] in weights:
            axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
            table = weights[node.input[0]]
            if axis == 0 and table.dims:
                return int(table.dims[0])
    return None


def _identifier(text: str) -> str:
    name = _NOT_IDENT.sub("_", text) or "dim"
    return f"d_{name}" if name[0].isdigit() else name


def _copy_model(source: Path, graph: onnx.ModelProto, target: Path) -> None:
    """The file as it is, or, when it keeps weights in external files, loaded with them and saved inside
    the bundle: in ``model.onnx`` itself, or beside it in one ``model.onnx.data`` when too big for that."""
    if not any(t.data_location == onnx.TensorProto.EXTERNAL for t in graph.graph.initializer):
        shutil.copyfile(source, target)
        return
    full = onnx.load_model(str(source), load_external_data=True)
    large = full.ByteSize() > INLINE_LIMIT  # protobuf cannot hold 2 GiB: big weights stay in a file of their own
    onnx.save_model(full, str(target), save_as_external_data=large, location=f"{MODEL_FILE}.data")


def _manifest(
    source: Path, sig: Signature, model_path: Path, parity: ParityReport | None, notes: list[str]
) -> dict[str, Any]:
    outputs, opset = onnx_graph.summary(model_path)
    return {
        "format": "modelport-bundle",
        "format_version": bundles.FORMAT_VERSION,
        "status": VERIFIED if parity is not None else UNCHECKED,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "source": {"model": str(source.resolve()), "kind": "onnx", "sha256": bundles.sha256(source)},
        "inputs": sig.to_json(),
        "outputs": outputs,
        "opset": {"requested": None, "actual": opset},
        "capture": {"requested": "import", "strategy": "import", "attempts": []},
        "versions": bundles.package_versions(),
        "parity": parity.to_json() if parity else None,
        "timings": {},
        "optimizations": [],
        "notes": notes,
    }
