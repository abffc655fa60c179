"""Tables and JSON for the terminal. Presentation only: no decisions are made here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from modelport.bundle import atomic_write
from modelport.verification.parity import ParityReport


def dims_text(dims: list[Any]) -> str:
    parts = []
    for d in dims:
        if isinstance(d, dict):
            parts.append(f"{d['name']}[{d['min']}..{d['max']}]")
        else:
            parts.append(str(d))
    return "(" + ", ".join(parts) + ")"


def io_table(manifest: dict[str, Any]) -> Table:
    table = Table(title="inputs and outputs", title_justify="left")
    for col in ("", "name", "dtype", "dims", "values"):
        table.add_column(col)
    for item in manifest["inputs"]:
        rng = item.get("range")
        table.add_row(
            "in", item["name"], item["dtype"], dims_text(item["dims"]), f"{rng[0]:g}..{rng[1]:g}" if rng else ""
        )
    for item in manifest.get("outputs", []):
        table.add_row("out", item["name"], item["dtype"], dims_text(item["dims"]), "")
    return table


def parity_table(console: Console, report: ParityReport) -> None:
    table = Table(
        title=f"parity vs PyTorch eager on {report.backend} ({report.tolerance_text()})",
        title_justify="left",
    )
    for col in ("feed", "setting", "worst output", "max abs", "max rel", "ok"):
        table.add_column(col)
    for r in report.results:
        worst = max(r.outputs, key=lambda o: (not o.passed, o.max_abs), default=None)
        table.add_row(
            r.feed,
            r.optimization,
            worst.name if worst else "-",
            f"{worst.max_abs:.2e}" if worst else "-",
            f"{worst.max_rel:.2e}" if worst else "-",
            "yes" if r.passed else f"NO: {r.why}",
        )
    console.print(table)
    console.print(f"parity: {'PASS' if report.passed else 'FAIL'} — {report.summary()}", highlight=False)


def budget_table(console: Console, report: Any) -> None:
    """A ``BudgetReport``: each output's score under the budget an optimized bundle is held to."""
    table = Table(
        title=f"{report.backend} against {report.reference} on {report.data}, budget {report.budget.text}",
        title_justify="left",
    )
    for col in ("output", report.budget.metric, "ok"):
        table.add_column(col)
    for o in report.outputs:
        value = ("equal" if o.within else "differs") if o.exact else f"{o.value:.6g}"
        table.add_row(o.name, value, "yes" if o.within else "NO")
    console.print(table)
    console.print(f"budget: {'PASS' if report.passed else 'FAIL'} — {report.summary()}", highlight=False)


def export_table(console: Console, result: Any) -> None:
    manifest = result.bundle.manifest
    console.print(io_table(manifest))
    parity_table(console, result.parity)
    size = sum(f["bytes"] for f in manifest["files"].values())
    attempts = ", ".join(f"{a.strategy}: {a.outcome}" for a in result.attempts)
    console.print(
        f"bundle {result.bundle.path} — {size / 1e6:.1f} MB, opset {manifest['opset']['actual']}, "
        f"exporter {manifest['capture']['strategy']} ({attempts})",
        highlight=False,
    )
    console.print(f"export {result.export_seconds:.1f} s, verify {result.verify_seconds:.1f} s", highlight=False)
    for note in result.notes:
        console.print(f"note: {note}", highlight=False)


def export_json(result: Any) -> dict[str, Any]:
    manifest = result.bundle.manifest
    return {
        "ok": True,
        "bundle": str(result.bundle.path),
        "strategy": manifest["capture"]["strategy"],
        "attempts": manifest["capture"]["attempts"],
        "parity": manifest["parity"],
        "inputs": manifest["inputs"],
        "outputs": manifest["outputs"],
        "opset": manifest["opset"],
        "timings": manifest["timings"],
        "notes": manifest["notes"],
    }


def output_stats(outputs: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    stats = []
    for name, value in outputs.items():
        numeric = value.astype(np.float64) if value.size else np.zeros(1)
        stats.append(
            {
                "name": name,
                "shape": list(value.shape),
                "dtype": str(value.dtype),
                "min": float(numeric.min()),
                "max": float(numeric.max()),
                "mean": float(numeric.mean()),
            }
        )
    return stats


def outputs_table(console: Console, outputs: dict[str, np.ndarray]) -> None:
    table = Table(title="outputs", title_justify="left")
    for col in ("name", "shape", "dtype", "min", "max", "mean"):
        table.add_column(col)
    for s in output_stats(outputs):
        table.add_row(s["name"], str(s["shape"]), s["dtype"], f"{s['min']:.4g}", f"{s['max']:.4g}", f"{s['mean']:.4g}")
    console.print(table)


def save_npz(path: Path, outputs: dict[str, np.ndarray]) -> None:
    atomic_write(Path(path), lambda fh: np.savez(fh, **outputs))


def demo_tables(console: Console, report: Any) -> None:
    export_table(console, report.export)
    table = Table(title="real sentences: modelport ONNX vs sentence-transformers encode()", title_justify="left")
    for col in ("sentence", "tokens", "cosine"):
        table.add_column(col)
    for sentence, tokens, cos in zip(report.sentences, report.token_counts, report.cosines, strict=True):
        table.add_row(sentence, str(tokens), f"{cos:.6f}")
    console.print(table)
    verdict = "PASS" if report.passed else "FAIL"
    console.print(f"min cosine {min(report.cosines):.6f} (needs >= {report.threshold}): {verdict}", highlight=False)


def ran_on(console: Console, result: Any) -> None:
    """One line: the backend, what it really got (providers, precision, threads), and the feed."""
    info = result.runner
    got = info.get("providers") or info.get("how") or info.get("device")
    details = [f"precision {info['precision']}"]
    for key in ("intra_op_threads", "threads", "inference_precision"):
        if key in info:
            details.append(f"{key.replace('_', ' ')} {info[key]}")
    where = f" on {', '.join(got) if isinstance(got, list) else got}" if got else ""
    fed = " (no --feed: a random feed at the example sizes)" if result.fed == "example" else ""
    console.print(f"ran {info['backend']}{where}: {', '.join(details)}{fed}", highlight=False, soft_wrap=True)


def placement_table(console: Console, report: Any) -> None:
    providers = list(report.by_provider)
    table = Table(title="node placement", title_justify="left")
    table.add_column("op")
    for provider in providers:
        table.add_column(provider, justify="right")
    for op, per in report.by_op.items():
        table.add_row(op, *(str(per.get(p, "")) for p in providers))
    table.add_row("total", *(str(report.by_provider[p]) for p in providers), style="bold")
    console.print(table)
    console.print(f"placement: {report.summary()}", highlight=False)
