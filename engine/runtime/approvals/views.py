"""What the API shows of approvals: a user's inbox (paged by id, from the inbox index), one instance with
its steps, tasks and history, a record's approvals, and delegation rules (out of office)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, delete, insert, or_, select

from engine.errors import BadRequest, NotFound, PermissionDenied
from engine.runtime import rawsql
from engine.runtime.approvals import diagram, oldflows, runner, service, spec, store
from engine.runtime.engine_tables import crm_approval_instances, crm_approval_tasks, crm_delegations, crm_users

if TYPE_CHECKING:
    from engine.runtime.runtime import UnitOfWork

MAX_PAGE = 200
STATUSES = ("waiting", "ready", "approved", "rejected", "reassigned", "cancelled", "open")

_T, _I = crm_approval_tasks, crm_approval_instances
#: the inbox query, built once (building it per request cost more than running it): owners and statuses
#: as expanding parameters; a second form with the ``before`` cursor
_inbox = select(_T, _I.c.flow, _I.c.entity, _I.c.record_id).join(_I, _I.c.id == _T.c.instance_id)
_newest = (_T.c.id.desc(),)
_INBOX = _inbox.where(_T.c.assignee_id.in_(bindparam("b_owners", expanding=True)),
                      _T.c.status.in_(bindparam("b_wanted", expanding=True)))
_INBOX_FIRST = _INBOX.order_by(*_newest).limit(bindparam("b_limit"))
_INBOX_BEFORE = _INBOX.where(_T.c.id < bindparam("b_before")).order_by(*_newest).limit(bindparam("b_limit"))
#: the usual first page (one owner -- nobody delegated to the user -- and one status), through the driver
_INBOX_ONE = rawsql.Query(_inbox.where(_T.c.assignee_id == bindparam("b_owner"), _T.c.status == bindparam("b_status"))
                          .order_by(*_newest).limit(bindparam("b_limit")))


def inbox(uow: UnitOfWork, *, user_id: int, status: str = "ready", limit: int = 50,
          before: int | None = None) -> dict[str, Any]:
    """Tasks of ``user_id`` (and of users who delegated to them today), newest first; ``before``: the
    ``next`` cursor of the previous page.  ``status``: ready (default), open (ready or waiting), or one
    task status."""
    if status not in STATUSES:
        raise BadRequest(f"status must be one of {', '.join(STATUSES)}", code="bad_request")
    owners = [user_id, *store.delegators(uow.conn, user_id, uow.clock.now())]
    wanted = ["ready", "waiting"] if status == "open" else [status]
    limit = max(1, min(int(limit), MAX_PAGE))
    params: dict[str, Any] = {"b_owners": owners, "b_wanted": wanted, "b_limit": limit + 1}
    if before is not None:
        params["b_before"] = before
    if before is None and len(owners) == 1 and len(wanted) == 1:
        rows = _INBOX_ONE.all(uow.conn, {"b_owner": user_id, "b_status": wanted[0], "b_limit": limit + 1})
    else:
        rows = list(uow.conn.execute(_INBOX_FIRST if before is None else _INBOX_BEFORE, params))
    items = [{**service.describe_task(r), "flow": r.flow, "entity": r.entity, "record_id": r.record_id,
              "on_behalf_of": r.assignee_id if r.assignee_id != user_id else None} for r in rows[:limit]]
    return {"items": items, "next": str(rows[limit - 1].id) if len(rows) > limit else None}


def _names(uow: UnitOfWork, ids: Sequence[Any]) -> dict[int, str]:
    wanted = sorted({int(x) for x in ids if x is not None})
    if not wanted:
        return {}
    u = crm_users
    return {int(r.id): r.username for r in uow.conn.execute(select(u.c.id, u.c.username).where(u.c.id.in_(wanted)))}


def _visible(uow: UnitOfWork, instance_id: int) -> tuple[Any, list[Any]]:
    """The instance row and its task rows, if the actor may see the instance (else NotFound): the
    submitter, the instance's assignees (and their delegates today), admins, and users who may read the
    record."""
    row = store.instance(uow.conn, instance_id)
    tasks = store.tasks_of(uow.conn, instance_id)
    if not (uow.actor.is_admin or uow.actor.user_id == row.submitter_id or any(service.may_act(uow, r) for r in tasks)):
        try:
            uow.records.get(row.entity, int(row.record_id))
        except (NotFound, PermissionDenied) as e:
            raise NotFound(f"no approval instance {instance_id}", code="not_found") from e
    return row, tasks


def diagram_svg(uow: UnitOfWork, instance_id: int) -> str:
    """The instance's flow drawn as SVG from its BPMN diagram, the steps waiting now, approved and rejected
    marked (see :mod:`engine.runtime.approvals.diagram`); the flow of the instance's own version."""
    row, tasks = _visible(uow, instance_id)
    flow = _flow_of(uow, row)
    if flow is None:
        raise NotFound(f"approval instance {instance_id}'s flow {row.flow!r} is no longer defined", code="not_found")
    return diagram.render(flow.bpmn_xml, flow.process_id, diagram.step_states(tasks),
                          title=f"{flow.name}: {row.entity} {row.record_id} ({row.status})")


