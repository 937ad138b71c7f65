"""Modules stay small enough to read: no file in src/ over 500 lines and no function over 80, unless the file
says why in a `# shape:` comment (one line naming the exception)."""

from __future__ import annotations

import ast
from pathlib import Path

import tunewise

PACKAGE = Path(tunewise.__file__).parent
MAX_FILE_LINES = 500
MAX_FUNCTION_LINES = 80


def oversized(path: Path, root: Path = PACKAGE) -> list[str]:
    text = path.read_text(encoding="utf-8")
    if "# shape:" in text:
        return []
    found = []
    if text.count("\n") > MAX_FILE_LINES:
        found.append(f"{path.relative_to(root)}: {text.count(chr(10))} lines")
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = node.end_lineno - node.lineno + 1
            if length > MAX_FUNCTION_LINES:
                found.append(f"{path.relative_to(root)}:{node.lineno} {node.name}: {length} lines")
    return found


def test_the_shape_check_sees_a_long_function(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    long = tmp_path / "long.py"
    long.write_text(f"def f():\n{body}\n")
    assert len(oversized(long, tmp_path)) == 1
    long.write_text(f"# shape: generated table, one statement a line\ndef f():\n{body}\n")
    assert oversized(long, tmp_path) == []


def test_no_oversized_file_or_function_without_a_reason():
    found = [problem for path in sorted(PACKAGE.rglob("*.py")) for problem in oversized(path)]
    assert not found, "over the size limits (split it, or say why in a `# shape:` comment):\n" + "\n".join(found)
