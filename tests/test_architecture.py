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


def module_name(path: Path) -> str:
    """``engine/runtime/schema/apply.py`` -> ``engine.runtime.schema.apply`` (a package: its own name)."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _absolute(path: Path, node: ast.ImportFrom) -> str:
    """The absolute module of an ``from ... import`` (relative ones resolved against the file's package)."""
    if not node.level:
        return node.module or ""
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def imports_of(path: Path, *, typing_too: bool = True) -> list[tuple[int, str]]:
    """(line, module) of every import in ``path``, relative ones resolved, function-level ones included;
    ``typing_too=False`` leaves out the imports under ``if TYPE_CHECKING:`` (they never run)."""
    tree = ast.parse(path.read_text("utf-8"), str(path))
    out: list[tuple[int, str]] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if (not typing_too and isinstance(child, ast.If) and isinstance(child.test, ast.Name)
                    and child.test.id == "TYPE_CHECKING"):
                continue
            if isinstance(child, ast.Import):
                out.extend((child.lineno, a.name) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = _absolute(path, child)
                out.append((child.lineno, base))
                out.extend((child.lineno, f"{base}.{a.name}") for a in child.names)
            visit(child)

    visit(tree)
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


def _engine_modules() -> dict[str, Path]:
    return {module_name(p): p for p in (ROOT / "engine").rglob("*.py")}


def _dependencies(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Engine modules ``name`` imports when it runs (an import of ``pkg.sub`` is of ``pkg.sub``; a package
    the module lives in is not counted: Python imports it first anyway)."""
    out = set()
    for _line, target in imports_of(path, typing_too=False):
        while target and target not in modules:
            target = target.rpartition(".")[0]
        if target and target != name and not name.startswith(target + "."):
            out.add(target)
    return out


def test_no_import_loop_inside_the_engine():
    """Module-level and function-level imports alike (only ``if TYPE_CHECKING:`` ones are left out)."""
    modules = _engine_modules()
    graph = {name: _dependencies(name, path, modules) for name, path in modules.items()}
    loops: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                loops.append([*path[path.index(dep):], dep])
            elif dep not in state:
                visit(dep, [*path, dep])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not loops, "import loops:\n" + "\n".join(" -> ".join(loop) for loop in loops)


def test_relative_imports_are_checked_too(tmp_path: Path) -> None:
    """The direction check sees ``from ..runtime import x`` as engine.runtime (a test of the checker)."""
    fake = ROOT / "engine" / "dsl" / "_probe_for_test.py"
    try:
        fake.write_text("from ..runtime import db\nfrom .model import Field\n", encoding="utf-8")
        found = [m for _line, m in imports_of(fake)]
        assert "engine.runtime" in found and "engine.runtime.db" in found and "engine.dsl.model" in found
    finally:
        fake.unlink()
