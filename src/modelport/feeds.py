"""Input sets for verification: never only the export example, and never outside the declared domain.

Every symbol is tried at its min, its max and an odd size in between; two symbols also at opposite
ends (min with max), which catches dimensions bound to the wrong input. Integers stay inside their
declared range, every value of a bool input is fed, integer scalars at their min and max.

At the middle sizes come the feeds that push values to the edges:

* a float input with a declared ``LOW..HIGH`` gets its ends: one feed with every value at LOW, one at
  HIGH (a loop or branch on a sum or a norm takes its extreme count or its other side there);
* a float input without a range is fed negated (``stress="negated"``: a branch on a sign takes its other
  side) and scaled by 100 (``stress="x100"``: a branch on a magnitude does). These two leave the data's
  usual domain on purpose, so they are marked, and ``parity`` judges the x100 feed at a tolerance scaled
  to its outputs. A declared range is a promise about the data, so a ranged input is never fed outside
  it (the model may not even end there: ``while x.sum() < 100: x = x * 2`` on a negated feed).

Masks look like a tokenizer's: a rank-2 input whose name ends with ``mask`` gets padding rows, never an
all-padding row. An integer one in ``0..2`` is 1 = keep (``attention_mask``): ones, then zeros, at least
one token, the first row full. A bool one has two conventions: True = attend (``attention_mask``,
``attn_mask``, SDPA) and True = padded (``key_padding_mask``, nn.MultiheadAttention / nn.Transformer).
Its rows follow the convention its name suggests (``pad`` in the name: True = padded; otherwise True =
keep), valid positions first, and, whenever ``seq > 1``, every row holds both a True and a False, so
that under either reading no row is all padding (which is NaN in PyTorch's attention). At ``seq == 1``
the one position is kept under the name's reading.

Every array is a numpy array, scalars included (0-d), in the declared dtype; float data is drawn in
float32 or float64 directly (float16 through float32), never through float64 first.
"""

from __future__ import annotations

import difflib
import zipfile
from dataclasses import dataclass
from typing import Any

import numpy as np

from modelport.errors import BundleError, FeedError
from modelport.spec import InputSpec, Signature

__all__ = [
    "Feed", "size_sets", "make_feed", "make_feeds", "check_names", "check_feed", "as_arrays", "STRESS",
    "write_feed_set", "read_feed_set",
]  # fmt: skip

STRESS = ("negated", "x100")  # the values of Feed.stress: feeds outside the data's usual domain


@dataclass
class Feed:
    label: str
    sizes: dict[str, int]
    arrays: dict[str, np.ndarray]
    stress: str = ""  # "" inside the declared domain; "negated" or "x100" outside it, on purpose

    def __post_init__(self) -> None:
        # runtimes take arrays, not numpy scalars (onnxruntime: "Unable to handle object of type numpy.float32")
        self.arrays = {name: np.asarray(value) for name, value in self.arrays.items()}


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
    with np.errstate(over="ignore"):  # a range near the dtype's limits is the user's to declare
        arrays = {spec.name: _array(spec, sig.shape(spec, sizes), rng, high) for spec in sig.inputs}
    return Feed(label, sizes, arrays)


def make_feeds(sig: Signature, seed: int = 0) -> list[Feed]:
    """Per size set: random data, or, with control inputs (bools, integer scalars), one feed with all of them
    high (True / max) and one low (False / min). At the middle sizes also the edge feeds (module docstring):
    ranged floats at their ends, unranged floats negated and scaled up."""
    rng = np.random.default_rng(seed)
    has_control = any(s.role == "control" and not _is_mask(s) for s in sig.inputs)
    floats = [s for s in sig.inputs if s.dtype.startswith("float")]
    ranged = [s for s in floats if s.value_range() is not None]
    free = [s.name for s in floats if s.value_range() is None]
    feeds = []
    for label, sizes in size_sets(sig):
        for high in (True, False) if has_control else (None,):
            suffix = "" if high is None else f" control={'high' if high else 'low'}"
            feed = make_feed(sig, sizes, rng, high, label + suffix)
            feeds.append(feed)
            if not label.startswith(("mid", "static")):
                continue
            if ranged:
                feeds.append(_at_ends(feed, ranged, low=True))
                feeds.append(_at_ends(feed, ranged, low=False))
            if free:
                feeds.append(_scaled(feed, free, -1.0, "negated"))
                feeds.append(_scaled(feed, free, 100.0, "x100"))
    return feeds


def _scaled(feed: Feed, names: list[str], factor: float, stress: str) -> Feed:
    arrays = {k: (v * np.asarray(factor, v.dtype) if k in names else v) for k, v in feed.arrays.items()}
    return Feed(f"{feed.label} {stress}", feed.sizes, arrays, stress)


def _at_ends(feed: Feed, specs: list[InputSpec], low: bool) -> Feed:
    arrays = dict(feed.arrays)
    for spec in specs:
        value = spec.value_range()[0 if low else 1]  # type: ignore[index]
        arrays[spec.name] = np.full(arrays[spec.name].shape, value, dtype=spec.dtype)
    return Feed(f"{feed.label} at {'low' if low else 'high'}", feed.sizes, arrays)