def _flow_of(uow: UnitOfWork, row: Any) -> Any:
    flow = runner.flows_of(uow).get(row.flow)
    if flow is not None and spec.parsed(flow).digest == row.spec_digest:
        return flow
    stored = store.stored_spec(uow.conn, row.spec_digest)
    older = oldflows.flow_of_revision(uow, stored.revision_id, row.flow) if stored is not None else None
    return older or flow


def instance(uow: UnitOfWork, instance_id: int, *, with_diagram: bool = False) -> dict[str, Any]:
    """One instance: status, the flow's steps, every task row and the decision history (and, with
    ``with_diagram``, the SVG of :func:`diagram_svg`).  Who may see it: :func:`_visible`."""
    row, tasks = _visible(uow, instance_id)
    decisions = store.decisions_of(uow.conn, instance_id)
    names = _names(uow, [*(t.assignee_id for t in tasks), *(d.actor_id for d in decisions),
                         *(d.on_behalf_of for d in decisions), row.submitter_id])
    flow = runner.flows_of(uow).get(row.flow)
    steps = [{"id": s.id, "name": s.name, "label": dict(s.label), "mode": s.mode, "ratio": s.ratio,
              "assignees": [a.describe() for a in s.assignees], "editable": list(s.editable)}
             for s in (flow.steps.values() if flow is not None else ())]
    return {
        "id": row.id, "flow": row.flow, "entity": row.entity, "record_id": row.record_id, "status": row.status,
        "submitter": names.get(row.submitter_id), "submitter_id": row.submitter_id, "version": row.version,
        "spec_digest": row.spec_digest, "created_at": row.created_at, "updated_at": row.updated_at,
        "finished_at": row.finished_at, "steps": steps,
        "tasks": [{**service.describe_task(t), "assignee": names.get(t.assignee_id)} for t in tasks],
        "waiting_for": sorted({names.get(t.assignee_id, "") for t in tasks if t.status == "ready"}),
        "history": [{"id": d.id, "task": d.task_id, "step": d.step, "decision": d.decision, "comment": d.comment,
                     "actor": names.get(d.actor_id), "actor_id": d.actor_id,
                     "on_behalf_of": names.get(d.on_behalf_of), "data": d.data, "at": d.at} for d in decisions],
        **({"diagram": {"svg": diagram_svg(uow, instance_id),
                        "href": f"/api/v1/approvals/instances/{instance_id}/diagram.svg"}} if with_diagram else {}),
    }


def of_record(uow: UnitOfWork, entity: str, record_id: int) -> list[dict[str, Any]]:
    """The approvals of one record the actor can read, oldest first."""
    uow.records.get(entity, record_id)
    return [{"id": r.id, "flow": r.flow, "status": r.status, "created_at": r.created_at,
             "finished_at": r.finished_at} for r in store.instances_of(uow.conn, entity, record_id)]


# --------------------------------------------------------------------------- delegations


def add_delegation(uow: UnitOfWork, *, delegate: Any, starts_at: dt.datetime, ends_at: dt.datetime,
                   user: Any = None) -> dict[str, Any]:
    """A dated out-of-office rule: ``delegate`` may act on ``user``'s tasks (the actor's own; an admin may
    name any user) from ``starts_at`` until ``ends_at``."""
    uid = uow.actor.user_id
    if user is not None:
        target = service.active_user(uow, user, "user")
        if target != uid and not uow.actor.is_admin:
            raise PermissionDenied("only an admin may set another user's delegation", code="forbidden")
        uid = target
    if uid is None:
        raise BadRequest("name the user who is away", code="bad_request", details={"user": ["is required"]})
    other = service.active_user(uow, delegate, "delegate")
    if other == uid:
        raise BadRequest("a user cannot delegate to themselves", code="bad_request", details={"delegate": ["is you"]})
    if ends_at <= starts_at:
        raise BadRequest("ends_at must be after starts_at", code="bad_request", details={"ends_at": ["is too early"]})
    d = crm_delegations
    made = store.new_id(uow.conn.execute(insert(d).values(
        user_id=uid, delegate_id=other, starts_at=starts_at, ends_at=ends_at, created_at=uow.clock.now())))
    return {"id": made, "user_id": uid, "delegate_id": other, "starts_at": starts_at, "ends_at": ends_at}


def delegations(uow: UnitOfWork) -> list[dict[str, Any]]:
    """The actor's rules, as the one away and as the delegate (admins: every rule)."""
    d = crm_delegations
    stmt = select(d).order_by(d.c.id)
    if not uow.actor.is_admin:
        stmt = stmt.where(or_(d.c.user_id == uow.actor.user_id, d.c.delegate_id == uow.actor.user_id))
    return [{"id": r.id, "user_id": r.user_id, "delegate_id": r.delegate_id, "starts_at": r.starts_at,
             "ends_at": r.ends_at} for r in uow.conn.execute(stmt)]


def remove_delegation(uow: UnitOfWork, delegation_id: int) -> None:
    d = crm_delegations
    row = uow.conn.execute(select(d).where(d.c.id == delegation_id)).first()
    if row is None or not (uow.actor.is_admin or row.user_id == uow.actor.user_id):
        raise NotFound(f"no delegation {delegation_id} of yours", code="not_found")
    uow.conn.execute(delete(d).where(d.c.id == delegation_id))
