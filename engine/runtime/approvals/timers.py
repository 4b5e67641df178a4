"""The ``approvals.timers`` job kind (every 5 minutes, run by ``crm worker``): task timeouts and BPMN timers.

*Timeouts* (a step's ``timeout``, else the flow's): a ready task undecided ``after`` its creation gets a
reminder; every ``remind_every`` later it gets the next reminder, or -- when the timeout's ``then`` is
not ``remind`` -- the timeout acts: ``escalate`` reassigns the task to the first active ``escalate_to``
user (once; the escalation is notified), ``auto_approve`` / ``auto_reject`` decide it as the system.
Without ``remind_every`` the action comes with the first reminder.

*BPMN timers*: instances whose ``next_timer_at`` has passed are loaded, their due timers fired and the
workflow moved on (a boundary timer that cancels a step cancels its task rows).

Everything runs on the unit's clock (tests inject a FixedClock) and in batches of :data:`BATCH`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from engine.dsl.approvals.model import Timeout
from engine.runtime.approvals import assignees, notices, runner, service, store
from engine.runtime.engine_tables import crm_approval_instances, crm_approval_tasks

if TYPE_CHECKING:
    from engine.runtime.jobs.worker import JobContext
    from engine.runtime.runtime import UnitOfWork

JOB = "approvals.timers"
BATCH = 200


def job_kinds() -> list[Any]:
    return [TimersJob()]


class TimersJob:
    """The job kind (see the module docstring)."""

    name = JOB
    schedule = "every 5m"
    max_attempts = 5

    def run(self, ctx: JobContext, payload: Mapping[str, Any]) -> None:
        run_due(ctx.uow)


def run_due(uow: UnitOfWork) -> int:
    """Handle every due timeout and BPMN timer (one batch each); how many were handled."""
    return _timeouts(uow) + _bpmn_timers(uow)


def _timeouts(uow: UnitOfWork) -> int:
    t = crm_approval_tasks
    now = uow.clock.now()
    due = list(uow.conn.execute(select(t.c.id, t.c.instance_id).where(
        t.c.status == "ready", t.c.remind_at.is_not(None), t.c.remind_at <= now).order_by(t.c.remind_at).limit(BATCH)))
    for task_id, instance_id in due:
        run = runner.load(uow, instance_id)
        row = run.tasks.get(task_id)
        if run.status != "pending" or row.status != "ready":
            continue
        step = run.flow.steps.get(row.step)
        timeout = (step.timeout if step is not None else None) or run.flow.timeout
        if timeout is None:
            run.tasks.set(row.id, remind_at=None)
            continue
        _on_timeout(run, row, timeout, now)
        run.settle()
    return len(due)


def _on_timeout(run: runner.Run, row: Any, timeout: Timeout, now: dt.datetime) -> None:
    uow = run.uow
    acts = timeout.then != "remind" and not row.escalated and (row.reminders >= 1 or timeout.remind_every is None)
    if not acts:
        _remind(run, row, timeout, now)
        return
    if timeout.then == "escalate":
        users = [u for u in assignees.resolve_all(uow, timeout.escalate_to, run.record()) if u != row.assignee_id]
        if not users:
            _remind(run, row, timeout, now)
            return
        run.tasks.set(row.id, status="reassigned", decided_at=now)
        new_id = run.tasks.add(step=row.step, wf_task=row.wf_task, assignee_id=users[0], status="ready",
                               seq=row.seq, added_by=row.added_by, position=row.position, group_mode=row.group_mode,
                               reassigned_from=row.id, due_at=row.due_at, escalated=True,
                               remind_at=now + timeout.remind_every if timeout.remind_every else None)
        run.tasks.hand_over_signers(row.id, new_id)
        store.record_decision(uow, run.instance_id, "escalate", task=row, system=True,
                              data={"to": users[0], "task": new_id})
        run.newly_ready.append(new_id)
        notices.users(uow, run, [row.assignee_id], "approval_escalated",
                      f"Approval {run.flow.name} of {run.entity} {run.record_id} was escalated after no decision",
                      f"{run.entity} {run.record_id} 超时未审批，已升级", f"approval:task:{row.id}:escalated")
        return
    decision = "approved" if timeout.then == "auto_approve" else "rejected"
    run.tasks.set(row.id, status=decision, decided_at=now)
    store.record_decision(uow, run.instance_id, timeout.then, task=row, system=True)
    service.advance(run, row)


def _remind(run: runner.Run, row: Any, timeout: Timeout, now: dt.datetime) -> None:
    uow = run.uow
    n = row.reminders + 1
    run.tasks.set(row.id, reminders=n, remind_at=now + timeout.remind_every if timeout.remind_every else None)
    store.record_decision(uow, run.instance_id, "remind", task=row, system=True, data={"reminder": n})
    notices.users(uow, run, [row.assignee_id, *store.delegates_for(uow.conn, row.assignee_id, now)],
                  "approval_reminder",
                  f"Reminder: approval {run.flow.name} of {run.entity} {run.record_id} waits for you (step {row.step})",
                  f"催办：{run.entity} {run.record_id}（{row.step}）等待您审批", f"approval:task:{row.id}:remind:{n}",
                  task=row.id)


def _bpmn_timers(uow: UnitOfWork) -> int:
    i = crm_approval_instances
    now = uow.clock.now()
    due = [r[0] for r in uow.conn.execute(select(i.c.id).where(
        i.c.status == "pending", i.c.next_timer_at.is_not(None), i.c.next_timer_at <= now)
        .order_by(i.c.next_timer_at).limit(BATCH))]
    for instance_id in due:
        run = runner.load(uow, instance_id)
        if run.fire_timers(now):
            store.record_decision(uow, instance_id, "timer", system=True)
        run.settle()
    return len(due)
