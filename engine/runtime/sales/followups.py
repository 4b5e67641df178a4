"""Follow-ups: an ``activity`` stamps the records it is linked to.

Creating or updating an activity linked to a lead, account, contact or
opportunity (any reference of the activity to an entity with a
``last_activity_at`` datetime field) sets that parent's ``last_activity_at``
to when the activity happened (``occurred_at``, never later than now; now
when it has none) unless the parent already has a later one, and copies the
activity's ``next_step_date`` (and ``next_step``) to parents that have those
fields.  The stamp is a write through the record service (rules, steps,
audit and events apply), made with the system's permissions: the author was
allowed to link the activity to the parent, which is the rule that allows
the stamp -- a rep logging a call on a shared account may not edit it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from engine.dsl.model import Entity, Workspace
from engine.runtime.records.steps import WriteContext
from engine.runtime.sales.recordctx import read_record

if TYPE_CHECKING:
    from engine.runtime.runtime import UnitOfWork

ACTIVITY_ENTITY = "activity"
STAMP_FIELD = "last_activity_at"
#: activity field -> the parent field it is copied to (where the parent has it)
COPIED = (("next_step_date", "next_step_date"), ("next_step", "next_step"))


def write_steps(workspace: Workspace) -> list[Any]:
    """The follow-up step, when the workspace's activities link to records that keep ``last_activity_at``."""
    activity = workspace.entities.get(ACTIVITY_ENTITY)
    links = parent_links(workspace, activity) if activity is not None else {}
    return [FollowUpStamp(links)] if links else []


def parent_links(workspace: Workspace, activity: Entity) -> dict[str, str]:
    """activity reference field -> parent entity, for the parents with a ``last_activity_at`` datetime."""
    out = {}
    for f in activity.fields.values():
        target = workspace.entities.get(f.reference or "") if f.type == "reference" else None
        stamp = target.fields.get(STAMP_FIELD) if target is not None else None
        if target is not None and stamp is not None and stamp.type == "datetime":
            out[f.name] = target.name
    return out


@dataclass(frozen=True, eq=False)  # compared and hashed by identity (it holds a mapping)
class FollowUpStamp:
    """After an activity is written, stamp each record it links to (see the module docstring)."""

    links: Mapping[str, str]
    name: str = "followup_stamp"
    order: int = 500

    def applies_to(self, entity: str) -> bool:
        return entity == ACTIVITY_ENTITY

    def before_write(self, ctx: WriteContext, entity: str, record: dict[str, Any],
                     old: Mapping[str, Any] | None) -> None:
        """Nothing before the write: the stamp follows it."""

    def after_write(self, ctx: WriteContext, entity: str, record: Mapping[str, Any],
                    old: Mapping[str, Any] | None) -> None:
        if ctx.action not in ("create", "update"):
            return
        for link, parent in self.links.items():
            parent_id = record.get(link)
            if parent_id is not None:
                stamp_parent(ctx.uow, parent, int(parent_id), record)


def stamp_parent(uow: UnitOfWork, parent: str, parent_id: int, activity: Mapping[str, Any]) -> bool:
    """Stamp ``parent`` ``parent_id`` for ``activity``; False when there was nothing to change."""
    now = uow.clock.now()
    happened = activity.get("occurred_at")
    at = min(happened, now) if isinstance(happened, dt.datetime) else now
    fields = uow.workspace.entities[parent].fields
    current = read_record(uow, parent, parent_id)
    if current is None or current.get("deleted_at") is not None:
        return False  # deleted since: nothing to stamp
    values: dict[str, Any] = {}
    if current.get(STAMP_FIELD) is None or current[STAMP_FIELD] < at:
        values[STAMP_FIELD] = at
    for source, target in COPIED:
        if target in fields and activity.get(source) is not None and activity.get(source) != current.get(target):
            values[target] = activity[source]
    if not values:
        return False
    with uow.elevated():
        uow.records.update(parent, parent_id, values, expected_version=None, bypass_readonly=True)
    return True