def _array(spec: InputSpec, shape: tuple[int, ...], rng: np.random.Generator, high: bool | None) -> np.ndarray:
    if spec.dtype == "bool":
        if _is_mask(spec):
            return _bool_mask(shape, rng, spec.name)
        if high is None or spec.role != "control":
            return np.asarray(rng.random(shape) < 0.5)
        return np.full(shape, high, dtype=bool)
    low_high = spec.value_range()
    if spec.is_integer:
        low, top = int(low_high[0]), int(low_high[1])  # type: ignore[index]
        if spec.role == "control" and high is not None:
            return np.full(shape, top - 1 if high else low, dtype=spec.dtype)
        if _is_mask(spec) and (low, top) == (0, 2):
            return _padding_mask(shape, rng).astype(spec.dtype)
        return np.asarray(rng.integers(low, top, size=shape), dtype=spec.dtype)
    return _floats(spec.dtype, shape, rng, low_high)


def _floats(
    dtype: str, shape: tuple[int, ...], rng: np.random.Generator, value_range: tuple[float, float] | None
) -> np.ndarray:
    """Normal data, or uniform in the declared range, drawn in the dtype (numpy draws float32 and float64
    only: float16 comes through float32)."""
    work = np.float64 if dtype == "float64" else np.float32
    data: np.ndarray
    if value_range is None:
        data = rng.standard_normal(shape, dtype=work)
    else:
        low, high = value_range
        data = rng.random(shape, dtype=work) * work(high - low) + work(low)
        data = np.clip(data, work(low), work(high))  # rounding may not step past an end
    return np.asarray(data, dtype=dtype)


def _is_mask(spec: InputSpec) -> bool:
    return spec.name.lower().endswith("mask") and len(spec.dims) == 2


