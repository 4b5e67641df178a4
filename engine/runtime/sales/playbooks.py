"""Stage playbooks: the tasks a stage creates when a record enters it, and which of them are still open.

Tasks are ordinary records of the ``task`` entity, created through the
record service (rules, audit and events apply), linked to the record by the
task entity's reference field to it, and marked with the stage they were
created for (``pipeline_stage``, a field the pipeline kind adds to ``task``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from engine.dsl.model import text_in
from engine.dsl.sales.pipeline import TASK_CLOSED, TASK_ENTITY, TASK_STAGE_FIELD, Pipeline, Stage, link_field
from engine.errors import ExpressionEvalError
from engine.runtime.records import exprs, rows
from engine.runtime.sales.recordctx import eval_context

if TYPE_CHECKING:
    from engine.runtime.runtime import UnitOfWork

SUBJECT_MAX = 200


def create_tasks(uow: UnitOfWork, p: Pipeline, stage: Stage, record: Mapping[str, Any]) -> list[int]:
    """Create the tasks of ``stage`` for ``record`` (just written); returns their ids.

    Each task goes to the user its ``owner:`` expression gives (the record's owner when the expression
    gives none). The pipeline's own rule makes these writes, so they run with the system's permissions
    (a rep may lack the right to create a task for a manager); rules, audit and steps still apply.
    """
    ws = uow.workspace
    task = ws.entities[TASK_ENTITY]
    link = link_field(task, p.entity)
    assert link is not None  # the pipeline compiler checked the task entity
    today = uow.clock.now().date()
    batch = []
    for t in stage.tasks:
        values: dict[str, Any] = {
            "subject": text_in(t.subject, ws.locale, "task")[:SUBJECT_MAX], link.name: record["id"],
            TASK_STAGE_FIELD: stage.key, "owner_id": _owner(uow, t.owner, record)}
        if t.due_in_days is not None and "due_date" in task.fields:
            values["due_date"] = today + dt.timedelta(days=t.due_in_days)
        if t.priority is not None:
            values["priority"] = t.priority
        batch.append(values)
    with uow.elevated():
        return [uow.records.create(TASK_ENTITY, v, bypass_readonly=True)["id"] for v in batch]


def _owner(uow: UnitOfWork, owner: Any, record: Mapping[str, Any]) -> Any:
    if owner is not None:
        try:
            chosen = exprs.evaluate(owner, record, eval_context(uow, None))
        except ExpressionEvalError:
            chosen = None
        if chosen is not None:
            return chosen
    return record.get("owner_id")


def open_tasks(uow: UnitOfWork, p: Pipeline, stage_key: str, record_id: int) -> list[dict[str, Any]]:
    """The tasks created for ``stage_key`` of the record that are neither done nor cancelled (id, subject)."""
    task = uow.workspace.entities.get(TASK_ENTITY)
    link = link_field(task, p.entity) if task is not None else None
    if task is None or link is None or TASK_STAGE_FIELD not in task.fields:
        return []
    plan = uow.state.plan(TASK_ENTITY)
    t = plan.table
    stmt = select(t).where(t.c[link.column_name] == record_id, t.c[TASK_STAGE_FIELD] == stage_key,
                           t.c.deleted_at.is_(None)).order_by(t.c.id)
    found = [rows.read(plan.readers, r._mapping) for r in uow.conn.execute(stmt)]
    return [{"id": r["id"], "subject": r.get("subject")} for r in found if r.get("status") not in TASK_CLOSED]
