"""The feature endpoints, nested in the ``/api/v1`` blueprint (so they share its authentication).

Each module holds one feature's views on its own blueprint and registers its OpenAPI paths with
:mod:`engine.api.apidoc`.
"""

from __future__ import annotations

from engine.api import (
    approvals,
    assignment,
    bulk,
    collab,
    conversion,
    dedupe,
    handover,
    notifications,
    people,
    pipelines,
    pools,
    rates,
    recycle,
    scoring,
    search,
)
from engine.api.views import bp

CHILDREN = (notifications.bp, pipelines.bp, handover.bp, scoring.bp, assignment.bp, dedupe.bp, conversion.bp,
            pools.bp, approvals.bp, bulk.bp, recycle.bp, rates.bp, collab.bp, people.bp,
            search.bp)

for _child in CHILDREN:
    bp.register_blueprint(_child)
