"""Starting approvals and acting on them -- every function runs in the caller's unit of work, and the
workflow state, task rows, decision history, notifications and outcome writes commit together.

Who may act on a task: its assignee, a user the assignee delegated to for a dated period that includes
now (out of office), or an admin; anyone else gets PermissionDenied (403).  Only a READY task of a
pending instance can be acted on (Conflict, 409).  Completing a task a second time is idempotent: the
same actor repeating the same decision (a retried request) gets the current state back and nothing is
applied twice; an ``Idempotency-Key`` seen before does the same for any action.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from engine.errors import BadRequest, Conflict, ExpressionEvalError, NotFound, PermissionDenied
from engine.runtime.approvals import outcome, rules, runner, store
from engine.runtime.approvals.taskrows import TaskRows
from engine.runtime.engine_tables import crm_users
from engine.runtime.sales.recordctx import eval_context, read_record

if TYPE_CHECKING:
    from engine.runtime.runtime import UnitOfWork

DECISIONS = ("approve", "reject")
POSITIONS = ("before", "after")
GROUP_MODES = ("any", "all")


# --------------------------------------------------------------------------- starting


def start_flow(uow: UnitOfWork, name: str, record_id: int, *, submitter_id: int | None) -> int:
    """Start flow ``name`` on the record (see :func:`engine.runtime.approvals.runner.start_flow`)."""
    return runner.start_flow(uow, name, record_id, submitter_id=submitter_id)


def submit(uow: UnitOfWork, entity: str, record_id: int, flow: str | None = None) -> int:
    """``POST /records/<entity>/<id>/submit``: start the record's flow (``flow`` names it when the entity
    has several); the actor must be able to update the record.  The instance id."""
    uow.records.get(entity, record_id)  # NotFound when the actor cannot see it
    flows = [f for f in runner.flows_of(uow).values() if f.entity == entity]
    if flow is not None:
        flows = [f for f in flows if f.name == flow]
    if not flows:
        raise NotFound(f"no approval flow {flow!r} for {entity}" if flow else f"{entity} has no approval flow",
                       code="unknown_flow")
    if len(flows) > 1:
        raise BadRequest(f"{entity} has several approval flows: name one", code="flow_required",
                         details={"flow": sorted(f.name for f in flows)})
    if uow.actor.user_id is not None and not uow.actor.is_admin:
        uow.guard.require(entity, "update")
    chosen = flows[0]
    if "submit" not in chosen.trigger.on:
        raise Conflict(f"approval flow {chosen.name!r} starts on {', '.join(chosen.trigger.on)}, not on submit",
                       code="submit_not_allowed", hint="add submit to the flow's trigger.on")
    when = chosen.trigger.when
    if when is not None:
        record = read_record(uow, entity, record_id) or {}
        try:
            holds = bool(when.evaluate(record, eval_context(uow, None)))
        except ExpressionEvalError:
            holds = False
        if not holds:
            raise Conflict(f"the record does not need approval {chosen.name!r}: {when.source} does not hold",
                           code="trigger_not_met", details={"when": when.source})
    return start_flow(uow, chosen.name, record_id, submitter_id=uow.actor.user_id)


# --------------------------------------------------------------------------- authority


def may_act(uow: UnitOfWork, row: Any) -> bool:
    """The actor is the assignee, the assignee's delegate today, or an admin."""
    actor = uow.actor
    if actor.is_admin or actor.user_id == row.assignee_id:
        return True
    return actor.user_id is not None and row.assignee_id in store.delegators(uow.conn, actor.user_id,
                                                                                uow.clock.now())


def _open_task(uow: UnitOfWork, task_id: int, *, decision: str | None = None,
               key: str | None = None) -> tuple[Any, runner.Run | None]:
    """The task row and its loaded run, if the actor may act on it and it waits for a decision.

    The instance is locked first and its task rows read once (:class:`~.taskrows.TaskRows`).  A retried
    request (the idempotency ``key`` used already, or this actor made this ``decision`` on the task) gives
    the row and no run: it has no second effect."""
    inst = store.instance_of_task(uow.conn, task_id)
    rows = TaskRows.load(uow, int(inst.id))
    row = rows.get(task_id)
    if _replayed(uow, key) or (decision is not None and _same_decision(uow, row, decision)):
        return row, None
    if not may_act(uow, row):
        raise PermissionDenied(f"approval task {task_id} is not yours to act on", code="not_assignee")
    if inst.status != "pending":
        raise Conflict(f"the approval is {inst.status}", code="approval_closed", details={"status": inst.status})
    if row.status != "ready":
        raise Conflict(f"approval task {task_id} is {row.status}, not waiting for a decision", code="not_ready",
                       details={"status": row.status})
    run = runner.load(uow, int(inst.id), inst)
    run.adopt_tasks(rows)
    return row, run


