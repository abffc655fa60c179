"""Benchmark output: the JSON records, and a Markdown report with the machine, the method, a table
per shape and a PNG of latency per backend with the speedup over eager. Files are written to a
temporary name and renamed, so an interrupted run leaves the previous report intact."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from modelport.benchmark.timing import BenchResult
from modelport.bundle import atomic_write
from modelport.errors import MissingExtraError, UsageError

__all__ = ["write_json", "write_report", "plot_path", "COLUMNS", "SPLIT", "cell"]

# (header, record key, format) for the terminal table and the Markdown table
COLUMNS: list[tuple[str, str, str]] = [
    ("backend", "backend", "{}"),
    ("p50 ms", "p50_ms", "{:.2f}"),
    ("p90 ms", "p90_ms", "{:.2f}"),
    ("p99 ms", "p99_ms", "{:.2f}"),
    ("mean ms", "mean_ms", "{:.2f}"),
    ("runs", "runs", "{}"),
    ("samples/s", "throughput", "{:.1f}"),
    ("vs eager", "speedup_vs_eager", "{:.2f}x"),
    ("backend", "backend", "{}"),  # the terminal splits the table here
    ("cold start ms", "cold_start_ms", "{:.0f}"),
    ("peak RSS MB", "peak_rss_mb", "{:.0f}"),
    ("max abs diff", "max_abs_diff", "{:.2e}"),
    ("cosine", "cosine", "{:.6f}"),
    ("GFLOP/s", "gflops", "{:.1f}"),
    ("of peak", "fraction_of_peak", "{:.0%}"),
]

SPLIT = 8  # COLUMNS[:SPLIT] is latency, COLUMNS[SPLIT:] cost and accuracy; each half starts with the backend
MARKDOWN_COLUMNS = COLUMNS[:SPLIT] + COLUMNS[SPLIT + 1 :]


def cell(record: dict[str, Any], key: str, fmt: str) -> str:
    value = record.get(key)
    return "-" if value is None else fmt.format(value)


def write_json(result: BenchResult, path: Path) -> None:
    """A list of records, one per backend x shape; each carries the model and the machine it ran on."""
    records = [{"model": result.model, **r, "machine": result.machine} for r in result.records]
    atomic_write(path, lambda fh: fh.write(json.dumps(records, indent=2, default=str).encode() + b"\n"))


def write_report(result: BenchResult, path: Path, command: str) -> Path:
    """``path`` (.md) and the plot beside it (same stem, .png); returns the plot's path. The plot may replace
    only a plot of an earlier report at ``path``: a PNG there without its report is the user's."""
    path = Path(path)
    plot = plot_path(path)
    _write_plot(result, plot)
    atomic_write(path, lambda fh: fh.write(markdown(result, command, plot.name).encode()))
    return plot


def plot_path(report: Path) -> Path:
    """The PNG beside a Markdown report; refused when a PNG is there without its report (it is the user's)."""
    plot = report.with_suffix(".png")
    if plot.exists() and not report.exists():
        raise UsageError(
            f"{plot} exists and is not the plot of a report at {report}; refusing to replace it",
            "choose another --report name, or move that file",
        )
    return plot


def markdown(result: BenchResult, command: str, plot_name: str) -> str:
    m, c = result.machine, result.config
    lines = [
        f"# Benchmark: {result.model}",
        "",
        "```bash",
        command,
        "```",
        "",
        f"**Machine**: {m['cpu']}, {m['physical_cores']} physical cores ({m['logical_cpus']} logical CPUs), "
        f"{m['memory_gb']} GB; flags {' '.join(m['flags']) or 'none of interest'}; {m['os']}, Python {m['python']}.",
        "",
        "**Versions**: " + ", ".join(f"{k} {v}" for k, v in m["versions"].items()) + ".",
        "",
        f"**Method**: {m['threads']} threads for every backend; the same feed per shape for every backend; "
        "cold start = load + first run, timed once, and peak RSS = how much the process's peak resident memory "
        f"grew during them (freed heap handed back to the OS first); {c.warmup} untimed warm-up runs each; "
        f"then timed runs in rounds of {c.block_seconds:g} s blocks, one per backend, in rotating order, "
        f"each block after a {c.settle_seconds:g} s pause and one untimed run (so one runtime's spinning "
        f"threads and cache footprint are not billed to the next), until each backend has at least "
        f"{c.min_runs} runs and {c.min_seconds:g} s; percentiles over those runs. Parity against PyTorch "
        "eager on the same feed (worst output: largest abs diff, lowest cosine). FLOPs counted by "
        "torch.utils.flop_counter on the eager model (matmul/conv/attention).",
    ]
    if m.get("sgemm_peak_gflops"):
        lines += [
            "",
            f"**Measured fp32 sgemm peak** (`modelport bench --peak`): {m['sgemm_peak_gflops']} GFLOP/s, the best "
            "torch.mm of this run, not a datasheet figure. GFLOP/s counts the model's multiply-adds as written; "
            "above 100% of the peak a backend either computes below fp32 (`default` precision: bf16 on this "
            "CPU's AVX512-BF16) or does fewer multiplies than the direct count (e.g. Winograd convolutions), "
            "or the peak run was unlucky.",
        ]
    for shape in dict.fromkeys(r["shape"] for r in result.records):
        rows = [r for r in result.records if r["shape"] == shape]
        lines += ["", f"## {shape}", "", "| " + " | ".join(h for h, _, _ in MARKDOWN_COLUMNS) + " |"]
        lines.append("|" + "---|" * len(MARKDOWN_COLUMNS))
        lines += ["| " + " | ".join(cell(r, k, f) for _, k, f in MARKDOWN_COLUMNS) + " |" for r in rows]
        lines += [f"- {r['backend']}: {w}" for r in rows for w in r["warnings"]]
    lines += ["", f"![latency per backend]({plot_name})", ""]
    lines += [f"Note: {n}" for n in result.notes]
    return "\n".join(lines) + "\n"


def _write_plot(result: BenchResult, path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise MissingExtraError("the benchmark plot (--report)", "bench") from None
    shapes = list(dict.fromkeys(r["shape"] for r in result.records))
    backends = list(dict.fromkeys(r["backend"] for r in result.records))
    fig, axes = plt.subplots(len(shapes), 1, figsize=(8, 0.5 + 0.45 * len(backends) * len(shapes) + 0.6 * len(shapes)))
    for ax, shape in zip(axes if len(shapes) > 1 else [axes], shapes, strict=True):
        rows = [r for r in result.records if r["shape"] == shape]
        p50 = [r["p50_ms"] for r in rows]
        spread = [[0] * len(rows), [r["p90_ms"] - r["p50_ms"] for r in rows]]
        bars = ax.barh([r["backend"] for r in rows], p50, xerr=spread, color="#4c78a8", capsize=3)
        ax.invert_yaxis()
        ax.set_title(shape, loc="left", fontsize=10)
        ax.set_xlabel("latency, ms (bar: p50, whisker: p90)")
        for bar, r in zip(bars, rows, strict=True):
            text = f" {r['speedup_vs_eager']:.2f}x vs eager" if r.get("speedup_vs_eager") else ""
            ax.text(r["p90_ms"], bar.get_y() + bar.get_height() / 2, text, va="center", fontsize=8)
        ax.set_xlim(0, max(r["p90_ms"] for r in rows) * 1.45)
    fig.suptitle(f"{result.model}, {result.machine['threads']} threads", fontsize=11)
    fig.tight_layout()
    atomic_write(path, lambda fh: fig.savefig(fh, format="png", dpi=110))
    plt.close(fig)
