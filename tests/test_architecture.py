"""Layers run one way: dsl <- runtime <- api <- admin <- cli (checked on the source with ast)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: package -> modules it must never import (prefix match)
FORBIDDEN = {
    "engine/dsl": ("engine.runtime", "engine.api", "engine.plugins", "admin", "engine.cli", "sqlalchemy", "flask",
                   "SpiffWorkflow", "alembic", "pluggy"),
    "engine/plugins": ("engine.runtime", "engine.api", "admin", "engine.cli", "sqlalchemy", "flask"),
    "engine/runtime": ("engine.api", "admin", "engine.cli", "flask"),
    "engine/api": ("admin", "engine.cli"),
}


def imports_of(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text("utf-8"), str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.extend((node.lineno, a.name) for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module))
    return out


def test_no_import_points_the_wrong_way():
    wrong = []
    for package, banned in FORBIDDEN.items():
        for path in sorted((ROOT / package).rglob("*.py")):
            for line, module in imports_of(path):
                if any(module == b or module.startswith(b + ".") for b in banned):
                    wrong.append(f"{path.relative_to(ROOT)}:{line}: imports {module}")
    assert not wrong, "\n".join(wrong)


#: The one sanctioned place: Python source generated from a *checked* expression tree (every literal
#: via repr, every name validated), verified, compiled once; never user text.
GENERATED_CODE_ONLY = {"engine/dsl/expressions/pycompile.py"}


def test_no_eval_or_exec_of_text_in_the_engine():
    offenders = []
    for path in sorted((ROOT / "engine").rglob("*.py")):
        if path.relative_to(ROOT).as_posix() in GENERATED_CODE_ONLY:
            continue
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("eval", "exec"):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.func.id}()")
    assert not offenders, "\n".join(offenders)
