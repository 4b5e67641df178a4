"""Reading and writing the approval tables (``crm_approval_*``, ``crm_delegations``) -- plain rows."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, insert, select, update

from engine.errors import NotFound
from engine.runtime.approvals import rules
from engine.runtime.engine_tables import (
    crm_approval_decisions,
    crm_approval_instances,
    crm_approval_specs,
    crm_approval_tasks,
    crm_delegations,
)

if TYPE_CHECKING:
    from engine.runtime.runtime import UnitOfWork

INST, T, D = crm_approval_instances, crm_approval_tasks, crm_approval_decisions
#: decisions that count as "an approver acted" (a withdraw is refused after one of them)
APPROVER_ACTS = frozenset({"approve", "reject", "reassign", "add_signer", "return", "auto_approve", "auto_reject"})


def new_id(result: Any) -> int:
    """The id an INSERT made."""
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


def ensure_spec(uow: UnitOfWork, digest: str, flow: str, process: str, spec: Mapping[str, Any]) -> None:
    """Store the spec of a flow version once (the first instance of the version stores it)."""
    s = crm_approval_specs
    if uow.conn.execute(select(s.c.digest).where(s.c.digest == digest)).first() is None:
        uow.conn.execute(insert(s).values(digest=digest, flow=flow, process=process, spec=dict(spec),
                                          revision_id=uow.state.revision_id, created_at=uow.clock.now()))


def stored_spec(conn: Connection, digest: str) -> Any:
    """The spec row of a flow version (spec, revision_id), or None."""
    s = crm_approval_specs
    return conn.execute(select(s.c.spec, s.c.revision_id).where(s.c.digest == digest)).first()


def instance(conn: Connection, instance_id: int, *, lock: bool = False) -> Any:
    """The instance row (NotFound when there is none); ``lock``: FOR UPDATE (PostgreSQL)."""
    stmt = select(INST).where(INST.c.id == instance_id)
    row = conn.execute(stmt.with_for_update() if lock else stmt).first()
    if row is None:
        raise NotFound(f"no approval instance {instance_id}", code="not_found")
    return row


def pending_for(conn: Connection, entity: str, record_id: int, flow: str | None = None) -> list[Any]:
    """The pending instances of one record (of ``flow`` when given)."""
    stmt = select(INST).where(INST.c.entity == entity, INST.c.record_id == record_id, INST.c.status == "pending")
    if flow is not None:
        stmt = stmt.where(INST.c.flow == flow)
    return list(conn.execute(stmt.order_by(INST.c.id)))


def instances_of(conn: Connection, entity: str, record_id: int) -> list[Any]:
    stmt = select(INST).where(INST.c.entity == entity, INST.c.record_id == record_id)
    return list(conn.execute(stmt.order_by(INST.c.id)))


def new_instance(uow: UnitOfWork, *, flow: str, digest: str, entity: str, record_id: int,
                 submitter_id: int | None) -> int:
    now = uow.clock.now()
    result = uow.conn.execute(insert(INST).values(
        flow=flow, spec_digest=digest, entity=entity, record_id=record_id, status="pending",
        submitter_id=submitter_id, state={}, version=1, created_at=now, updated_at=now))
    return new_id(result)


def save_instance(uow: UnitOfWork, instance_id: int, **values: Any) -> None:
    """Write the instance's new state/status (``version`` bumped)."""
    uow.conn.execute(update(INST).where(INST.c.id == instance_id)
                     .values(version=INST.c.version + 1, updated_at=uow.clock.now(), **values))


def task(conn: Connection, task_id: int, *, lock: bool = False) -> Any:
    stmt = select(T).where(T.c.id == task_id)
    row = conn.execute(stmt.with_for_update() if lock else stmt).first()
    if row is None:
        raise NotFound(f"no approval task {task_id}", code="not_found")
    return row


def tasks_of(conn: Connection, instance_id: int, wf_task: str | None = None) -> list[Any]:
    stmt = select(T).where(T.c.instance_id == instance_id)
    if wf_task is not None:
        stmt = stmt.where(T.c.wf_task == wf_task)
    return list(conn.execute(stmt.order_by(T.c.id)))


def hand_over_signers(uow: UnitOfWork, old_id: int, new_id: int) -> None:
    """Signers added (加签) to a reassigned task belong to the task that replaces it."""
    uow.conn.execute(update(T).where(T.c.added_by == old_id).values(added_by=new_id))


def rule_rows(rows: Sequence[Any]) -> list[rules.Row]:
    return [rules.Row(r.id, r.status, r.seq, r.added_by, r.position, r.group_mode) for r in rows]


def add_task(uow: UnitOfWork, **values: Any) -> int:
    result = uow.conn.execute(insert(T).values(created_at=uow.clock.now(), **values))
    return new_id(result)


def set_task(uow: UnitOfWork, task_id: int, **values: Any) -> None:
    uow.conn.execute(update(T).where(T.c.id == task_id).values(**values))


def record_decision(uow: UnitOfWork, instance_id: int, decision: str, *, task: Any = None,
                    comment: str | None = None, data: Mapping[str, Any] | None = None,
                    key: str | None = None, system: bool = False) -> int:
    """One row of the instance's history: who did what, for whom, when, with what comment."""
    actor = None if system else uow.actor.user_id
    behalf = task.assignee_id if task is not None and actor is not None and task.assignee_id != actor else None
    result = uow.conn.execute(insert(D).values(
        instance_id=instance_id, task_id=task.id if task is not None else None,
        step=task.step if task is not None else None, actor_id=actor, on_behalf_of=behalf, decision=decision,
        comment=comment, data=dict(data) if data else None, at=uow.clock.now(), idempotency_key=key))
    return new_id(result)


def decision_by_key(conn: Connection, key: str) -> Any:
    return conn.execute(select(D).where(D.c.idempotency_key == key)).first()


def decisions_of(conn: Connection, instance_id: int) -> list[Any]:
    return list(conn.execute(select(D).where(D.c.instance_id == instance_id).order_by(D.c.id)))


def approver_acted(conn: Connection, instance_id: int) -> bool:
    stmt = select(D.c.id).where(D.c.instance_id == instance_id, D.c.decision.in_(sorted(APPROVER_ACTS))).limit(1)
    return conn.execute(stmt).first() is not None


# --------------------------------------------------------------------------- delegations


def delegators(conn: Connection, delegate_id: int, at: dt.datetime) -> list[int]:
    """The users ``delegate_id`` stands in for at ``at`` (their dated rules include ``at``)."""
    d = crm_delegations
    stmt = select(d.c.user_id).where(d.c.delegate_id == delegate_id, d.c.starts_at <= at, d.c.ends_at > at)
    return sorted({int(r[0]) for r in conn.execute(stmt)})


def delegates_for(conn: Connection, user_id: int, at: dt.datetime) -> list[int]:
    """Who stands in for ``user_id`` at ``at``."""
    d = crm_delegations
    stmt = select(d.c.delegate_id).where(d.c.user_id == user_id, d.c.starts_at <= at, d.c.ends_at > at)
    return sorted({int(r[0]) for r in conn.execute(stmt)})
