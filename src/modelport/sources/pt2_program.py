"""The JSON program inside a ``.pt2`` (``models/<m>.json``): text torch would evaluate or paste into code.

torch 2.13 hands ``expr_str`` to ``sympy.sympify`` (an ``eval``), ``exec``s ``guards_code`` when it builds
the module, and writes names, call targets, argument names and pytree keys into generated Python.
``program_problem(program)`` names the first field that could run code, or returns None.
"""

from __future__ import annotations

import ast
import builtins
import io
import json
import keyword
import re
import tokenize
from collections.abc import Iterator
from typing import Any

__all__ = ["program_problem", "UNSAFE_TEXT"]

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
# quotes, backslashes and control characters: what lets a name escape the string literal or the line
# of generated Python that torch writes it into
UNSAFE_TEXT = re.compile(r"[\"'\\\x00-\x1f\x7f]")
# torch resolves a node's target (or an operator argument) by attribute lookup from `torch`, `_operator`
# or `math`, and calls whatever it finds (its verifier stops most, not operator arguments): only operators
_TARGET = re.compile(
    r"(torch\.ops(?:\.(?!__)[A-Za-z_][A-Za-z0-9_]*){2,3}"
    r"|_operator\.(?!_)(?!(?:attrgetter|itemgetter|methodcaller|call)\Z)[A-Za-z_][A-Za-z0-9_]*"
    r"|math\.(?!_)[A-Za-z_][A-Za-z0-9_]*"
    r"|torch\._?sym_[A-Za-z0-9_]+"
    r"|torch\._functorch\.predispatch\.[A-Za-z_][A-Za-z0-9_]*"
    r"|torch\.autograd\.grad_mode\.set_grad_enabled|torch\._C\._set_grad_enabled"
    r"|torch\.amp\.autocast_mode\._(?:enter|exit)_autocast"
    r"|torch\.fx\.experimental\.symbolic_shapes\.cast_symbool_to_symint_guardless"
    r"|torch\.export\.custom_ops\._call_custom_autograd_function_in_pre_dispatch"
    r"|#[A-Za-z0-9_.:]+)\Z"
)  # the functions torch's own verifier (torch/_export/verifier.py) lets a graph call, as torch names them
# JSON fields that are free text torch never writes into code (or writes with repr)
_FREE_TEXT = frozenset({"metadata", "torch_version", "as_string", "as_strings", "verifiers"})
_NAME_FIELDS = frozenset({"name", "as_name", "forward_arg_names"})

# what a shape expression (sympy's srepr, handed to sympy.sympify, i.e. eval) may call
_SYMPY_CALLS = frozenset(
    """Symbol Dummy Integer Rational Float Add Mul Pow Mod Max Min Abs floor ceiling sqrt Eq Ne Lt Le Gt Ge
    Equality Unequality StrictLessThan StrictGreaterThan LessThan GreaterThan And Or Not Xor Piecewise
    ExprCondPair BooleanTrue BooleanFalse true false oo zoo nan Infinity NegativeInfinity NaN Half One Zero
    NegativeOne True False FloorDiv ModularIndexing Where PythonMod CleanDiv CeilToInt FloorToInt CeilDiv
    LShift RShift PowByNatural FloatPow FloatTrueDiv IntTrueDiv IsNonOverlappingAndDenseIndicator TruncToFloat
    TruncToInt RoundToInt RoundDecimal ToFloat Identity""".split()
)
_SYMPY_OPS = frozenset("+ - * / // % ** ( ) , < > <= >= == != & | ~ ^ =".split())
_NUMBER_TEXT = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?\Z")
_BARE_SYMBOL = re.compile(r"[a-z]+[0-9]+\Z")  # s0, u3: sympy turns names it does not know into Symbols

# what a guard (Python source torch execs when it builds the module) may use
_GUARD_NAMES = frozenset({"L", "abs", "max", "min", "round", "IsNonOverlappingAndDenseIndicator"})
_GUARD_METHODS = frozenset({"size", "stride", "storage_offset", "dim", "numel"})
_GUARD_MATH = frozenset(
    "floor ceil trunc inf nan isnan cos cosh acos sin sinh asin tan tanh atan log2 sqrt exp log".split()
)
_GUARD_TORCH = frozenset({"sym_float", "sym_int", "sym_max", "sym_min", "sym_not", "_sym_sqrt"})


def program_problem(node: Any, key: str | None = None) -> str | None:
    """Why this JSON program (or part of it) could run code when torch loads and builds it, or None."""
    if isinstance(node, dict):
        for k, v in node.items():
            if k in _FREE_TEXT:
                continue
            if k == "expr_str":
                if not (isinstance(v, str) and _safe_sym_expr(v)):
                    return f"has a shape expression that torch would evaluate as Python: {str(v)[:80]!r}"
            elif k == "guards_code":
                for guard in v if isinstance(v, list) else [v]:
                    if not (isinstance(guard, str) and _safe_guard(guard)):
                        return f"has a guard that torch would run as Python: {str(guard)[:80]!r}"
            elif k in ("in_spec", "out_spec"):
                if not (isinstance(v, str) and _safe_treespec(v, kwargs_are_names=k == "in_spec")):
                    return f"has an {k} that torch would write into Python code: {str(v)[:80]!r}"
            else:
                problem = program_problem(v, k)
                if problem is not None:
                    return problem
    elif isinstance(node, list):
        for item in node:
            problem = program_problem(item, key)
            if problem is not None:
                return problem
    elif isinstance(node, str):
        if UNSAFE_TEXT.search(node):
            return f"has a name with quotes or control characters that torch writes into code: {node[:80]!r}"
        if key in _NAME_FIELDS and node and not _IDENTIFIER.match(node):
            return f"has a name that is not a Python identifier, which torch writes into code: {node[:80]!r}"
        if key in ("target", "as_operator") and not _TARGET.match(node):
            return f"calls {node[:80]!r}, which is not a torch operator"
    return None


