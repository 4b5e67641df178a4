"""pools: runtime services (to be written)."""

from __future__ import annotations

from typing import Any

from engine.dsl.model import Workspace


def write_steps(workspace: Workspace) -> list[Any]:
    """The write steps this feature adds for ``workspace``."""
    return []
