"""What ``optimize`` tried, as rows (for the terminal and Markdown), a Markdown report and a PNG of speed-up
against accuracy with the budget drawn in. Written to a temporary name and renamed."""

from __future__ import annotations

import math
from pathlib import Path

from modelport.benchmark.report import plot_path
from modelport.bundle import atomic_write
from modelport.errors import MissingExtraError
from modelport.optimization.candidates import Candidate
from modelport.optimization.search import SearchResult

__all__ = ["rows", "HEADERS", "markdown", "write_report", "accuracy_text"]

HEADERS = ("candidate", "backend", "p50 ms", "vs eager", "worst output (held-out)", "result")


def accuracy_text(candidate: Candidate, metric: str) -> str:
    """The output furthest from the reference (the first outside the budget), e.g. ``cos 0.99942 pooled``."""
    if not candidate.accuracy:
        return "-"
    bad = [o for o in candidate.accuracy if not o.within]
    floats = [o for o in candidate.accuracy if not o.exact]
    if bad:
        o = bad[0]
    elif floats:
        o = (max if metric == "atol" else min)(floats, key=lambda s: s.value)
    else:
        return "all equal"
    value = ("equal" if o.within else "differs") if o.exact else f"{metric} {o.value:.5f}"
    return f"{value} {o.name}" if len(candidate.accuracy) > 1 else value


def rows(result: SearchResult) -> list[tuple[str, ...]]:
    chosen = result.chosen
    out = []
    for c in result.candidates:
        speedup = result.speedup(c)
        status = c.status.replace(" budget", "") + (f", {len(c.excluded)} in float" if c.excluded else "")
        out.append(
            (
                c.name + (" *" if c is chosen else ""),
                c.backend,
                f"{c.p50_ms:.2f}" if c.p50_ms is not None else "-",
                f"{speedup:.2f}x" if speedup else "-",
                accuracy_text(c, result.budget.metric),
                status,
            )
        )
    return out


def drift_lines(result: SearchResult, top: int = 10) -> list[str]:
    lines = []
    for c in result.candidates:
        if c.drift:
            where = "kept in float to meet the budget: " + ", ".join(c.excluded) if c.excluded else "none kept in float"
            lines.append(f"{c.name}: the nodes that add the most drift (first build; {where})")
            lines += [
                f"  {d.node} ({d.op_type}) -> {d.output}: cosine {d.cosine:.5f}, adds {d.added:.2e}"
                for d in c.drift[:top]
            ]
    return lines


def markdown(result: SearchResult, model: str, command: str, plot_name: str | None) -> str:
    chosen = result.chosen
    lines = [
        f"# Optimization: {model}",
        "",
        f"Command: `{command}`",
        "",
        f"Budget {result.budget.text} per output against {result.reference}; data {result.data.origin}: "
        f"{len(result.data.calibration)} feeds for calibration and choices, {len(result.data.held_out)} held out "
        f"for the accuracy below. Timed on the first held-out feed, {result.threads} threads; eager p50 "
        + (f"{result.eager_p50_ms:.2f} ms." if result.eager_p50_ms else "not measured."),
        "",
        "| " + " | ".join(HEADERS) + " |",
        "|" + "---|" * len(HEADERS),
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows(result)]
    lines += ["", "`*` chosen." if chosen else "No candidate stayed within the budget."]
    drift = drift_lines(result)
    if drift:
        lines += ["", "## Drift", "", "```", *drift, "```"]
    if plot_name:
        lines += ["", f"![speed-up against accuracy]({plot_name})"]
    lines += ["", *[f"Note: {n}" for n in result.notes]]
    return "\n".join(lines).rstrip() + "\n"


def write_report(result: SearchResult, path: Path, model: str, command: str) -> Path:
    """``path`` (.md) and its plot beside it (.png); returns the plot's path."""
    path = Path(path)
    plot = plot_path(path)
    _plot(result, plot, model)
    atomic_write(path, lambda fh: fh.write(markdown(result, model, command, plot.name).encode()))
    return plot


def _plot(result: SearchResult, path: Path, model: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise MissingExtraError("the optimization plot (--report)", "bench") from None
    metric = result.budget.metric
    fig, ax = plt.subplots(figsize=(7, 4))
    for c in result.candidates:
        speedup = result.speedup(c)
        scores = [o.value for o in c.accuracy if not o.exact and not math.isnan(o.value)]
        if speedup is None or not scores:
            continue
        worst = max(scores) if metric == "atol" else min(scores)
        ax.scatter([worst], [speedup], color="#4c78a8" if c.within else "#e45756")
        ax.annotate(c.name, (worst, speedup), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.axvline(result.budget.threshold, color="grey", linestyle="--", label=f"budget {result.budget.text}")
    ax.set_xlabel(f"worst output's {metric} on held-out data")
    ax.set_ylabel("speed-up vs PyTorch eager (p50)")
    ax.set_title(f"{model}: blue within budget, red outside", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    atomic_write(path, lambda fh: fig.savefig(fh, format="png", dpi=110))
    plt.close(fig)
