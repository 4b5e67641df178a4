"""What approvals tell people (``crm_notifications``): a task waiting for its assignee (and their current
delegates), CC users at the start and at the outcome, the submitter at the outcome or a return, reminders
and escalations.  Every notification is keyed (``dedupe_key``) so a retried job notifies once."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from engine.runtime import notify
from engine.runtime.approvals import assignees, store

if TYPE_CHECKING:
    from engine.runtime.approvals.runner import Run
    from engine.runtime.runtime import UnitOfWork

OUTCOME_ZH = {"approved": "已通过", "rejected": "已驳回", "withdrawn": "已撤回", "returned": "已退回"}


def _send(uow: UnitOfWork, run: Run, user_id: int | None, kind: str, en: str, zh: str, key: str,
          **data: Any) -> None:
    notify.send(uow, user_id, kind, {"en": en, "zh": zh}, entity=run.entity, record_id=run.record_id,
                data={"instance": run.instance_id, "flow": run.flow.name, **data}, dedupe_key=key)


def ready(uow: UnitOfWork, run: Run, task_ids: Sequence[int]) -> None:
    """Tell each newly ready task's assignee (and whoever stands in for them today) that it waits."""
    now = uow.clock.now()
    for tid in dict.fromkeys(task_ids):
        row = run.tasks.get(tid)
        if row.status != "ready":
            continue
        en = f"Approval {run.flow.name} waits for you: {run.entity} {run.record_id} (step {row.step})"
        zh = f"待审批：{run.entity} {run.record_id}（{row.step}）"
        _send(uow, run, row.assignee_id, "approval", en, zh, f"approval:task:{tid}", task=tid, step=row.step)
        for delegate in store.delegates_for(uow.conn, row.assignee_id, now):
            _send(uow, run, delegate, "approval", en, zh, f"approval:task:{tid}:delegate:{delegate}", task=tid,
                  step=row.step, on_behalf_of=row.assignee_id)


def cc(uow: UnitOfWork, run: Run, moment: str) -> None:
    """Tell the flow's CC users that the approval started (``moment`` "start") or ended (the outcome)."""
    if not run.flow.cc:
        return
    users = assignees.resolve_all(uow, run.flow.cc, run.record())
    state = "started" if moment == "start" else moment
    zh = "已发起" if moment == "start" else OUTCOME_ZH.get(moment, moment)
    for uid in users:
        _send(uow, run, uid, "approval_cc", f"CC: approval {run.flow.name} of {run.entity} {run.record_id} {state}",
              f"抄送：{run.entity} {run.record_id} 审批{zh}", f"approval:{run.instance_id}:cc:{moment}:{uid}",
              moment=moment)


def submitter(uow: UnitOfWork, run: Run, outcome: str) -> None:
    """Tell the submitter how the approval ended (approved, rejected, returned)."""
    _send(uow, run, run.submitter_id, "approval_outcome",
          f"Approval {run.flow.name} of {run.entity} {run.record_id}: {outcome}",
          f"{run.entity} {run.record_id} 审批{OUTCOME_ZH.get(outcome, outcome)}",
          f"approval:{run.instance_id}:outcome:{outcome}", outcome=outcome)


def users(uow: UnitOfWork, run: Run, user_ids: Iterable[int], kind: str, en: str, zh: str, key: str,
          **data: Any) -> None:
    """Any other approval notice (reminder, escalation) to ``user_ids``."""
    for uid in dict.fromkeys(user_ids):
        _send(uow, run, uid, kind, en, zh, f"{key}:{uid}", **data)
