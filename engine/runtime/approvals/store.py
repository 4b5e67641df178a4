"""Reading and writing the approval tables (``crm_approval_*``, ``crm_delegations``) -- plain rows."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, bindparam, insert, select, update

from engine.errors import NotFound
from engine.runtime import rawsql
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

# Hot statements, built once: building ``select(...).where(...)`` per call (coercions, cache-key
# generation) cost more than running it; a reused statement memoises its cache key, so a call only binds.
# The bind names start with ``b_`` so they never collide with a column given as an execution parameter.
# The hottest go through the driver (:class:`~engine.runtime.rawsql.Query`).
_by_id = select(INST).where(INST.c.id == bindparam("b_id"))
_INSTANCE, _INSTANCE_LOCKED = rawsql.Query(_by_id), rawsql.Query(_by_id.with_for_update())
_pending = select(INST).where(INST.c.entity == bindparam("b_entity"), INST.c.record_id == bindparam("b_record"),
                              INST.c.status == "pending").order_by(INST.c.id)
_PENDING, _PENDING_OF = rawsql.Query(_pending), rawsql.Query(_pending.where(INST.c.flow == bindparam("b_flow")))
#: the instance of a task, locked: one statement where reading the task and then its instance took two
_OF_TASK_LOCKED = rawsql.Query(select(INST).where(
    INST.c.id == select(T.c.instance_id).where(T.c.id == bindparam("b_id")).scalar_subquery()).with_for_update())
_TASKS_OF = rawsql.Query(select(T).where(T.c.instance_id == bindparam("b_instance")).order_by(T.c.id))
#: the columns of a task row that Core would default (the driver-level insert does not)
_TASK_DEFAULTS = {"seq": 0, "added_by": None, "position": None, "group_mode": None, "reassigned_from": None,
                  "due_at": None, "remind_at": None, "reminders": 0, "escalated": False, "decided_at": None,
                  "decided_by": None}
_DL = crm_delegations
_DELEGATORS = rawsql.Query(select(_DL.c.user_id).where(
    _DL.c.delegate_id == bindparam("b_user"), _DL.c.starts_at <= bindparam("b_at"), _DL.c.ends_at > bindparam("b_at")))
_DELEGATES = rawsql.Query(select(_DL.c.delegate_id).where(
    _DL.c.user_id == bindparam("b_user"), _DL.c.starts_at <= bindparam("b_at"), _DL.c.ends_at > bindparam("b_at")))


#: memo table of the runtime state: spec digests found stored (a spec row is never deleted)
SPECS_SEEN = "approvals.specs_seen"


def new_id(result: Any) -> int:
    """The id an INSERT made."""
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


def ensure_spec(uow: UnitOfWork, digest: str, flow: str, process: str, spec: Mapping[str, Any]) -> None:
    """Store the spec of a flow version once (the first instance of the version stores it).

    The row is remembered as stored only once the unit commits: the row found may be this unit's own
    insert, which a rollback (a failed bulk write, a dry run) takes back."""
    s = crm_approval_specs
    if uow.state.cached(SPECS_SEEN, digest):  # seen committed: specs are never deleted
        return
    if uow.conn.execute(select(s.c.digest).where(s.c.digest == digest)).first() is None:
        uow.conn.execute(insert(s).values(digest=digest, flow=flow, process=process, spec=dict(spec),
                                          revision_id=uow.state.revision_id, created_at=uow.clock.now()))
    state = uow.state
    uow.committed.append(lambda: state.store(SPECS_SEEN, digest, True))


def stored_spec(conn: Connection, digest: str) -> Any:
    """The spec row of a flow version (spec, revision_id), or None."""
    s = crm_approval_specs
    return conn.execute(select(s.c.spec, s.c.revision_id).where(s.c.digest == digest)).first()


def instance(conn: Connection, instance_id: int, *, lock: bool = False) -> Any:
    """The instance row (NotFound when there is none); ``lock``: FOR UPDATE (PostgreSQL)."""
    row = (_INSTANCE_LOCKED if lock else _INSTANCE).first(conn, {"b_id": instance_id})
    if row is None:
        raise NotFound(f"no approval instance {instance_id}", code="not_found")
    return row


def instance_of_task(conn: Connection, task_id: int) -> Any:
    """The instance row of task ``task_id``, locked (FOR UPDATE on PostgreSQL); NotFound for no such task."""
    row = _OF_TASK_LOCKED.first(conn, {"b_id": task_id})
    if row is None:
        raise NotFound(f"no approval task {task_id}", code="not_found")
    return row


def pending_for(conn: Connection, entity: str, record_id: int, flow: str | None = None) -> list[Any]:
    """The pending instances of one record (of ``flow`` when given)."""
    if flow is None:
        return _PENDING.all(conn, {"b_entity": entity, "b_record": record_id})
    return _PENDING_OF.all(conn, {"b_entity": entity, "b_record": record_id, "b_flow": flow})


def instances_of(conn: Connection, entity: str, record_id: int) -> list[Any]:
    stmt = select(INST).where(INST.c.entity == entity, INST.c.record_id == record_id)
    return list(conn.execute(stmt.order_by(INST.c.id)))


def new_instance(uow: UnitOfWork, *, flow: str, digest: str, entity: str, record_id: int,
                 submitter_id: int | None) -> int:
    now = uow.clock.now()
    return rawsql.insert_one(uow.state, uow.conn, INST, dict(
        flow=flow, spec_digest=digest, entity=entity, record_id=record_id, status="pending",
        submitter_id=submitter_id, state={}, version=1, created_at=now, updated_at=now))


def save_instance(uow: UnitOfWork, instance_id: int, **values: Any) -> None:
    """Write the instance's new state/status (``version`` bumped)."""
    rawsql.update_by_id(uow.state, uow.conn, INST, instance_id, {"updated_at": uow.clock.now(), **values},
                        bump_version=True)