def _safe_sym_expr(text: str) -> bool:
    """sympy's srepr of a shape — Symbol('s0', positive=True, integer=True), Add(...), Integer(4) — only."""
    if len(text) > 10_000:
        return False
    try:
        tokens = [
            t
            for t in tokenize.generate_tokens(io.StringIO(text).readline)
            if t.type not in (tokenize.NEWLINE, tokenize.NL, tokenize.ENDMARKER)
        ]
    except (tokenize.TokenError, SyntaxError):
        return False
    for i, tok in enumerate(tokens):
        before = tokens[i - 1].string if i > 0 else ""
        after = tokens[i + 1].string if i + 1 < len(tokens) else ""
        if tok.type == tokenize.NUMBER:
            continue
        if tok.type == tokenize.OP and tok.string in _SYMPY_OPS:
            keyword_arg = i >= 2 and tokens[i - 1].type == tokenize.NAME and tokens[i - 2].string in ("(", ",")
            if tok.string == "=" and not keyword_arg:
                return False
            continue
        if tok.type == tokenize.NAME:
            name = tok.string
            if after == "=" and before in ("(", ","):  # a keyword argument: positive=True
                if name.startswith("_") or keyword.iskeyword(name):
                    return False
            elif name not in _SYMPY_CALLS and not (_BARE_SYMBOL.match(name) and not _predefined(name)):
                return False
            continue
        if tok.type == tokenize.STRING:  # Symbol('s0'), Float('1.5', precision=53)
            if tok.string[:1] not in ("'", '"') or tok.string[:3] in ("'''", '"""'):
                return False
            value = ast.literal_eval(tok.string)
            if _NUMBER_TEXT.match(value):
                continue
            if _IDENTIFIER.match(value) and not value.startswith("_") and not _predefined(value):
                continue
            return False
        return False
    return True


def _predefined(name: str) -> bool:
    """A name sympy.sympify would resolve to an object rather than turn into a Symbol."""
    import sympy

    return keyword.iskeyword(name) or hasattr(builtins, name) or hasattr(sympy, name)


def _safe_guard(text: str) -> bool:
    """A shape guard as torch prints it — L['x'].size()[0] <= 16, math.floor(...), max(...) — only."""
    if len(text) > 10_000:
        return False
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False

    def ok(node: ast.AST) -> bool:
        if isinstance(node, ast.Expression):
            return ok(node.body)
        if isinstance(node, ast.Constant):  # strings only as plain keys: torch pastes guards into a "..." message
            return not isinstance(node.value, str) or re.fullmatch(r"[A-Za-z0-9_]*", node.value) is not None
        if isinstance(node, ast.Name):
            return node.id in _GUARD_NAMES
        if isinstance(node, ast.Attribute):
            if isinstance(node.value, ast.Name) and node.value.id == "math":
                return node.attr in _GUARD_MATH
            if isinstance(node.value, ast.Name) and node.value.id == "torch":
                return node.attr in _GUARD_TORCH
            return node.attr in _GUARD_METHODS and ok(node.value)
        if isinstance(node, ast.Subscript):
            return ok(node.value) and ok(node.slice)
        if isinstance(node, ast.Call):
            return not node.keywords and ok(node.func) and all(ok(a) for a in node.args)
        if isinstance(node, ast.BoolOp):
            return all(ok(v) for v in node.values)
        if isinstance(node, ast.BinOp):
            return ok(node.left) and ok(node.right)
        if isinstance(node, ast.UnaryOp):
            return ok(node.operand)
        if isinstance(node, ast.Compare):
            return ok(node.left) and all(ok(c) for c in node.comparators)
        return False

    return ok(tree)


def _safe_treespec(text: str, kwargs_are_names: bool) -> bool:
    """A pytree spec (JSON). Its keys go into generated code: no quotes, and kwargs must be identifiers."""
    try:
        spec = json.loads(text)
    except (ValueError, RecursionError):
        return False

    def strings(node: Any) -> Iterator[str]:
        if isinstance(node, str):
            yield node
        elif isinstance(node, dict):
            for k, v in node.items():
                yield k
                if k == "context" and isinstance(v, str):
                    try:
                        yield from strings(json.loads(v))
                    except ValueError:
                        yield v
                else:
                    yield from strings(v)
        elif isinstance(node, list):
            for item in node:
                yield from strings(item)

    if any(UNSAFE_TEXT.search(s) for s in strings(spec)):
        return False
    if kwargs_are_names:  # (args, kwargs): the kwargs' names become parameters of the module's forward()
        root = spec[1] if isinstance(spec, list) and len(spec) == 2 else None
        children = root.get("children_spec") if isinstance(root, dict) else None
        if isinstance(children, list) and len(children) == 2 and isinstance(children[1], dict):
            if children[1].get("type") == "builtins.dict":
                try:
                    keys = json.loads(children[1].get("context") or "[]")
                except (ValueError, TypeError):
                    return False
                if not isinstance(keys, list) or not all(isinstance(k, str) and _IDENTIFIER.match(k) for k in keys):
                    return False
    return True
