"""The approvals write step (order 900): the record lock before a write, the trigger after it.

*Lock* (before the row is stored): while an instance of a ``lock_record`` flow is pending on the record,
a delete is refused and an update may change only the flow's ``editable_while_pending`` fields, the
``editable`` fields of a step whose ready task belongs to the actor (or to someone the actor stands in
for), and whatever the flow itself writes (its outcome actions); anything else is
:class:`~engine.errors.RecordLocked` (423) naming the fields.

*Trigger* (after the row and its audit are stored, same transaction): a flow whose ``trigger.on`` has the
write's event (create/update) starts when its ``when`` holds and -- on update -- it did not hold before
or a field it reads changed; never while the record has a pending instance of the flow, and never on
the flow's own writes.  The record's status field is set to ``pending`` before the row is stored, so the
started instance costs no second write of the record.  A step that resolves to no approver refuses the
write (:class:`~engine.errors.NoAssignee`): the record is not committed without its instance.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from engine.dsl.approvals.model import ApprovalFlow
from engine.dsl.model import Workspace
from engine.errors import ExpressionEvalError, RecordLocked
from engine.runtime.approvals import outcome, store
from engine.runtime.records.steps import WriteContext
from engine.runtime.sales.recordctx import eval_context

if TYPE_CHECKING:
    from engine.runtime.runtime import UnitOfWork

#: columns every write sets: never "changed by the caller"
STANDARD = frozenset({"id", "version", "created_at", "created_by", "updated_at", "updated_by", "deleted_at"})
PENDING_KEY = "approvals.starting"


def write_steps(workspace: Workspace) -> list[Any]:
    """The approvals step, when the workspace has approval flows."""
    flows = [o.compiled for o in workspace.objects_of("approval").values() if isinstance(o.compiled, ApprovalFlow)]
    by_entity: dict[str, tuple[ApprovalFlow, ...]] = {}
    for f in flows:
        by_entity[f.entity] = (*by_entity.get(f.entity, ()), f)
    return [ApprovalGuard(by_entity)] if by_entity else []


@dataclass(frozen=True, eq=False)
class ApprovalGuard:
    """The record lock and the trigger of every approval flow (see the module docstring)."""

    by_entity: Mapping[str, tuple[ApprovalFlow, ...]]
    name: str = "approvals"
    order: int = 900

    def applies_to(self, entity: str) -> bool:
        return entity in self.by_entity

    def before_write(self, ctx: WriteContext, entity: str, record: dict[str, Any],
                     old: Mapping[str, Any] | None) -> None:
        uow = ctx.uow
        rid = old.get("id") if old is not None else None
        if rid is not None and outcome.is_own_write(uow, entity, rid):
            return  # the flow's own outcome write: neither locked nor a trigger
        # the record's pending instances, read once for the lock and the trigger (a new record has none)
        pending = store.pending_for(uow.conn, entity, int(rid)) \
            if rid is not None and ctx.action in ("update", "delete") else []
        if old is not None and pending:
            _check_lock(uow, self.by_entity[entity], ctx, record, old, pending)
        if ctx.action in ("create", "update"):
            waiting = {p.flow for p in pending}
            starting = [f for f in self.by_entity[entity]
                        if f.name not in waiting and _should_start(uow, f, ctx, record, old)]
            uow.scratch.setdefault(PENDING_KEY, {})[id(record)] = starting
            for f in starting:
                record.update(outcome.status_values(uow, entity, f.status_field, "pending"))

    def after_write(self, ctx: WriteContext, entity: str, record: Mapping[str, Any],
                    old: Mapping[str, Any] | None) -> None:
        from engine.runtime.approvals import service

        if old is not None and outcome.is_own_write(ctx.uow, entity, old.get("id")):
            ctx.uow.scratch.setdefault(outcome.WRITTEN, {})[(entity, old.get("id"))] = record
            return
        starting = ctx.uow.scratch.get(PENDING_KEY, {}).pop(id(record), ())
        for f in starting:
            service.start_flow(ctx.uow, f.name, int(record["id"]), submitter_id=ctx.uow.actor.user_id)


    def before_attach(self, uow: UnitOfWork, entity: str, record_id: int, action: str) -> None:
        """A file may be added to a record waiting for a locking approval (a signed copy, a drawing the
        approver asked for) but not removed: the approvers were shown it."""
        if action != "file_delete":
            return
        locking = {f.name for f in self.by_entity[entity] if f.lock_record}
        pending = [p.flow for p in store.pending_for(uow.conn, entity, record_id) if p.flow in locking]
        if pending:
            raise RecordLocked("the record is waiting for approval: its files cannot be deleted now",
                               code="locked", details={"flows": pending},
                               hint="delete it once the approval is decided, or withdraw the request first")


def _should_start(uow: UnitOfWork, flow: ApprovalFlow, ctx: WriteContext, record: Mapping[str, Any],
                  old: Mapping[str, Any] | None) -> bool:
    if ctx.action not in flow.trigger.on:
        return False
    when = flow.trigger.when
    if when is not None:
        ectx = eval_context(uow, old)
        if not _holds(when, record, ectx):
            return False
        if old is not None and _holds(when, old, ectx):
            used = {str(n).split(".", 1)[0] for n in when.fields_used}
            if not any(record.get(k) != old.get(k) for k in used):
                return False
    return True


def _holds(expr: Any, values: Mapping[str, Any], ctx: Any) -> bool:
    try:
        return bool(expr.evaluate(values, ctx))
    except ExpressionEvalError:
        return False


def _check_lock(uow: UnitOfWork, flows: tuple[ApprovalFlow, ...], ctx: WriteContext,
                record: Mapping[str, Any], old: Mapping[str, Any], pending_all: Sequence[Any]) -> None:
    locking = {f.name: f for f in flows if f.lock_record}
    pending = [p for p in pending_all if p.flow in locking]
    if not pending:
        return
    if ctx.action == "delete":
        raise RecordLocked("the record is waiting for approval and cannot be deleted", code="locked",
                           details={"flows": [p.flow for p in pending]})
    keys = ctx.sent if ctx.sent is not None else frozenset(record)
    changed = sorted(k for k in keys if k not in STANDARD and record.get(k) != old.get(k))
    allowed = set()
    for p in pending:
        allowed |= _allowed(uow, locking[p.flow], p.id)
    refused = [k for k in changed if k not in allowed]
    if refused:
        raise RecordLocked(f"the record is waiting for approval: {', '.join(refused)} cannot be changed now",
                           code="locked", details={"fields": refused, "flows": [p.flow for p in pending]},
                           hint=f"fields open while pending: {', '.join(sorted(allowed)) or 'none'}")


def _allowed(uow: UnitOfWork, flow: ApprovalFlow, instance_id: int) -> set[str]:
    """Fields an update may change while ``instance_id`` is pending, for the unit's actor."""
    from engine.runtime.approvals.service import may_act

    allowed = set(flow.editable_while_pending)
    for row in store.tasks_of(uow.conn, instance_id):
        step = flow.steps.get(row.step)
        if row.status == "ready" and step is not None and step.editable and may_act(uow, row):
            allowed |= set(step.editable)
    return allowed