def tasks_of(conn: Connection, instance_id: int) -> list[Any]:
    """The instance's task rows in id order."""
    return _TASKS_OF.all(conn, {"b_instance": instance_id})


def hand_over_signers(uow: UnitOfWork, old_id: int, new_id: int) -> None:
    """Signers added (加签) to a reassigned task belong to the task that replaces it."""
    uow.conn.execute(update(T).where(T.c.added_by == old_id).values(added_by=new_id))


def rule_rows(rows: Sequence[Any]) -> list[rules.Row]:
    return [rules.Row(r.id, r.status, r.seq, r.added_by, r.position, r.group_mode) for r in rows]


def add_task(uow: UnitOfWork, **values: Any) -> int:
    """A new task row (every column but the id given or defaulted here)."""
    row = {**_TASK_DEFAULTS, "created_at": uow.clock.now(), **values}
    return rawsql.insert_one(uow.state, uow.conn, T, row)


def set_task(uow: UnitOfWork, task_id: int, **values: Any) -> None:
    rawsql.update_by_id(uow.state, uow.conn, T, task_id, values)


def record_decision(uow: UnitOfWork, instance_id: int, decision: str, *, task: Any = None,
                    comment: str | None = None, data: Mapping[str, Any] | None = None,
                    key: str | None = None, system: bool = False) -> int:
    """One row of the instance's history: who did what, for whom, when, with what comment."""
    actor = None if system else uow.actor.user_id
    behalf = task.assignee_id if task is not None and actor is not None and task.assignee_id != actor else None
    return rawsql.insert_one(uow.state, uow.conn, D, dict(
        instance_id=instance_id, task_id=task.id if task is not None else None,
        step=task.step if task is not None else None, actor_id=actor, on_behalf_of=behalf, decision=decision,
        comment=comment, data=dict(data) if data else None, at=uow.clock.now(), idempotency_key=key))


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
    return sorted({int(r[0]) for r in _DELEGATORS.all(conn, {"b_user": delegate_id, "b_at": at})})


def delegates_for(conn: Connection, user_id: int, at: dt.datetime) -> list[int]:
    """Who stands in for ``user_id`` at ``at``."""
    return sorted({int(r[0]) for r in _DELEGATES.all(conn, {"b_user": user_id, "b_at": at})})
