"""``modelport batch``: offline inference over many rows, written to one Parquet file keyed by row.

Rows come from a Parquet file (one column per input, each cell the row's tensor without the batch
dimension), a folder of ``.npz``/``.npy`` feeds (each file one feed, its rows along the batch dimension)
or a text file of sentences (one per line, each tokenized on its own with the bundle's tokenizer, so a
row's answer is the one ``modelport run`` gives that sentence). Rows are sorted by shape so equal shapes
run merged, ``batch_size`` rows at a time, within the bound the bundle was verified to.

Engines: ``local`` (this process, one runner) or ``ray`` (Ray Data ``map_batches`` over a pool of
``actors``, each loading the runner once; a dead actor is restarted and its rows retried by Ray Data).
A row that cannot run (a wrong shape or dtype, a size or value outside the declared range, a runtime failure)
goes to ``OUT.errors.jsonl`` with the reason: never silently dropped. The output is written to a temp
file beside ``OUT`` and renamed when complete.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from modelport.bundle import Bundle
from modelport.errors import FeedError, MissingExtraError, ModelportError, UsageError, first_line
from modelport.feeds import check_feed
from modelport.optimization.data import read_feed_file, read_sentences, tokenizer_folder
from modelport.runtime.base import infos_from_manifest, infos_from_signature
from modelport.runtime.registry import create
from modelport.scale.ray_serve import start_ray
from modelport.serving.batching import batch_key, merge, split
from modelport.serving.models import batch_axis

__all__ = ["batch", "BatchReport", "ENGINES", "CRASH_ONCE_ENV"]

ENGINES = ("local", "ray")
TASKS_PER_ACTOR = 8
TASKS_PER_ACTOR = 4  # blocks of chunks per actor: Ray's cost per task is high next to a chunk's
CRASH_ONCE_ENV = "MODELPORT_BATCH_CRASH_ONCE"  # tests: the first worker to see this path missing dies


@dataclass
class BatchReport:
    output: Path
    errors: Path | None  # the errors file, when a row failed
    rows: int
    written: int
    failed: int
    engine: str
    actors: int
    seconds: float
    outputs: list[str] = field(default_factory=list)
    check_ranges: bool = True  # False: rows outside the declared sizes and value ranges were answered too

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "output": str(self.output),
            "errors": str(self.errors) if self.errors else None,
            "rows": self.rows,
            "written": self.written,
            "failed": self.failed,
            "engine": self.engine,
            "actors": self.actors,
            "seconds": round(self.seconds, 3),
            "rows_per_second": round(self.rows_per_second, 2),
            "outputs": self.outputs,
            "check_ranges": self.check_ranges,
        }


@dataclass
class _Row:
    index: int
    feed: dict[str, np.ndarray] | None  # with a batch dimension of one
    error: str | None = None


def batch(
    bundle: str | Path,
    input: str | Path,
    output: str | Path,
    *,
    engine: str = "local",
    actors: int = 1,
    batch_size: int = 32,
    backend: str | None = None,
    threads: int | None = None,
    address: str | None = None,
    outputs: Sequence[str] | None = None,
    progress: Callable[[int, int], None] | None = None,
    check_ranges: bool = True,
) -> BatchReport:
    """Run the bundle over every row of ``input`` and write ``output`` (Parquet: ``row`` and one column per
    output). ``outputs`` picks which outputs to write (default all); ``progress(done, total)`` is called
    as rows finish. A row outside the bundle's declared sizes or value ranges fails (its reason in the
    errors file) unless ``check_ranges`` is False."""
    if engine not in ENGINES:
        raise UsageError(f"unknown engine {engine!r}", f"choose one of: {', '.join(ENGINES)}")
    if actors < 1 or batch_size < 1:
        raise UsageError("--actors and --batch-size must be at least 1", "e.g. --actors 2 --batch-size 32")
    pq = _parquet()
    target = Path(output)
    if target.suffix.lower() != ".parquet":
        raise UsageError(f"{target} is not a .parquet file", "name the output OUT.parquet")
    opened = Bundle.open(bundle)
    names = [o.name for o in infos_from_manifest(opened.manifest.get("outputs", []))]
    wanted = list(outputs or names)
    unknown = [n for n in wanted if names and n not in names]
    if unknown:
        raise UsageError(f"the bundle has no output {', '.join(unknown)}", f"outputs: {', '.join(names)}")
    rows = _read_rows(Path(input), opened)
    if not rows:
        raise UsageError(f"{input} holds no rows", "pass a Parquet file, a folder of .npz feeds or a text file")
    rows.sort(key=lambda r: (r.feed is None, batch_key(r.feed) if r.feed else ()))  # equal shapes side by side
    started = time.perf_counter()
    if engine == "ray" and threads is None:  # the actors share the cores rather than fight over them
        threads = max(1, (os.cpu_count() or 1) // actors)
    settings = _Settings(str(opened.path), backend, threads, wanted, check_ranges)
    chunks = [rows[i : i + batch_size] for i in range(0, len(rows), batch_size)]
    results = _run_local(settings, chunks) if engine == "local" else _run_ray(settings, chunks, actors, address)
    errors, written, failed = _write(results, target, len(rows), pq, progress)
    return BatchReport(target, errors, len(rows), written, failed, engine, actors if engine == "ray" else 1,
                       time.perf_counter() - started, wanted, check_ranges)  # fmt: skip


# -- reading --------------------------------------------------------------------------------------------
def _read_rows(path: Path, bundle: Bundle) -> list[_Row]:
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


def _rows_from_parquet(path: Path, bundle: Bundle) -> list[_Row]:
    pq = _parquet()
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
            rows.append(_Row(index, feed))
        except FeedError as exc:
            rows.append(_Row(index, None, exc.one_line()))
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


def _rows_from_folder(path: Path, bundle: Bundle) -> list[_Row]:
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in (".npz", ".npy"))
    if not files:
        raise UsageError(f"--input folder {path} holds no .npz or .npy files", "one feed per file: numpy.savez(...)")
    rows: list[_Row] = []
    for file in files:
        try:
            feed = read_feed_file(file, bundle)
        except UsageError as exc:
            rows.append(_Row(len(rows), None, exc.one_line()))
            continue
        counts = {a.shape[0] if a.ndim else 1 for a in feed.values()}
        if len(counts) != 1 or not all(a.ndim for a in feed.values()):
            rows.append(_Row(len(rows), None, f"{file.name}: inputs disagree on the rows along the batch dimension"))
            continue
        for i in range(counts.pop()):
            rows.append(_Row(len(rows), {n: a[i : i + 1] for n, a in feed.items()}))
    return rows


def _rows_from_text(path: Path, bundle: Bundle) -> list[_Row]:
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
        rows.append(_Row(index, {s.name: np.asarray(encoded[s.name]).astype(s.dtype) for s in specs}))
    return rows


# -- running --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Settings:
    bundle: str
    backend: str | None
    threads: int | None
    outputs: list[str]
    check_ranges: bool = True


class _Worker:
    """One runner, loaded once; answers a chunk of rows as (index, outputs or None, error or None)."""

    def __init__(self, settings: _Settings) -> None:
        self.settings = settings
        self.bundle = Bundle.open(settings.bundle)
        self.runner = create(
            settings.backend, self.bundle, threads=settings.threads, check_ranges=settings.check_ranges
        ).load()
        inputs = infos_from_signature(self.bundle.signature)
        outputs = infos_from_manifest(self.bundle.manifest.get("outputs", [])) or self.runner.outputs()
        bounds = {n: d.max for n, d in self.bundle.signature.dims.items()}
        axis = batch_axis(inputs, outputs, bounds)
        self.bound = axis.max if axis else 1

    def __call__(self, rows: list[_Row]) -> list[tuple[int, dict[str, np.ndarray] | None, str | None]]:
        _maybe_crash()
        answers = []
        ready: dict[tuple[Any, ...], list[_Row]] = {}
        for row in rows:
            reason = row.error or self._check(row)
            if reason:
                answers.append((row.index, None, reason))
            else:
                assert row.feed is not None
                ready.setdefault(batch_key(row.feed), []).append(row)
        for group in ready.values():
            for start in range(0, len(group), self.bound):
                answers.extend(self._run(group[start : start + self.bound]))
        return answers

    def _check(self, row: _Row) -> str | None:
        assert row.feed is not None
        try:
            check_feed(self.bundle.signature, row.feed, self.settings.check_ranges)
        except FeedError as exc:
            return exc.one_line()
        return None

    def _run(self, rows: list[_Row]) -> list[tuple[int, dict[str, np.ndarray] | None, str | None]]:
        try:
            outputs = self.runner.infer(merge([r.feed for r in rows]))  # type: ignore[misc]
        except Exception as exc:
            if len(rows) > 1:  # find the rows that fail on their own; the rest still get answers
                return [answer for row in rows for answer in self._run([row])]
            why = exc.one_line() if isinstance(exc, ModelportError) else f"{type(exc).__name__}: {first_line(exc)}"
            return [(rows[0].index, None, why)]
        picked = {n: outputs[n] for n in self.settings.outputs}
        parts = split(picked, [1] * len(rows))
        return [(row.index, {n: a[0] for n, a in part.items()}, None) for row, part in zip(rows, parts, strict=True)]


def _maybe_crash() -> None:
    marker = os.environ.get(CRASH_ONCE_ENV)
    if marker and not os.path.exists(marker):
        Path(marker).touch()
        os._exit(1)


def _run_local(settings: _Settings, chunks: list[list[_Row]]) -> Iterator[list[Any]]:
    worker = _Worker(settings)
    for chunk in chunks:
        yield worker(chunk)


def _run_ray(settings: _Settings, chunks: list[list[_Row]], actors: int, address: str | None) -> Iterator[list[Any]]:
    import importlib.util

    if importlib.util.find_spec("ray") is None or importlib.util.find_spec("ray.data") is None:
        raise MissingExtraError("batch inference on Ray", "ray")
    import ray

    started = not ray.is_initialized()
    if started:
        start_ray(address)
    try:
        yield from _ray_results(settings, chunks, actors)
    finally:
        if started:
            ray.shutdown()


def _ray_results(settings: _Settings, chunks: list[list[_Row]], actors: int) -> Iterator[list[Any]]:
    import logging

    import ray
    import ray.data

    logging.getLogger("ray.data").setLevel(logging.WARNING)  # after its import, which configures it
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    # the rows go to the object store once; Ray Data moves only chunk numbers in, and answers out as
    # bytes (converting numpy-filled objects to Arrow blocks cost more than running MiniLM on them)
    rows = ray.put(chunks)
    blocks = min(len(chunks), actors * TASKS_PER_ACTOR)
    dataset = ray.data.from_items([{"chunk": i} for i in range(len(chunks))], override_num_blocks=blocks)
    answered = dataset.map_batches(
        _RayWorker,
        fn_constructor_args=(settings, rows),
        batch_size=None,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_cpus=1,
    )
    for part in answered.iter_batches(batch_size=None, batch_format="numpy"):
        yield [
            (int(index), _decode(blob) if not error else None, str(error) or None)
            for index, error, blob in zip(part["row"], part["error"], part["outputs"], strict=True)
        ]


class _RayWorker:
    def __init__(self, settings: _Settings, rows: Any) -> None:
        import ray

        self.worker = _Worker(settings)
        self.chunks: list[list[_Row]] = ray.get(rows)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        answers = [a for i in batch["chunk"] for a in self.worker(self.chunks[int(i)])]
        return {
            "row": np.array([index for index, _, _ in answers], np.int64),
            "error": np.array([error or "" for _, _, error in answers], object),
            "outputs": np.array([_encode(outputs) if outputs else b"" for _, outputs, _ in answers], object),
        }


def _encode(outputs: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **outputs)
    return buffer.getvalue()


def _decode(blob: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(blob), allow_pickle=False) as archive:
        return {name: archive[name] for name in archive.files}


# -- writing --------------------------------------------------------------------------------------------
def _write(
    results: Iterator[list[Any]], target: Path, total: int, pq: Any, progress: Callable[[int, int], None] | None
) -> tuple[Path | None, int, int]:
    errors_path = target.with_name(target.name.removesuffix(".parquet") + ".errors.jsonl")
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(prefix=f".{target.name}-", suffix=".tmp", dir=target.parent)
    os.close(handle)
    temp = Path(temp_name)
    writer = None
    written = failed = 0
    failures: list[dict[str, Any]] = []
    try:
        for answers in results:
            good = [(index, outputs) for index, outputs, error in answers if error is None]
            failures += [{"row": index, "error": error} for index, _, error in answers if error is not None]
            if good:
                table = _table(good)
                if writer is None:
                    writer = pq.ParquetWriter(temp, table.schema)
                writer.write_table(table)
            written += len(good)
            failed = len(failures)
            if progress is not None:
                progress(written + failed, total)
        if writer is None:  # every row failed: an empty file with the row column still says so
            import pyarrow as pa

            writer = pq.ParquetWriter(temp, pa.schema([("row", pa.int64())]))
        writer.close()
        writer = None
        os.replace(temp, target)
    finally:
        if writer is not None:
            writer.close()
        temp.unlink(missing_ok=True)
    if failures:
        failures.sort(key=lambda f: f["row"])
        errors_path.write_text("".join(json.dumps(f) + "\n" for f in failures))
    else:
        errors_path.unlink(missing_ok=True)  # a previous run's errors would describe another output
    return (errors_path if failures else None), written, failed


def _table(answers: list[tuple[int, dict[str, np.ndarray]]]) -> Any:
    import pyarrow as pa

    columns: dict[str, Any] = {"row": pa.array([index for index, _ in answers], pa.int64())}
    for name in answers[0][1]:
        columns[name] = _nested([outputs[name] for _, outputs in answers])
    return pa.table(columns)


def _nested(rows: list[np.ndarray]) -> Any:
    """Each row's tensor as nested lists (one level per axis; rows may differ in shape)."""
    import pyarrow as pa

    values = pa.array(np.concatenate([r.ravel() for r in rows]))
    for axis in reversed(range(rows[0].ndim)):
        lengths = np.concatenate([np.full(int(np.prod(r.shape[:axis])), r.shape[axis], np.int64) for r in rows])
        values = pa.LargeListArray.from_arrays(np.concatenate([[0], np.cumsum(lengths)]), values)
    return values


def _parquet() -> Any:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise MissingExtraError("batch inference (Parquet)", "ray") from None
    return pq