def _replayed(uow: UnitOfWork, key: str | None) -> bool:
    """Whether the actor already made a request with this idempotency key."""
    stored = scoped(uow, key)
    return stored is not None and store.decision_by_key(uow.conn, stored) is not None


def scoped(uow: UnitOfWork, key: str | None) -> str | None:
    """An idempotency key as stored: one actor's keys never collide with another's."""
    return None if key is None else f"{uow.actor.user_id}:{key}"[:200]


# --------------------------------------------------------------------------- deciding


def complete(uow: UnitOfWork, task_id: int, decision: str, *, comment: str | None = None,
             key: str | None = None, data: Mapping[str, Any] | None = None) -> int:
    """Approve or reject one task; the instance id.  The step completes by its mode (:mod:`.rules`).

    ``data``: values of the flow's task-data variables (a BPMN file's form fields, e.g. the reviewer an
    "assign reviewer" task names), set on the workflow task when the step completes."""
    if decision not in DECISIONS:
        raise BadRequest("decision must be approve or reject", code="bad_decision",
                         details={"decision": [f"is {decision!r}; use approve or reject"]})
    row, run = _open_task(uow, task_id, decision=decision, key=key)
    if run is None:
        return int(row.instance_id)
    now = uow.clock.now()
    status = "approved" if decision == "approve" else "rejected"
    run.tasks.set(row.id, status=status, decided_at=now, decided_by=uow.actor.user_id)
    clean = _task_data(run, data)
    store.record_decision(uow, run.instance_id, decision, task=row, comment=comment, key=scoped(uow, key),
                          data={"values": clean} if clean else None)
    advance(run, row, clean)
    run.settle()
    return run.instance_id


def _task_data(run: runner.Run, data: Mapping[str, Any] | None) -> dict[str, Any]:
    """``data`` checked against the flow's task-data variables (plain values only)."""
    if not data:
        return {}
    if not isinstance(data, Mapping):
        raise BadRequest("data must be an object of variable values", code="bad_request")
    allowed = dict(run.flow.extra.get("variables") or {})
    unknown = sorted(k for k in data if k not in allowed)
    if unknown:
        raise BadRequest(f"flow {run.flow.name!r} has no variable {unknown[0]!r}", code="unknown_variable",
                         details={"data": [f"use {', '.join(sorted(allowed)) or 'no variables'}"]})
    bad = sorted(k for k, v in data.items() if not isinstance(v, (str, int, float, bool, type(None))))
    if bad:
        raise BadRequest(f"variable {bad[0]!r} must be text, a number, true/false or null", code="bad_request")
    return dict(data)


def _same_decision(uow: UnitOfWork, row: Any, decision: str) -> bool:
    """A retried completion: this actor already made this decision on this task."""
    done = {"approve": "approved", "reject": "rejected"}[decision]
    return bool(row.status == done and row.decided_by == uow.actor.user_id)


def advance(run: runner.Run, row: Any, data: Mapping[str, Any] | None = None) -> None:
    """After a row changed: finish the step when the rules say it is decided, else re-plan who is ready."""
    step = run.step_of(row.step)
    rows = run.tasks.of(row.wf_task)
    result = rules.step_result(step.mode, step.ratio, store.rule_rows(rows))
    if result is None:
        run.refresh_readiness(row.wf_task)
        return
    now = run.uow.clock.now()
    for r in rows:
        if r.status in rules.OPEN:
            run.tasks.set(r.id, status="cancelled", decided_at=now)
    run.complete_step(row.wf_task, result == "approved", step.id, data)


def reassign(uow: UnitOfWork, task_id: int, to: Any, *, comment: str | None = None, key: str | None = None) -> int:
    """转交: the task goes to another active user (the old row is kept as ``reassigned``)."""
    row, run = _open_task(uow, task_id, key=key)
    if run is None:
        return int(row.instance_id)
    target = active_user(uow, to, "to")
    if target == row.assignee_id:
        raise BadRequest("the task is already assigned to that user", code="same_assignee")
    run.tasks.set(row.id, status="reassigned", decided_at=uow.clock.now(), decided_by=uow.actor.user_id)
    new_id = run.tasks.add(step=row.step, wf_task=row.wf_task, assignee_id=target, status="ready", seq=row.seq,
                           added_by=row.added_by, position=row.position, group_mode=row.group_mode,
                           reassigned_from=row.id, due_at=row.due_at, remind_at=row.remind_at)
    run.tasks.hand_over_signers(row.id, new_id)
    store.record_decision(uow, run.instance_id, "reassign", task=row, comment=comment, key=scoped(uow, key),
                          data={"to": target, "task": new_id})
    run.newly_ready.append(new_id)
    run.settle()
    return run.instance_id


