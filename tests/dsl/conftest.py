"""Helpers to write small workspaces on disk for config-language tests."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

WriteWs = Callable[..., Path]


@pytest.fixture
def write_ws(tmp_path: Path) -> WriteWs:
    """Write a workspace folder: ``write_ws({"entities/x.yaml": "..."}, extends="base")``."""

    def write(files: dict[str, str], *, extends: str = "base", name: str = "acme") -> Path:
        folder = tmp_path / name
        folder.mkdir(exist_ok=True)
        (folder / "workspace.yaml").write_text(f"workspace: {name}\nextends: {extends}\n", "utf-8")
        for rel, text in files.items():
            path = folder / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(text), "utf-8")
        return folder

    return write
