"""The multi-currency feature plugin (registered through :data:`engine.plugins.host.DEFAULT_PLUGINS`):
the ``convert()`` expression function, with its Python and SQL forms."""

from __future__ import annotations

from engine.dsl.expressions import FunctionDef
from engine.plugins import hookimpl
from engine.runtime.currency import convert


@hookimpl
def crm_expression_functions() -> list[FunctionDef]:
    """``convert(amount, 'CNY'[, day])``."""
    return convert.functions()
