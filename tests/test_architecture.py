"""The package's shape, measured: no import cycles (imports inside functions count), no module using
another module's underscore names, short functions and classes, one home for the training contract.

The layers themselves (entry points above the engine, the engine above backends, state and the
contract) are import-linter's contract in pyproject.toml (``lint-imports``).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from keeptraining.adapter import _keeptraining_adapter as adapter_module
from keeptraining.contract import env as kt_env

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "action" / "keeptraining"
ADAPTER = PACKAGE / "adapter"
MAX_FUNCTION_LINES = 60  # a function's lines, its docstring left out
MAX_CLASS_LINES = 250


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _trees(paths: list[Path]) -> Iterator[tuple[Path, ast.Module]]:
    for path in paths:
        yield path, ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _resolve(module: str, name: str | None = None) -> str | None:
    """The package module an import names: ``from a.b import c`` is ``a.b.c`` when that is a module."""
    if name is not None and f"{module}.{name}" in MODULES:
        return f"{module}.{name}"
    return module if module in MODULES else None


def _imports(tree: ast.Module) -> set[str]:
    """Every keeptraining module ``tree`` imports, at the top or inside a function."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {m for alias in node.names if (m := _resolve(alias.name)) is not None}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                target = _resolve(node.module, alias.name)
                if target is not None:
                    found.add(target)
    return found


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), or a module importing itself."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph.get(v, ()):
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles_counting_imports_inside_functions() -> None:
    graph = {}
    for path, tree in _trees(list(MODULES.values())):
        name = _module_name(path)
        # A package's modules import through it (its __init__ runs first): not an edge of the cycle.
        graph[name] = {m for m in _imports(tree) if not name.startswith(m + ".") and m != name}
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle_through_a_function_level_import() -> None:
    tree = ast.parse("def f():\n    from keeptraining.engine import chain\n")
    assert _imports(tree) == {"keeptraining.engine.chain"}
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def _private_uses(tree: ast.Module) -> list[str]:
    """``from x import _y`` and ``x._y`` where ``x`` was imported from keeptraining."""
    imported: set[str] = set()
    uses = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("keeptraining"):
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    uses.append(f"from {node.module} import {alias.name}")
                imported.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import):
            imported |= {
                alias.asname or alias.name.split(".")[0]
                for alias in node.names
                if alias.name.startswith("keeptraining")
            }
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)):
            continue
        if node.value.id in imported and node.attr.startswith("_") and not node.attr.startswith("__"):
            uses.append(f"{node.value.id}.{node.attr} (line {node.lineno})")
    return uses


def _outside_adapter() -> list[Path]:
    return [p for p in MODULES.values() if ADAPTER not in p.parents]


@pytest.mark.parametrize("folder", ["action/keeptraining", "scripts"])
def test_no_module_uses_another_modules_underscore_names(folder: str) -> None:
    paths = _outside_adapter() if folder == "action/keeptraining" else sorted((ROOT / folder).glob("*.py"))
    found = {str(p.relative_to(ROOT)): uses for p, tree in _trees(paths) if (uses := _private_uses(tree))}
    assert found == {}


def test_the_private_use_finder_sees_both_forms() -> None:
    tree = ast.parse(
        "from keeptraining.engine import chain\nfrom keeptraining.engine.chain import _x\n"
        "chain._new_record()\n"
    )
    assert _private_uses(tree) == ["from keeptraining.engine.chain import _x", "chain._new_record (line 3)"]


def _lengths(tree: ast.Module) -> Iterator[tuple[str, str, int]]:
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if (
                body
                and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)
                and len(body) > 1
            ):
                body = body[1:]  # the docstring is not counted
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            signature = body[0].lineno - first
            assert node.end_lineno is not None and body[-1].end_lineno is not None
            yield "function", node.name, signature + body[-1].end_lineno - body[0].lineno + 1
        elif isinstance(node, ast.ClassDef):
            assert node.end_lineno is not None
            yield "class", node.name, node.end_lineno - node.lineno + 1


def test_functions_and_classes_outside_the_adapter_stay_short() -> None:
    long = []
    for path, tree in _trees(_outside_adapter()):
        for kind, name, lines in _lengths(tree):
            bound = MAX_FUNCTION_LINES if kind == "function" else MAX_CLASS_LINES
            if lines > bound:
                long.append(f"{path.relative_to(PACKAGE)}: {kind} {name} has {lines} lines (at most {bound})")
    assert long == []


def test_the_adapter_keeps_a_copy_of_the_contract_that_matches() -> None:
    assert adapter_module.CONTRACT_VARIABLES == kt_env.VARIABLES
    text = (ADAPTER / "_keeptraining_adapter.py").read_text(encoding="utf-8")
    read = set(re.findall(r"[\"'](KT_[A-Z_]+)[\"']", text))
    assert read, "the adapter reads the contract's variables"
    assert all(
        any(v == name or (name.endswith("_") and v.startswith(name)) for name in kt_env.VARIABLES)
        for v in read
    ), read


def test_only_the_contract_module_spells_the_contract_variables() -> None:
    """Outside contract/env.py (and the adapter's checked copy), no module writes a KT_* contract name."""
    names = [v for v in kt_env.VARIABLES if not v.endswith("_")]
    spelled = {}
    for path in _outside_adapter():
        if path == PACKAGE / "contract" / "env.py":
            continue
        # Docstrings may name them.
        code = re.sub(r'""".*?"""', "", path.read_text(encoding="utf-8"), flags=re.S)
        hits = [n for n in names if re.search(rf"[\"']{n}[\"']", code)]
        hits += ["KT_HP_"] if re.search(r"[\"']KT_HP_", code) or 'f"KT_HP_' in code else []
        if hits:
            spelled[str(path.relative_to(PACKAGE))] = hits
    assert spelled == {}


def test_readme_documents_every_variable_of_the_contract_and_evaluate_only() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    rows = set(re.findall(r"^\| `(KT_[A-Z_<>]+)`", readme, flags=re.M))
    for name in kt_env.VARIABLES:
        assert any(row == name or (name.endswith("_") and row.startswith(name)) for row in rows), name
    assert "evaluate only" in readme.lower()
