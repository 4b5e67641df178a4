"""The built-in plugin: the engine's own kinds and expression functions, registered through the same
hooks as any installed plugin (Datasette's default plugins)."""

from __future__ import annotations

from typing import Any

import pluggy

from engine.dsl.builtin import builtin_kinds
from engine.dsl.expressions.functions import builtin_functions
from engine.plugins.hookspecs import PROJECT

hookimpl = pluggy.HookimplMarker(PROJECT)


@hookimpl
def crm_config_kinds() -> list[Any]:
    """workspace, industry, entity, role."""
    return builtin_kinds()


@hookimpl
def crm_expression_functions() -> list[Any]:
    """lower, upper, trim, len, contains, coalesce, round, days_since, add_days, ..."""
    return list(builtin_functions())
