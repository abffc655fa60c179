"""Tables and JSON for generation bundles: the checks of an export or verify, and generated text."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from modelport.cli.show import io_table


def checks_table(console: Console, report: Any) -> None:
    """A ``GenerationReport``: one row per check and prompt."""
    table = Table(
        title=f"generation vs transformers' generate (logits within {report.logits_tolerance:g} of their "
        f"range, {report.new_tokens} new tokens)",
        title_justify="left",
    )
    for col in ("check", "prompt", "tokens", "ok", "detail"):
        table.add_column(col)
    for c in report.checks:
        prompt = "all" if c.prompt is None else str(c.prompt)
        length = "" if c.prompt is None else str(report.prompt_lengths[c.prompt])
        table.add_row(c.name, prompt, length, "yes" if c.passed else "NO", c.detail)
    console.print(table)
    console.print(f"generation: {'PASS' if report.passed else 'FAIL'} — {report.summary()}", highlight=False)


def export_table(console: Console, result: Any) -> None:
    manifest = result.bundle.manifest
    console.print(io_table(manifest))
    checks_table(console, result.parity)
    size = sum(f["bytes"] for f in manifest["files"].values())
    gen = manifest["generation"]
    layout = gen["layout"]
    console.print(
        f"bundle {result.bundle.path} — {size / 1e6:.1f} MB, opset {manifest['opset']['actual']}, exporter "
        f"{manifest['capture']['strategy']}; {gen['architecture']}: {layout['layers']} layers, {layout['kv_heads']} KV "
        f"heads x {layout['head_dim']}, context {layout['max_context']}, tokenizer "
        f"{'included' if gen['tokenizer'] else 'none'}",
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
        "task": "text-generation",
        "strategy": manifest["capture"]["strategy"],
        "attempts": manifest["capture"]["attempts"],
        "parity": manifest["parity"],
        "generation": {k: v for k, v in manifest["generation"].items() if k != "verification"},
        "inputs": manifest["inputs"],
        "outputs": manifest["outputs"],
        "timings": manifest["timings"],
        "notes": manifest["notes"],
    }