def add_signer(uow: UnitOfWork, task_id: int, users_: Sequence[Any], *, position: str = "before",
               mode: str = "all", comment: str | None = None, key: str | None = None) -> int:
    """加签: add approvers before (they decide first) or after (they decide once this task approved) this
    task; several added signers decide by ``mode`` (any/all)."""
    if position not in POSITIONS:
        raise BadRequest("position must be before or after", code="bad_position")
    if mode not in GROUP_MODES:
        raise BadRequest("mode must be any or all", code="bad_mode")
    row, run = _open_task(uow, task_id, key=key)
    if run is None:
        return int(row.instance_id)
    ids = list(dict.fromkeys(active_user(uow, u, "user") for u in users_))
    if not ids:
        raise BadRequest("name at least one user to add", code="bad_request", details={"user": ["is required"]})
    added = [run.tasks.add(step=row.step, wf_task=row.wf_task, assignee_id=uid, status="waiting", seq=0,
                           added_by=row.id, position=position, group_mode=mode, due_at=row.due_at,
                           remind_at=row.remind_at) for uid in ids]
    store.record_decision(uow, run.instance_id, "add_signer", task=row, comment=comment, key=scoped(uow, key),
                          data={"users": ids, "position": position, "mode": mode, "tasks": added})
    run.refresh_readiness(row.wf_task)
    run.settle()
    return run.instance_id


def return_to(uow: UnitOfWork, task_id: int, to: str, *, comment: str | None = None,
              key: str | None = None) -> int:
    """退回: to the submitter (the approval ends as ``returned``; the record unlocks for a resubmit) or
    to an earlier step (the workflow is reset to it; its approvers decide again)."""
    if not isinstance(to, str) or not to:
        raise BadRequest("to must be 'submitter' or a step id", code="bad_request", details={"to": ["is required"]})
    row, run = _open_task(uow, task_id, key=key)
    if run is None:
        return int(row.instance_id)
    store.record_decision(uow, run.instance_id, "return", task=row, comment=comment, key=scoped(uow, key),
                          data={"to": to})
    if to == "submitter":
        outcome.finish(run, "returned", comment=comment)
    else:
        if to not in run.flow.steps:
            raise BadRequest(f"flow {run.flow.name!r} has no step {to!r}", code="unknown_step",
                             details={"to": [f"use submitter or one of {', '.join(run.flow.steps)}"]})
        run.reset_to(to)
    run.settle()
    return run.instance_id


def withdraw(uow: UnitOfWork, instance_id: int, *, comment: str | None = None, key: str | None = None) -> int:
    """撤回: the submitter takes the record back, only before any approver acted."""
    if _replayed(uow, key):
        return instance_id
    run = runner.load(uow, instance_id)
    if uow.actor.user_id is None or uow.actor.user_id != run.submitter_id:
        raise PermissionDenied("only the submitter may withdraw an approval", code="not_submitter")
    if run.status != "pending":
        raise Conflict(f"the approval is {run.status}", code="approval_closed", details={"status": run.status})
    if store.approver_acted(uow.conn, instance_id):
        raise Conflict("an approver has already acted: the approval can no longer be withdrawn",
                       code="already_acted")
    store.record_decision(uow, instance_id, "withdraw", comment=comment, key=scoped(uow, key))
    outcome.finish(run, "withdrawn", comment=comment)
    run.settle()
    return instance_id


def add_comment(uow: UnitOfWork, instance_id: int, text: str) -> int:
    """A comment in the approval's history (the submitter, an assignee or their delegate, or an admin)."""
    if not isinstance(text, str) or not text.strip():
        raise BadRequest("a comment needs text", code="bad_request", details={"comment": ["is required"]})
    row = store.instance(uow.conn, instance_id)
    rows = store.tasks_of(uow.conn, instance_id)
    if not (uow.actor.is_admin or uow.actor.user_id == row.submitter_id or any(may_act(uow, r) for r in rows)):
        raise PermissionDenied("only the submitter, an approver or an admin may comment", code="forbidden")
    return store.record_decision(uow, instance_id, "comment", comment=text)


def active_user(uow: UnitOfWork, ref: Any, name: str) -> int:
    u = crm_users
    col = u.c.id if isinstance(ref, int) and not isinstance(ref, bool) else u.c.username
    if not isinstance(ref, (int, str)) or isinstance(ref, bool):
        raise BadRequest(f"{name} must be a user name or id", code="bad_request", details={name: ["is not a user"]})
    found = uow.conn.execute(select(u.c.id, u.c.active).where(col == ref)).first()
    if found is None or not found.active:
        raise BadRequest(f"no active user {ref!r}", code="unknown_user",
                         details={name: [f"{ref!r} is not an active user"]})
    return int(found.id)


def describe_task(row: Any) -> Mapping[str, Any]:
    return {"id": row.id, "instance": row.instance_id, "step": row.step, "assignee_id": row.assignee_id,
            "status": row.status, "seq": row.seq, "added_by": row.added_by, "position": row.position,
            "reassigned_from": row.reassigned_from, "due_at": row.due_at, "created_at": row.created_at,
            "decided_at": row.decided_at, "decided_by": row.decided_by}
