"""Terminal output for ``doctor`` and ``graph``. Presentation only."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from modelport.diagnose.graph import GraphInfo

_STYLE = {"error": "bold red", "warning": "yellow", "info": "dim"}


def graph_text(console: Console, info: GraphInfo, top: int = 0) -> None:
    opsets = ", ".join(f"{d} {v}" for d, v in info.opsets.items())
    console.print(f"IR {info.ir_version}, opsets: {opsets}" + (f", producer {info.producer}" if info.producer else ""))
    console.print(
        f"{info.nodes} nodes, {info.parameters:,} parameters ({info.parameter_bytes / 1e6:.1f} MB of initializers)"
    )
    io = Table(title="inputs and outputs", title_justify="left")
    for col in ("", "name", "dtype", "dims"):
        io.add_column(col)
    for kind, values in (("in", info.inputs), ("out", info.outputs)):
        for v in values:
            io.add_row(kind, v["name"], v["dtype"], "(" + ", ".join(map(str, v["dims"])) + ")")
    console.print(io)
    ops = Table(title="ops", title_justify="left")
    ops.add_column("op")
    ops.add_column("count", justify="right")
    for op, count in info.ops.most_common(top or None):
        ops.add_row(op, str(count))
    console.print(ops)
    if info.control_flow:
        flow = Table(title="control flow", title_justify="left")
        for col in ("op", "node", "where", "subgraphs"):
            flow.add_column(col)
        for c in info.control_flow:
            flow.add_row(c.op, c.node, c.where, ", ".join(f"{k}: {n} nodes" for k, n in c.subgraphs.items()))
        console.print(flow)
    else:
        console.print("no If/Loop/Scan: the graph is straight-line")


def doctor_text(console: Console, report: Any) -> None:
    info = report.graph
    console.print(
        f"{report.path}: IR {info.ir_version}, opset {info.opsets.get('ai.onnx', '?')}, {info.nodes} nodes, "
        f"{info.parameters:,} parameters, {len(info.inputs)} inputs, {len(info.outputs)} outputs"
    )
    if not report.findings:
        console.print("no problems found")
        return
    table = Table(show_lines=True)
    for col in ("severity", "finding", "fix"):
        table.add_column(col, overflow="fold")
    for f in report.findings:
        table.add_row(f"[{_STYLE[f.severity]}]{f.severity}[/]", f.message, f.fix)
    console.print(table, markup=True)
    errors = len(report.errors)
    console.print(f"{errors} error(s), {len(report.findings) - errors} other finding(s)")
