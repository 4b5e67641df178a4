"""The ``pipeline:`` kind (to be written)."""

from __future__ import annotations

from engine.dsl.kinds import KindSpec

KIND: KindSpec | None = None
