"""The encrypted-fields feature plugin (:data:`engine.plugins.host.DEFAULT_PLUGINS`): its plan step."""

from __future__ import annotations

from typing import Any

from engine.dsl.model import Workspace
from engine.plugins import hookimpl
from engine.runtime.encryption.migrate import EncryptionPlanStep


@hookimpl
def crm_plan_steps(workspace: Workspace) -> list[Any]:
    """Encrypt (or decrypt) the stored values of a field whose ``encrypted:`` changed."""
    return [EncryptionPlanStep()]
