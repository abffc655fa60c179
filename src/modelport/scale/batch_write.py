"""``batch``'s output: answers streamed into a temp Parquet file beside ``OUT`` (``row`` and one column per
output, each cell nested lists), renamed when complete; failed rows to ``OUT.errors.jsonl``."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from modelport.errors import MissingExtraError

__all__ = ["write", "parquet"]


def write(
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


def parquet() -> Any:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise MissingExtraError("batch inference (Parquet)", "ray") from None
    return pq
