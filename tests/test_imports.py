"""The package's import graph: no cycles (function-level imports included, `TYPE_CHECKING` blocks excluded),
and `import tunewise.config` stays free of torch, scikit-learn and scipy so config errors and
`tunewise init --explain` are instant."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import tunewise

HEAVY = {"torch", "sklearn", "scipy", "transformers", "numpy"}

PACKAGE = Path(tunewise.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST, module: str, is_package: bool, known: set[str]) -> set[str]:
    """Every tunewise module `tree` imports, anywhere but under `if TYPE_CHECKING:`."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".") if is_package else module.split(".")[:-1]
                anchor = anchor[:len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                found.add(candidate if candidate in known else base)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    # the module each import names (a package's __init__ only when the package itself is imported from)
    return {name for name in found if name in known and name != module}


def import_graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    known = set(files)
    return {name: _imports(ast.parse(path.read_text(encoding="utf-8")), name, path.name == "__init__.py", known)
            for name, path in files.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    sys.setrecursionlimit(10_000)

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                connect(w)
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
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return found


def test_cycle_finder_sees_a_cycle_through_a_function_level_import() -> None:
    known = {"tunewise.a", "tunewise.b", "tunewise.c"}
    a = ast.parse("from tunewise.b import x\n")
    b = ast.parse("def f():\n    from tunewise.c import y\n")
    c = ast.parse("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from tunewise.b import x\n"
                  "import tunewise.a\n")
    graph = {"tunewise.a": _imports(a, "tunewise.a", False, known), "tunewise.b": _imports(b, "tunewise.b", False, known),
             "tunewise.c": _imports(c, "tunewise.c", False, known)}
    assert cycles(graph) == [["tunewise.a", "tunewise.b", "tunewise.c"]]
    graph["tunewise.c"].discard("tunewise.a")
    assert cycles(graph) == []


def test_the_package_has_no_import_cycles() -> None:
    found = cycles(import_graph())
    assert not found, "import cycles:\n" + "\n".join(" -> ".join(c) for c in found)


@pytest.mark.parametrize("module", ["tunewise.config", "tunewise.cli.app"])
def test_config_and_cli_import_no_torch_sklearn_or_scipy(module: str) -> None:
    """The config (and the CLI that loads it) stays light: config errors and `init --explain` are instant."""
    code = (f"import json, sys, {module}; "
            "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))")
    loaded = set(json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                           check=True).stdout))
    assert not loaded & HEAVY, loaded & HEAVY
