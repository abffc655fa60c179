"""The shapes a benchmark runs at: ``--batch``, ``--seq`` and ``--shape NAME=SIZE,...`` made into a grid of
symbol sizes, and how a shape is named in records."""

from __future__ import annotations

import itertools

from modelport.errors import UsageError
from modelport.spec import Signature

__all__ = ["shape_grid", "parse_sizes", "shape_text", "outside", "batch_symbol", "seq_symbol", "first_dim_is_symbol"]


def shape_grid(
    sig: Signature, batch: list[int] | None = None, seq: list[int] | None = None, shape: list[str] | None = None
) -> list[dict[str, int]]:
    """Every combination of the requested sizes; symbols not named keep their example size.
    ``batch`` sets axis 0 of the first input, ``seq`` the symbol named ``seq`` (or axis 1 of the first
    integer input), ``shape`` takes ``NAME=SIZE[,SIZE...]`` for any symbol."""
    axes: dict[str, list[int]] = {}
    if batch:
        axes[batch_symbol(sig, "--batch")] = batch
    if seq:
        axes[seq_symbol(sig)] = seq
    for text in shape or []:
        name, sep, values = text.partition("=")
        name = name.strip()
        if not sep or name not in sig.dims:
            raise UsageError(
                f"bad --shape {text!r}", f"write NAME=SIZE[,SIZE...] with NAME one of: {', '.join(sig.dims) or 'none'}"
            )
        axes[name] = parse_sizes(values, f"--shape {name}")
    base = sig.example_sizes()
    return [{**base, **dict(zip(axes, combo, strict=True))} for combo in itertools.product(*axes.values())]


def shape_text(sizes: dict[str, int]) -> str:
    return ",".join(f"{k}={v}" for k, v in sizes.items())


def outside(sig: Signature, sizes: dict[str, int]) -> list[str]:
    return [
        f"{name}={size} lies outside the verified range {sig.dims[name].min}..{sig.dims[name].max}"
        for name, size in sizes.items()
        if name in sig.dims and not sig.dims[name].min <= size <= sig.dims[name].max
    ]


def first_dim_is_symbol(sig: Signature) -> bool:
    return bool(sig.inputs and sig.inputs[0].dims and isinstance(sig.inputs[0].dims[0], str))


def batch_symbol(sig: Signature, flag: str) -> str:
    if first_dim_is_symbol(sig):
        return str(sig.inputs[0].dims[0])
    raise UsageError(f"{flag}: the first input's axis 0 is not a dynamic dimension", "use --shape NAME=SIZE")


def seq_symbol(sig: Signature) -> str:
    if "seq" in sig.dims:
        return "seq"
    for spec in sig.inputs:
        if spec.is_integer and len(spec.dims) > 1 and isinstance(spec.dims[1], str):
            return str(spec.dims[1])
    raise UsageError(
        "--seq: the model has no sequence dimension", f"use --shape NAME=SIZE with NAME one of: {', '.join(sig.dims)}"
    )


def parse_sizes(text: str, flag: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise UsageError(f"bad {flag} {text!r}", "give positive sizes separated by commas, e.g. 1,8")
    return values
