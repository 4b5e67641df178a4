"""The search feature plugin (registered through :data:`engine.plugins.host.DEFAULT_PLUGINS`): the plan step
that builds the SQLite search indexes.  (PostgreSQL's trigram indexes are ordinary planned indexes; the
endpoints live in :mod:`engine.api.search`.)"""

from __future__ import annotations

from typing import Any

from engine.dsl.model import Workspace
from engine.plugins import hookimpl
from engine.runtime.search import fts


@hookimpl
def crm_plan_steps(workspace: Workspace) -> list[Any]:
    """``search_index``: build an entity's FTS5 trigram index when its searchable fields change (SQLite)."""
    return fts.plan_steps(workspace)
