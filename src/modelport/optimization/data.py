"""The feeds an optimization is measured on: the user's data, split into a calibration part (what the
search may look at) and a held-out part (what the chosen candidate is judged on), or generated feeds
when there is no data, said loudly.

``data`` is a folder of ``.npz`` files (one feed each, arrays by input name) or, for a single-input
model, ``.npy`` files; a text file of sentences, one per line, tokenized with the tokenizer of the
bundle's transformers source (``hf:DIR`` or ``demo:minilm``); or the same in Python: a list of feeds
(dicts of arrays) or of strings. Files are read with ``allow_pickle=False``.
"""

from __future__ import annotations

import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modelport.bundle import Bundle
from modelport.errors import FeedError, UsageError, as_path, first_line
from modelport.feeds import as_arrays, check_feed, make_feed
from modelport.runtime.run import read_npy

__all__ = ["Data", "load_data", "MIN_FEEDS", "DEFAULT_SEQ", "read_sentences", "read_feed_file", "tokenizer_folder"]

MIN_FEEDS = 4  # two to calibrate, two to judge: fewer cannot tell a candidate from luck
MAX_FEEDS = 2000
GENERATED = 24
DEFAULT_SEQ = 128
_TEXT = (".txt", ".text")


@dataclass
class Data:
    calibration: list[dict[str, np.ndarray]]
    held_out: list[dict[str, np.ndarray]]
    origin: str  # "sentences.txt (120 sentences)", "generated"

    @property
    def generated(self) -> bool:
        return self.origin == "generated"

    def describe(self) -> dict[str, Any]:
        return {"origin": self.origin, "calibration": len(self.calibration), "held_out": len(self.held_out)}


def load_data(
    data: Any, bundle: Bundle, *, seq: int = DEFAULT_SEQ, sizes: dict[str, int] | None = None, held_out: float = 0.5
) -> Data:
    """Feeds checked against the bundle's inputs, split: the first part calibrates, the rest is held out.
    Generated feeds (no ``data``) have the example sizes, or ``sizes``."""
    if data is None:
        feeds, origin = _generated(bundle, sizes), "generated"
    elif isinstance(data, (str, Path)) or hasattr(data, "__fspath__"):
        feeds, origin = _from_path(Path(as_path(data, "--data")), bundle, seq)
    elif isinstance(data, Sequence) and data and all(isinstance(item, str) for item in data):
        feeds, origin = _tokenized(list(data), bundle, seq), f"{len(data)} sentences"
    elif isinstance(data, Sequence) and all(isinstance(item, dict) for item in data):
        feeds, origin = [as_arrays(dict(item)) for item in data], f"{len(data)} feeds"
    else:
        raise UsageError(
            f"optimize's data cannot be a {type(data).__name__}",
            "pass a folder of .npz feeds, a text file of sentences, or a list of feeds (dicts of arrays)",
        )
    if len(feeds) < MIN_FEEDS:
        raise UsageError(
            f"--data holds {len(feeds)} feed(s); optimize needs at least {MIN_FEEDS} (half calibrate, half judge)",
            "add more samples; a few dozen representative ones are better",
        )
    feeds = feeds[:MAX_FEEDS]
    for index, feed in enumerate(feeds):
        try:
            check_feed(bundle.signature, feed)
        except FeedError as exc:
            raise UsageError(f"--data feed {index + 1} does not fit the bundle: {exc.message}", _FEED_FIX) from None
    cut = max(2, min(len(feeds) - 2, round(len(feeds) * (1 - held_out))))
    return Data(feeds[:cut], feeds[cut:], origin)


_FEED_FIX = "each feed needs every input of the bundle (`modelport graph DIR` lists them) at allowed sizes and dtypes"


def _generated(bundle: Bundle, sizes: dict[str, int] | None) -> list[dict[str, np.ndarray]]:
    sig = bundle.signature
    rng = np.random.default_rng(1)
    return [make_feed(sig, sizes or sig.example_sizes(), rng).arrays for _ in range(GENERATED)]


def _from_path(path: Path, bundle: Bundle, seq: int) -> tuple[list[dict[str, np.ndarray]], str]:
    if path.is_file() and path.suffix.lower() in _TEXT:
        lines = read_sentences(path)[:MAX_FEEDS]
        return _tokenized(lines, bundle, seq), f"{path.name} ({len(lines)} sentences)"
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in (".npz", ".npy") and p.is_file())
        if not files:
            raise UsageError(f"--data folder {path} holds no .npz or .npy files", _DATA_FIX)
        return [read_feed_file(p, bundle) for p in files[:MAX_FEEDS]], f"{path.name}/ ({len(files)} files)"
    why = "does not exist" if not path.exists() else "is neither a folder nor a .txt file"
    raise UsageError(f"--data {str(path)!r} {why}", _DATA_FIX)


_DATA_FIX = (
    "pass a folder of .npz files (one feed each: numpy.savez(FILE, input_ids=..., ...)) or a .txt file of sentences"
)


def read_feed_file(path: Path, bundle: Bundle) -> dict[str, np.ndarray]:
    """One feed from a .npz (arrays by input name) or a .npy (a one-input bundle), never unpickled."""
    names = [s.name for s in bundle.signature.inputs]
    if path.suffix.lower() == ".npy":
        if len(names) != 1:
            raise UsageError(f"{path} is one array but the bundle has {len(names)} inputs", "save each feed as .npz")
        return {names[0]: read_npy(path)}
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {key: np.asarray(archive[key]) for key in archive.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise UsageError(
            f"{path} is not a readable .npz of numeric arrays ({first_line(exc)[:120]})", _DATA_FIX
        ) from None


def read_sentences(path: Path) -> list[str]:
    """The non-empty lines of a UTF-8 text file, stripped."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(
            f"cannot read --data {path}: {first_line(exc)}", "pass a UTF-8 text file, one sentence per line"
        ) from None
    return [line.strip() for line in text.splitlines() if line.strip()]


def _tokenized(sentences: list[str], bundle: Bundle, seq: int) -> list[dict[str, np.ndarray]]:
    from modelport.sources.hf import load_tokenizer

    tokenizer = load_tokenizer(tokenizer_folder(bundle))
    sig = bundle.signature
    axes = sig.inputs[0].dims  # token ids are [batch, seq]: the second axis is the sequence
    seq_dim = sig.dims.get(axes[1]) if len(axes) > 1 and isinstance(axes[1], str) else None
    length = min(seq, seq_dim.max) if seq_dim is not None else seq
    names = [s.name for s in sig.inputs]
    feeds = []
    for sentence in sentences:
        encoded = tokenizer(sentence, padding="max_length", truncation=True, max_length=length, return_tensors="np")
        missing = [n for n in names if n not in encoded]
        if missing:
            raise UsageError(
                f"the tokenizer gives {', '.join(encoded)} but the bundle also needs {', '.join(missing)}",
                "pass the data as .npz feeds with every input",
            )
        feeds.append({n: np.asarray(encoded[n]).astype(sig.inputs[i].dtype) for i, n in enumerate(names)})
    return feeds


def tokenizer_folder(bundle: Bundle) -> Path:
    """The transformers folder whose tokenizer the bundle's text goes through."""
    source = bundle.source or ""
    if source == "demo:minilm":
        from modelport.sources.demo import minilm_folder

        return minilm_folder()
    if source.startswith("hf:"):
        return Path(source.removeprefix("hf:"))
    raise UsageError(
        f"text data needs a tokenizer, and {bundle.path} was not exported from a transformers folder",
        "pass the data as a folder of .npz feeds (arrays by input name)",
    )
