"""The sales process's configuration kinds: ``pipeline``, ``pool``, ``scoring``, ``assignment``,
``dedupe`` and ``conversion`` (one module each; their JSON Schemas are in engine/dsl/schemas/)."""

from __future__ import annotations

from engine.dsl.kinds import KindSpec
from engine.dsl.sales import assignment, conversion, dedupe, pipeline, pool, scoring


def sales_kinds() -> list[KindSpec]:
    """The kinds, in the order they compile (a pool refers to entities; assignment to pools)."""
    return [m.KIND for m in (pipeline, dedupe, scoring, pool, assignment, conversion) if m.KIND is not None]
