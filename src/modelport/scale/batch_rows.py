"""``batch``'s rows: read from Parquet (a column per input), a folder of ``.npz``/``.npy`` feeds, or a text
file of sentences (each tokenized on its own). A row that cannot be read carries its reason instead of a
feed, so it reaches the errors file rather than vanishing."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modelport.bundle import Bundle
from modelport.errors import FeedError, UsageError, first_line
from modelport.optimization.data import read_feed_file, read_sentences, tokenizer_folder
from modelport.scale.batch_write import parquet

__all__ = ["Row", "read_rows"]


@dataclass
class Row:
    index: int
    feed: dict[str, np.ndarray] | None  # with a batch dimension of one
    error: str | None = None


def read_rows(path: Path, bundle: Bundle) -> list[Row]:
    if path.is_dir():
        return _rows_from_folder(path, bundle)
    if not path.is_file():
        raise UsageError(f"--input {path} does not exist", "pass a Parquet file, a folder of .npz feeds or a .txt file")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return _rows_from_parquet(path, bundle)
    if suffix in (".txt", ".text"):
        return _rows_from_text(path, bundle)
    raise UsageError(f"--input {path} is not .parquet, .txt or a folder", "convert it to Parquet: a column per input")


def _rows_from_parquet(path: Path, bundle: Bundle) -> list[Row]:
    pq = parquet()
    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises ArrowInvalid, OSError...
        raise UsageError(f"{path} is not a readable Parquet file ({first_line(exc)[:160]})", "") from None
    specs = bundle.signature.inputs
    missing = [s.name for s in specs if s.name not in table.column_names]
    if missing:
        raise UsageError(
            f"{path} has no column for input(s) {', '.join(missing)}",
            f"one column per input: {', '.join(s.name for s in specs)}",
        )
    columns = {s.name: table.column(s.name).to_pylist() for s in specs}
    rows = []
    for index in range(table.num_rows):
        try:
            feed = {s.name: _cell(columns[s.name][index], s.name, s.dtype) for s in specs}
            rows.append(Row(index, feed))
        except FeedError as exc:
            rows.append(Row(index, None, exc.one_line()))
    return rows


def _cell(value: Any, name: str, dtype: str) -> np.ndarray:
    if value is None:
        raise FeedError(f"input {name!r} is empty in this row", "fill every cell")
    try:
        array = np.asarray(value)
    except ValueError:
        raise FeedError(f"input {name!r} is ragged in this row", "every row's tensor must be rectangular") from None
    if array.dtype == object or not np.can_cast(array.dtype, dtype, "same_kind"):
        raise FeedError(f"input {name!r} holds {array.dtype} values, the model expects {dtype}", "")
    return array.astype(dtype)[None]


def _rows_from_folder(path: Path, bundle: Bundle) -> list[Row]:
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in (".npz", ".npy"))
    if not files:
        raise UsageError(f"--input folder {path} holds no .npz or .npy files", "one feed per file: numpy.savez(...)")
    rows: list[Row] = []
    for file in files:
        try:
            feed = read_feed_file(file, bundle)
        except UsageError as exc:
            rows.append(Row(len(rows), None, exc.one_line()))
            continue
        counts = {a.shape[0] if a.ndim else 1 for a in feed.values()}
        if len(counts) != 1 or not all(a.ndim for a in feed.values()):
            rows.append(Row(len(rows), None, f"{file.name}: inputs disagree on the rows along the batch dimension"))
            continue
        for i in range(counts.pop()):
            rows.append(Row(len(rows), {n: a[i : i + 1] for n, a in feed.items()}))
    return rows


def _rows_from_text(path: Path, bundle: Bundle) -> list[Row]:
    from modelport.sources.hf import load_tokenizer

    tokenizer = load_tokenizer(tokenizer_folder(bundle))
    sig = bundle.signature
    axes = sig.inputs[0].dims
    seq = sig.dims.get(axes[1]) if len(axes) > 1 and isinstance(axes[1], str) else None
    specs = sig.inputs
    rows = []
    for index, sentence in enumerate(read_sentences(path)):
        limit = {"truncation": True, "max_length": seq.max} if seq else {}
        encoded = tokenizer(sentence, return_tensors="np", **limit)
        missing = [s.name for s in specs if s.name not in encoded]
        if missing:
            raise UsageError(
                f"the tokenizer gives {', '.join(encoded)} but the bundle also needs {', '.join(missing)}",
                "pass the rows as Parquet with every input",
            )
        rows.append(Row(index, {s.name: np.asarray(encoded[s.name]).astype(s.dtype) for s in specs}))
    return rows
