"""Input specs: what the exported model takes, with its dynamic dimensions and value ranges.

``--input name:dims[:dtype[:low..high]]`` and ``--dim NAME=MIN..MAX[@OPT]`` parse into
``InputSpec`` and ``Dim``. A symbol that appears in two inputs is one dimension. Integer ranges
are half-open (``0..30522`` gives ids 0 to 30521, the way a vocabulary size reads).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from modelport.errors import ResourceError, UsageError
from modelport.machine import available_memory

__all__ = [
    "Dim",
    "InputSpec",
    "Signature",
    "parse_input",
    "parse_dim",
    "range_problem",
    "DTYPES",
    "MAX_DIM",
]

INPUT_FORM = "NAME:DIMS[:DTYPE[:LOW..HIGH]], e.g. x:batch,3,224,224 or input_ids:batch,seq:int64:0..30522"
DIM_FORM = "NAME=MIN..MAX[@OPT], e.g. batch=1..32@8"

# canonical numpy dtype name -> accepted spellings
DTYPES: dict[str, tuple[str, ...]] = {
    "float32": ("float32", "float", "fp32", "f32"),
    "float16": ("float16", "half", "fp16", "f16"),
    "float64": ("float64", "double", "fp64", "f64"),
    "int64": ("int64", "long", "i64"),
    "int32": ("int32", "int", "i32"),
    "int8": ("int8", "i8"),
    "uint8": ("uint8", "u8"),
    "bool": ("bool",),
}
_ALIASES = {alias: name for name, aliases in DTYPES.items() for alias in aliases}
_SYMBOL = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_DIM = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(\d+)\.\.(\d+)(?:@(\d+))?$")

DEFAULT_MIN = 1
DEFAULT_MAX = 32
DEFAULT_INT_RANGE = (0, 10)
MAX_DIM = 2**31 - 1  # what ONNX Runtime and numpy index with; any larger size is a typo or an attack
FEED_COPIES = 8


@dataclass(frozen=True)
class Dim:
    """A named dynamic dimension with the sizes it must work at."""

    name: str
    min: int = DEFAULT_MIN
    max: int = DEFAULT_MAX
    opt: int | None = None  # the export example; chosen by Signature when None

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "min": self.min, "opt": self.opt, "max": self.max}


@dataclass(frozen=True)
class InputSpec:
    name: str
    dims: tuple[int | str, ...]
    dtype: str = "float32"
    low: float | None = None
    high: float | None = None

    @property
    def symbols(self) -> list[str]:
        return [d for d in self.dims if isinstance(d, str)]

    @property
    def is_integer(self) -> bool:
        return self.dtype.startswith(("int", "uint"))

    @property
    def role(self) -> str:
        """``control`` for inputs that usually steer the computation (flags, counts), else ``data``."""
        return "control" if self.dtype == "bool" or (self.is_integer and not self.dims) else "data"

    def value_range(self) -> tuple[float, float] | None:
        if self.low is not None and self.high is not None:
            return (self.low, self.high)
        if self.is_integer:
            return DEFAULT_INT_RANGE
        return None

    def __str__(self) -> str:
        text = f"{self.name}:{','.join(str(d) for d in self.dims)}:{self.dtype}"
        if self.low is not None:
            text += f":{_num(self.low)}..{_num(self.high)}"
        return text


@dataclass
class Signature:
    """The inputs of a model and the bounds of every symbol they use."""

    inputs: list[InputSpec]
    dims: dict[str, Dim] = field(default_factory=dict)

    @classmethod
    def build(cls, inputs: list[InputSpec], dims: list[Dim] | dict[str, Dim] = ()) -> Signature:
        given = dict(dims) if isinstance(dims, dict) else {d.name: d for d in dims}
        names = [s.name for s in inputs]
        if not inputs:
            raise UsageError("no inputs given", f"add --input {INPUT_FORM}")
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise UsageError(f"input {duplicates[0]!r} is declared twice", "give each --input a unique name")
        symbols: list[str] = []
        for spec in inputs:
            symbols += [s for s in spec.symbols if s not in symbols]
        unknown = sorted(set(given) - set(symbols))
        if unknown:
            raise UsageError(
                f"--dim {unknown[0]} names no symbol of the inputs",
                f"symbols in the inputs: {', '.join(symbols) or 'none'}",
            )
        for spec in inputs:
            bad = [d for d in spec.dims if not isinstance(d, str) and (not isinstance(d, int) or d < 1)]
            if bad:
                raise UsageError(f"input {spec.name!r} has size {bad[0]!r}", "every fixed size must be an integer >= 1")
        for dim in given.values():
            if not 0 <= dim.min <= dim.max or (dim.opt is not None and not dim.min <= dim.opt <= dim.max):
                raise UsageError(
                    f"dimension {dim.name!r} has bounds {dim.min}..{dim.max}" + (f"@{dim.opt}" if dim.opt else ""),
                    f"need 0 <= MIN <= OPT <= MAX: {DIM_FORM}",
                )
        resolved: dict[str, Dim] = {}
        taken: set[int] = set()
        for name in symbols:
            dim = given.get(name, Dim(name))
            if dim.opt is None:
                dim = replace(dim, opt=_pick_example(dim, taken))
            taken.add(dim.opt)  # type: ignore[arg-type]
            resolved[name] = dim
        return cls(list(inputs), resolved)

    def shape(self, spec: InputSpec, sizes: dict[str, int]) -> tuple[int, ...]:
        return tuple(sizes[d] if isinstance(d, str) else d for d in spec.dims)

    def example_sizes(self) -> dict[str, int]:
        return {name: dim.opt for name, dim in self.dims.items()}  # type: ignore[misc]

    def to_json(self) -> list[dict[str, Any]]:
        return [_input_json(spec, self.dims) for spec in self.inputs]

    def check_fits_memory(self, copies: int = FEED_COPIES) -> None:
        """Refuse, before anything is allocated, feeds that cannot fit: verification holds ``copies`` of the
        largest feed (several feeds at the max sizes, PyTorch's answers, the runtime's buffers)."""
        sizes = {name: dim.max for name, dim in self.dims.items()}
        need = {s.name: math.prod(self.shape(s, sizes)) * np.dtype(s.dtype).itemsize for s in self.inputs}
        available = available_memory()
        if available is None or sum(need.values()) * copies <= available:
            return
        name = max(need, key=need.__getitem__)
        spec = next(s for s in self.inputs if s.name == name)
        symbols = [d for d in spec.dims if isinstance(d, str)]
        fix = f"lower the MAX of --dim {symbols[0]}" if symbols else f"use smaller sizes in --input {name}"
        raise ResourceError(
            f"input {name!r} at its largest shape {list(self.shape(spec, sizes))} ({spec.dtype}) needs "
            f"{_gib(need[name])}, and verification holds about {copies} such feeds; {_gib(available)} of memory "
            "is available",
            fix,
        )

    @classmethod
    def from_json(cls, data: list[dict[str, Any]]) -> Signature:
        inputs, dims = [], {}
        for item in data:
            shape: list[int | str] = []
            for d in item["dims"]:
                if isinstance(d, dict):
                    dims[d["name"]] = Dim(d["name"], d["min"], d["max"], d["opt"])
                    shape.append(d["name"])
                else:
                    shape.append(int(d))
            low, high = item.get("range") or (None, None)
            inputs.append(InputSpec(item["name"], tuple(shape), item["dtype"], low, high))
        return cls(inputs, dims)

    def __str__(self) -> str:
        parts = [str(s) for s in self.inputs]
        parts += [f"{d.name}={d.min}..{d.max}@{d.opt}" for d in self.dims.values()]
        return " ".join(parts)


def range_problem(dtype: str, low: float, high: float) -> str | None:
    """Why ``low..high`` cannot be sampled in ``dtype`` (integers half-open), or None when it can."""
    if dtype.startswith(("int", "uint")):
        info = np.iinfo(dtype)
        if low < info.min or high - 1 > info.max:
            return f"does not fit {dtype} ({info.min}..{info.max + 1})"
        return None
    limit = float(np.finfo(dtype).max) / 2  # /2: HIGH - LOW must be finite too
    if not (math.isfinite(low) and math.isfinite(high)) or max(abs(low), abs(high)) > limit:
        return f"must be finite numbers within +-{limit:.3g} for {dtype}"
    return None


def _gib(nbytes: int) -> str:
    return f"{nbytes / 2**30:.1f} GiB" if nbytes >= 2**30 else f"{nbytes / 2**20:.0f} MiB"


def parse_input(text: str) -> InputSpec:
    """Parse ``name:dims[:dtype[:low..high]]``."""
    parts = text.split(":")
    if len(parts) < 2 or len(parts) > 4:
        raise _bad_input(text, "expected 2 to 4 ':'-separated fields")
    name, dims_text = parts[0], parts[1]
    if not _SYMBOL.match(name):
        raise _bad_input(text, f"input name {name!r} is not an identifier")
    dims: list[int | str] = []
    for token in (t.strip() for t in dims_text.split(",")) if dims_text else []:
        if not token:
            raise _bad_input(text, "an empty dimension between commas (write a size or a symbol for every axis)")
        if token.isdigit():
            if int(token) < 1:
                raise _bad_input(text, f"dimension {token} is empty; every size must be at least 1")
            if int(token) > MAX_DIM:
                raise _bad_input(text, f"dimension {token} is larger than {MAX_DIM}")
            dims.append(int(token))
        elif _SYMBOL.match(token):
            dims.append(token)
        else:
            raise _bad_input(text, f"dimension {token!r} is neither a size nor a symbol name")
    dtype_text = parts[2] if len(parts) > 2 and parts[2] else "float32"
    dtype = _ALIASES.get(dtype_text.lower())
    if dtype is None:
        raise _bad_input(text, f"unknown dtype {dtype_text!r} (known: {', '.join(DTYPES)})")
    low = high = None
    if len(parts) == 4:
        if dtype == "bool":
            raise _bad_input(text, "a bool input takes no value range")
        low, high = _parse_range(text, parts[3], integer=dtype.startswith(("int", "uint")))
        problem = range_problem(dtype, low, high)
        if problem:
            raise _bad_input(text, f"range {parts[3]!r} {problem}")
    return InputSpec(name, tuple(dims), dtype, low, high)


def parse_dim(text: str) -> Dim:
    """Parse ``NAME=MIN..MAX[@OPT]``."""
    match = _DIM.match(text.replace(" ", ""))
    if not match:
        raise UsageError(f"bad --dim {text!r}", f"expected {DIM_FORM}")
    name, lo, hi, opt = match.group(1), int(match.group(2)), int(match.group(3)), match.group(4)
    if lo < 1 or hi <= lo or hi > MAX_DIM:
        raise UsageError(
            f"bad --dim {text!r}: need 1 <= MIN < MAX <= {MAX_DIM}",
            "a dimension fixed to one size is written as that number in --input",
        )
    if opt is not None and not lo <= int(opt) <= hi:
        raise UsageError(f"bad --dim {text!r}: OPT {opt} lies outside {lo}..{hi}", f"expected {DIM_FORM}")
    return Dim(name, lo, hi, int(opt) if opt is not None else None)


def _pick_example(dim: Dim, taken: set[int]) -> int:
    # The export example must not be 0 or 1 (torch.export specializes those) and should differ
    # from other symbols' examples, so an accidental equality between two dims is not baked in.
    start = max(dim.min, 2)
    for size in range(start, dim.max + 1):
        if size not in taken:
            return size
    return min(start, dim.max)


def _parse_range(text: str, rng: str, integer: bool) -> tuple[float, float]:
    bounds = rng.split("..")
    try:
        low, high = (int(b) if integer else float(b) for b in bounds)
    except ValueError:
        raise _bad_input(text, f"range {rng!r} is not LOW..HIGH with numbers") from None
    if not (math.isfinite(low) and math.isfinite(high)):
        raise _bad_input(text, f"range {rng!r} must be finite numbers")
    if high <= low:
        raise _bad_input(text, f"range {rng!r} is empty (HIGH must exceed LOW)")
    return low, high


def _bad_input(text: str, why: str) -> UsageError:
    return UsageError(f"bad --input {text!r}: {why}", f"expected {INPUT_FORM}")


def _input_json(spec: InputSpec, dims: dict[str, Dim]) -> dict[str, Any]:
    return {
        "name": spec.name,
        "dtype": spec.dtype,
        "dims": [dims[d].to_json() if isinstance(d, str) else d for d in spec.dims],
        "range": [spec.low, spec.high] if spec.low is not None else None,
        "role": spec.role,
    }


def _num(value: float | None) -> str:
    return str(int(value)) if value is not None and float(value).is_integer() else str(value)
