"""The people feature plugin (registered through :data:`engine.plugins.host.DEFAULT_PLUGINS`): the
ownership transfer rule as a write step."""

from __future__ import annotations

from typing import Any

from engine.dsl.model import Workspace
from engine.plugins import hookimpl
from engine.runtime.people import transfer


@hookimpl
def crm_write_steps(workspace: Workspace) -> list[Any]:
    """``people.transfer`` (order 50): a change of ``owner_id`` meets the roles' ``transfer:`` rule."""
    return transfer.write_steps(workspace)
