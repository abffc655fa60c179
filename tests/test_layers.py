"""The import contract: layers import downward only, imports inside functions included.

A module may import modules of its own layer or of layers below it. Where a lower layer seems to
need a higher one, the thing it needs belongs lower (``../shared/DESIGN.md``, "Layers").
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

# lowest first; a module belongs to the first entry that is it or a package above it
LAYERS: list[tuple[str, ...]] = [
    (
        "modelport.errors",
        "modelport.options",
        "modelport.machine",
        "modelport.spec",
        "modelport.feeds",
        "modelport.deadline",
        "modelport.manifest",
        "modelport.bundle",
        "modelport.tolerances",
        "modelport.onnx_graph",
        "modelport.interrupts",
        "modelport.compare",
    ),
    ("modelport.diagnose",),  # ONNX helpers: graph facts, checks, error translation
    ("modelport.sources", "modelport.forward"),  # PyTorch models in, and how they are called
    ("modelport.runtime",),
    ("modelport.generation",),  # the KV cache, the decode loop, sampling: shared by generate, verify and serving
    # checking against a reference, and foreign ONNX (import, upgrade) beside it: an import is checked with
    # verification's parity report, and verify imports a plain ONNX file first
    ("modelport.verification", "modelport.ingest"),
    ("modelport.capture",),
    (
        "modelport.exporting",
        "modelport.generation_export",
        "modelport.seq2seq_export",
        "modelport.benchmark",
        "modelport.optimization",
        "modelport.demo_job",
    ),
    ("modelport",),  # the public API
    ("modelport.serving",),
    ("modelport.scale",),
    ("modelport.cli", "modelport.__main__"),
]


def layer_of(module: str) -> int:
    best = None
    for index, names in enumerate(LAYERS):
        for name in names:
            if (module == name or module.startswith(name + ".")) and (best is None or len(name) > len(best[1])):
                best = (index, name)
    assert best is not None, f"{module} is in no layer: add it to LAYERS"
    return best[0]


def modules() -> dict[str, Path]:
    out = {}
    for path in sorted((SRC / "modelport").rglob("*.py")):
        parts = path.relative_to(SRC).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def imports(name: str, path: Path, known: set[str]) -> list[tuple[int, str]]:
    """(line, module) for every modelport import anywhere in the file, functions included."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("modelport")]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + [base]).rstrip(".")
            if not base.startswith("modelport"):
                continue
            for alias in node.names:  # `from modelport import bundle` imports the module modelport.bundle
                target = f"{base}.{alias.name}"
                found.append((node.lineno, target if target in known else base))
    return found


def test_every_module_has_a_layer():
    for name in modules():
        layer_of(name)


def test_every_name_in_layers_is_a_module():
    known = set(modules())
    stale = [name for names in LAYERS for name in names if name not in known]
    assert not stale, f"LAYERS names modules that do not exist: {', '.join(stale)}"


def test_the_contract_catches_a_name_that_is_no_module(monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "LAYERS", [*LAYERS, ("modelport.nowhere",)])
    with pytest.raises(AssertionError, match="modelport.nowhere"):
        test_every_name_in_layers_is_a_module()


def test_imports_go_downward_only():
    known = set(modules())
    upward = []
    for name, path in modules().items():
        here = layer_of(name)
        for line, target in imports(name, path, known):
            if target != "modelport" and layer_of(target) > here:
                upward.append(f"{path.relative_to(SRC)}:{line} {name} (layer {here}) imports {target}")
    assert not upward, "upward imports:\n" + "\n".join(upward)


def test_the_contract_catches_an_upward_import(tmp_path, monkeypatch):
    fake = tmp_path / "modelport"
    fake.mkdir()
    (fake / "__init__.py").write_text("")
    (fake / "spec.py").write_text("def f():\n    from modelport.cli.main import app\n")
    (fake / "cli").mkdir()
    (fake / "cli" / "__init__.py").write_text("")
    (fake / "cli" / "main.py").write_text("app = None\n")
    monkeypatch.setattr(sys.modules[__name__], "SRC", tmp_path)
    with pytest.raises(AssertionError, match=r"modelport.spec \(layer 0\) imports modelport.cli.main"):
        test_imports_go_downward_only()


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


def test_no_import_circles():
    """No two modules import each other, directly or round a loop, at module level or inside functions
    (the public API's lazy table in ``modelport/__init__.py`` aside: it names, it does not import)."""
    known = set(modules())
    graph = {
        name: {target for _, target in imports(name, path, known) if target != "modelport" and target != name}
        for name, path in modules().items()
        if name != "modelport"
    }
    cycles = import_cycles(graph)
    assert not cycles, "import circles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_the_circle_check_finds_a_loop_of_three():
    assert import_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
