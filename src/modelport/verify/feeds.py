"""Input sets for verification: never only the export example.

Every symbol is tried at its min, its max and an odd size in between; two symbols also at opposite
ends (min with max), which catches dimensions bound to the wrong input. Integers stay inside their
declared range, every value of a bool input is fed, integer scalars at their min and max, and an
integer ``*mask`` input in 0..2 gets a padding pattern (ones then zeros, at least one token) as a
tokenizer would produce.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from modelport.spec import InputSpec, Signature

__all__ = ["Feed", "size_sets", "make_feed", "make_feeds"]


@dataclass
class Feed:
    label: str
    sizes: dict[str, int]
    arrays: dict[str, np.ndarray]


def size_sets(sig: Signature) -> list[tuple[str, dict[str, int]]]:
    """Named assignments of every symbol, deduplicated, in a stable order."""
    dims = sig.dims
    if not dims:
        return [("static", {})]
    names = list(dims)
    candidates = [
        ("min", {n: dims[n].min for n in names}),
        ("max", {n: dims[n].max for n in names}),
        ("mid", {n: _odd_between(dims[n].min, dims[n].max) for n in names}),
    ]
    if len(names) > 1:
        candidates.append(("mixed", {n: dims[n].min if i % 2 else dims[n].max for i, n in enumerate(names)}))
        candidates.append(("mixed", {n: dims[n].max if i % 2 else dims[n].min for i, n in enumerate(names)}))
    seen: list[dict[str, int]] = []
    out = []
    for kind, sizes in candidates:
        if sizes not in seen:
            seen.append(sizes)
            out.append((f"{kind} " + ",".join(f"{n}={v}" for n, v in sizes.items()), sizes))
    return out


def make_feed(
    sig: Signature, sizes: dict[str, int], rng: np.random.Generator, high: bool | None = None, label: str = ""
) -> Feed:
    arrays = {spec.name: np.asarray(_array(spec, sig.shape(spec, sizes), rng, high)) for spec in sig.inputs}
    return Feed(label, sizes, arrays)


def make_feeds(sig: Signature, seed: int = 0) -> list[Feed]:
    """Per size set: random data, or, with control inputs (bools, integer scalars), one feed with all of them
    high (True / max) and one low (False / min). At the middle sizes also the float data negated and scaled
    up, so a branch on a tensor's sign or size takes its other side."""
    rng = np.random.default_rng(seed)
    has_control = any(s.role == "control" for s in sig.inputs)
    floats = [s.name for s in sig.inputs if s.dtype.startswith("float")]
    feeds = []
    for label, sizes in size_sets(sig):
        for high in (True, False) if has_control else (None,):
            suffix = "" if high is None else f" control={'high' if high else 'low'}"
            feed = make_feed(sig, sizes, rng, high, label + suffix)
            feeds.append(feed)
            if label.startswith(("mid", "static")) and floats:
                feeds.append(_scaled(feed, floats, -1.0, " negated"))
                feeds.append(_scaled(feed, floats, 100.0, " x100"))
    return feeds


def _scaled(feed: Feed, names: list[str], factor: float, suffix: str) -> Feed:
    arrays = {k: (v * np.asarray(factor, v.dtype) if k in names else v) for k, v in feed.arrays.items()}
    return Feed(feed.label + suffix, feed.sizes, arrays)


def _array(spec: InputSpec, shape: tuple[int, ...], rng: np.random.Generator, high: bool | None) -> np.ndarray:
    if spec.dtype == "bool":
        if high is None or spec.role != "control":
            return rng.random(shape) < 0.5
        return np.full(shape, high, dtype=bool)
    low_high = spec.value_range()
    if spec.is_integer:
        low, top = int(low_high[0]), int(low_high[1])  # type: ignore[index]
        if spec.role == "control" and high is not None:
            return np.full(shape, top - 1 if high else low, dtype=spec.dtype)
        if spec.name.endswith("mask") and (low, top) == (0, 2) and len(shape) == 2:
            return _padding_mask(shape, rng).astype(spec.dtype)
        return rng.integers(low, top, size=shape).astype(spec.dtype)
    if low_high is None:
        return rng.standard_normal(shape).astype(spec.dtype)
    return rng.uniform(low_high[0], low_high[1], size=shape).astype(spec.dtype)


def _padding_mask(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    batch, seq = shape
    mask = np.zeros(shape, dtype=np.int64)
    lengths = rng.integers(1, seq + 1, size=batch)
    lengths[0] = seq  # one full row, as the longest sentence of a padded batch has
    for row, length in enumerate(lengths):
        mask[row, :length] = 1
    return mask


def _odd_between(low: int, high: int) -> int:
    mid = (low + high) // 2
    if mid % 2 == 0:
        mid += 1 if mid + 1 < high else -1
    return min(max(mid, low), high)
