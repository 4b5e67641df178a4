"""Installing a plugin for a test the way pip does: a package and its ``*.dist-info`` with an
``entry_points.txt`` in a folder on ``sys.path``, so discovery goes through importlib.metadata for real."""

from __future__ import annotations

import importlib
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

Install = Callable[[str, str], None]


@pytest.fixture
def install_plugin(tmp_path: Path) -> Iterator[Install]:
    """``install_plugin(name, source)``: module ``name`` with ``source``, registered as plugin ``name``."""
    root = tmp_path / "site"
    root.mkdir()
    sys.path.insert(0, str(root))
    names: list[str] = []

    def install(name: str, source: str) -> None:
        (root / f"{name}.py").write_text(textwrap.dedent(source), encoding="utf-8")
        info = root / f"{name}-1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n", encoding="utf-8")
        (info / "entry_points.txt").write_text(f"[crm_engine.plugins]\n{name} = {name}\n", encoding="utf-8")
        names.append(name)
        importlib.invalidate_caches()

    try:
        yield install
    finally:
        sys.path.remove(str(root))
        for name in names:
            sys.modules.pop(name, None)
        importlib.invalidate_caches()