def _padding_mask(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    batch, seq = shape
    mask = np.zeros(shape, dtype=np.int64)
    lengths = rng.integers(1, seq + 1, size=batch)
    lengths[0] = seq  # one full row, as the longest sentence of a padded batch has
    for row, length in enumerate(lengths):
        mask[row, :length] = 1
    return mask


def _bool_mask(shape: tuple[int, ...], rng: np.random.Generator, name: str) -> np.ndarray:
    """Valid positions first, then padding; with seq > 1 every row has 1..seq-1 valid positions, so it holds
    a True and a False and keeps a position under either convention (module docstring)."""
    batch, seq = shape
    keep = np.ones(shape, dtype=bool)
    if seq > 1:
        lengths = rng.integers(1, seq, size=batch)
        lengths[0] = seq - 1  # the longest row: one padded position, no more can be left out
        for row, length in enumerate(lengths):
            keep[row, length:] = False
    return ~keep if "pad" in name.lower() else keep


def _odd_between(low: int, high: int) -> int:
    mid = (low + high) // 2
    if mid % 2 == 0:
        mid += 1 if mid + 1 < high else -1
    return min(max(mid, low), high)


def as_arrays(feed: dict[str, Any]) -> dict[str, Any]:
    """numpy arrays as they are, torch tensors (and numpy/Python scalars) as numpy arrays; anything a
    runner prepared itself (an OrtValue, a tensor already on the GPU) is left for that runner."""
    out = {}
    for name, value in feed.items():
        if hasattr(value, "detach") and getattr(getattr(value, "device", None), "type", "cpu") == "cpu":
            value = value.detach().numpy()
        elif isinstance(value, (int, float, bool, np.generic)):
            value = np.asarray(value)
        if isinstance(value, np.ndarray) and not value.dtype.isnative:  # big-endian .npy: runtimes read raw bytes
            value = value.astype(value.dtype.newbyteorder("="))
        out[name] = value
    return out


def check_names(names: list[str], feed: dict[str, Any], complete: bool = True) -> None:
    """A feed name the model does not have, with the closest valid one; then, with ``complete``, the inputs
    left unfed (without it the runtime says, and its translator knows which of them are weights)."""
    for name in feed:
        if name not in names:
            close = difflib.get_close_matches(name, names, n=1)
            raise FeedError(
                f"the model has no input {name!r}",
                f"inputs are {', '.join(names)}" + (f" (did you mean {close[0]!r}?)" if close else ""),
            )
    missing = [n for n in names if n not in feed]
    if missing and complete:
        raise FeedError(
            f"no feed for input(s) {', '.join(missing)}", f"feed every input: {', '.join(names)} (--feed NAME=FILE.npy)"
        )


RANGE_FIX = "--no-range-check (check_ranges=False) runs it anyway"


def check_feed(sig: Signature, feeds: dict[str, np.ndarray], check_ranges: bool = True) -> list[str]:
    """Raise FeedError on a wrong name, dtype, rank or fixed size, and (``check_ranges``) on a size outside
    its declared bounds or a value outside its input's declared range; with ``check_ranges`` off those
    come back as warnings instead. Every path that runs a bundle (run, load, serve, batch, Triton, Ray)
    comes through here: ONNX ``Gather`` wraps a negative id to the end of the vocabulary, and a dim the
    export never saw may answer wrong, so neither may run unnoticed."""
    check_names([s.name for s in sig.inputs], feeds)
    problems: list[tuple[str, str]] = []
    seen: dict[str, tuple[int, str]] = {}
    for spec in sig.inputs:
        array = feeds[spec.name]
        if not isinstance(array, np.ndarray):  # prepared by the runner itself (an OrtValue, a GPU tensor)
            continue
        if str(array.dtype) != spec.dtype:
            raise FeedError(
                f"input {spec.name!r} is {array.dtype}, the model expects {spec.dtype}",
                f"convert it: array.astype('{spec.dtype}')",
            )
        if array.ndim != len(spec.dims):
            raise FeedError(
                f"input {spec.name!r} has shape {list(array.shape)}, the model expects rank "
                f"{len(spec.dims)} ({', '.join(map(str, spec.dims)) or 'a scalar'})",
                "reshape the array to the declared dims",
            )
        for axis, (want, got) in enumerate(zip(spec.dims, array.shape, strict=True)):
            if isinstance(want, int):
                if want != got:
                    raise FeedError(
                        f"input {spec.name!r} axis {axis} is {got}, the model was exported with it fixed to {want}",
                        f"re-export with a symbol for that axis (e.g. --input {spec.name}:...)"
                        " and --dim to make it dynamic",
                    )
                continue
            if want in seen and seen[want][0] != got:
                raise FeedError(
                    f"dimension {want!r} is {seen[want][0]} in {seen[want][1]!r} but {got} in {spec.name!r}",
                    "inputs that share a dimension must agree on its size",
                )
            seen[want] = (got, spec.name)
            dim = sig.dims[want]
            if not dim.min <= got <= dim.max and not any(p[0].startswith(f"dimension {want!r} ") for p in problems):
                where = f"dimension {want!r} is {got} in input {spec.name!r}"
                problems.append((
                    f"{where}, outside its declared range {dim.min}..{dim.max}",
                    f"feed sizes within it, or re-export with --dim {want}=MIN..MAX to verify more",
                ))  # fmt: skip
        value = _value_problem(spec, array)
        if value is not None:
            problems.append((value, "feed values inside it (the range the bundle was verified on)"))
    if problems and check_ranges:
        message, fix = problems[0]
        raise FeedError(message, f"{fix}; or {RANGE_FIX}")
    return [f"{message} (range check off)" for message, _ in problems]


def _value_problem(spec: InputSpec, array: np.ndarray) -> str | None:
    """Why ``array`` holds a value its input's declared range excludes (integers half-open; floats closed,
    so NaN and infinities are outside), or None. Inputs without a declared range are not judged. Two
    passes (min, max) when every value is inside; the mask that finds the first offender only when not."""
    if spec.low is None or spec.high is None or array.size == 0 or array.dtype == bool:
        return None
    low, high = (int(spec.low), int(spec.high)) if spec.is_integer else (spec.low, spec.high)
    inside = (lambda a: (a >= low) & (a < high)) if spec.is_integer else (lambda a: (a >= low) & (a <= high))
    if inside(np.array([array.min(), array.max()])).all():
        return None
    where = tuple(int(i) for i in np.argwhere(~inside(array))[0])
    span = f"{low}..{high} (integers {low} to {high - 1})" if spec.is_integer else f"{low:g}..{high:g}"
    at = f" at {list(where)}" if where else ""
    return f"input {spec.name!r} holds {array[where].item()!r}{at}, outside its declared range {span}"


FEED_SET_LIMIT = 256 * 2**20  # bytes of arrays a stored feed set may declare


def write_feed_set(path: Any, feeds: list[dict[str, np.ndarray]]) -> None:
    """Feeds as one ``.npz`` (members ``0003.input_ids``): what ``read_feed_set`` reads back, in order."""
    np.savez(path, **{f"{i:04d}.{name}": array for i, feed in enumerate(feeds) for name, array in feed.items()})


def read_feed_set(path: Any) -> list[dict[str, np.ndarray]]:
    """The feeds ``write_feed_set`` wrote, never unpickled; a file that declares more than ``FEED_SET_LIMIT``
    bytes, or members of another shape, is refused unread."""
    fix = "re-run `modelport optimize`, which writes this file"
    try:
        with zipfile.ZipFile(path) as archive:
            declared = sum(info.file_size for info in archive.infolist())
        if declared > FEED_SET_LIMIT:
            raise BundleError(f"{path} declares {declared} bytes of feeds (limit {FEED_SET_LIMIT})", fix)
        feeds: dict[int, dict[str, np.ndarray]] = {}
        with np.load(path, allow_pickle=False) as data:
            for key in data.files:
                index, _, name = key.partition(".")
                if not (index.isdigit() and name and name.isprintable() and "/" not in name):  # "input_1:0" too
                    raise BundleError(f"{path} holds a member {key!r} that is not INDEX.INPUT", fix)
                feeds.setdefault(int(index), {})[name] = np.asarray(data[key])
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise BundleError(f"{path} is not a readable feed set ({str(exc)[:120]})", fix) from None
    return [feeds[i] for i in sorted(feeds)]
