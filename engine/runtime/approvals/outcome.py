"""The end of an approval: which outcome the workflow reached, and what it does to the record.

:func:`result_of` decides a completed workflow's outcome.  It is ``rejected`` when the workflow ended at
an end event whose id or name contains "reject" (the shorthand's ``rejected`` end event), or when the
last decision recorded in the workflow's data was a rejection (a drawn flow with no gateway after the
step ends on it); otherwise ``approved`` (the shorthand's ``approved`` end event, or a drawn flow that
simply ran to its end).

:func:`finish` applies it in the unit of the final decision: the instance's status, the record's status
field, the outcome actions (``set`` values, a ``stage`` move through the pipeline's gate, ``start`` of
another flow) through the one write path -- elevated, with the record lock letting the flow's own write
through -- and the notices to the submitter and CC users.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from SpiffWorkflow.bpmn.specs.defaults import EndEvent  # type: ignore[import-untyped]
from SpiffWorkflow.util.task import TaskState  # type: ignore[import-untyped]

from engine.dsl.approvals.model import Action
from engine.runtime.approvals import notices, rules, store
from engine.runtime.sales.recordctx import eval_context

if TYPE_CHECKING:
    from engine.runtime.approvals.runner import Run
    from engine.runtime.runtime import UnitOfWork

#: ``uow.scratch`` key: (entity, record id) pairs whose writes are the flow's own (the lock lets them
#: through and the trigger does not start a flow on them)
OWN_WRITES = "approvals.own_writes"
#: ``uow.scratch`` key: (entity, record id) -> the record as the flow's own write left it (set by the
#: approvals write step, taken by :func:`write`)
WRITTEN = "approvals.written"


def result_of(wf: Any) -> str:
    """``approved`` or ``rejected`` for a completed workflow (see the module docstring)."""
    for task in wf.get_tasks(state=TaskState.COMPLETED):
        ts = task.task_spec
        if isinstance(ts, EndEvent):
            label = f"{getattr(ts, 'bpmn_id', '') or ''} {getattr(ts, 'bpmn_name', '') or ''}".lower()
            if "reject" in label:
                return "rejected"
    last = wf.last_task.data.get("approved") if wf.last_task is not None else None
    return "rejected" if last is False else "approved"


@contextmanager
def own_write(uow: UnitOfWork, entity: str, record_id: int) -> Iterator[None]:
    """Writes inside the block are the flow's own on that record (elevated: the flow allowed them)."""
    own: set[tuple[str, int]] = uow.scratch.setdefault(OWN_WRITES, set())
    key = (entity, record_id)
    fresh = key not in own
    own.add(key)
    try:
        with uow.elevated():
            yield
    finally:
        if fresh:
            own.discard(key)


def is_own_write(uow: UnitOfWork, entity: str, record_id: Any) -> bool:
    return (entity, record_id) in uow.scratch.get(OWN_WRITES, ())


def finish(run: Run, result: str, *, comment: str | None = None) -> None:
    """End the instance with ``result`` (approved, rejected, withdrawn, returned) and apply it."""
    uow = run.uow
    run.status = result
    now = uow.clock.now()
    for row in run.tasks:
        if row.status in rules.OPEN:
            run.tasks.set(row.id, status="cancelled", decided_at=now)
    store.record_decision(uow, run.instance_id, result, comment=comment, system=True)
    actions = {"approved": run.flow.on_approved, "rejected": run.flow.on_rejected,
               "withdrawn": run.flow.on_withdrawn}.get(result, ())
    apply_actions(uow, run, actions, status=result)
    if result != "withdrawn":
        notices.submitter(uow, run, result)
    notices.cc(uow, run, result)


def status_values(uow: UnitOfWork, entity: str, field: str | None, value: str) -> dict[str, Any]:
    """``{field: value}`` when the entity has the status field and allows the value, else nothing."""
    if field is None:
        return {}
    f = uow.workspace.entities[entity].fields.get(field)
    if f is None:
        return {}
    options = getattr(f, "options", None)
    names = {getattr(o, "key", o) for o in options} if options else None
    return {field: value} if names is None or value in names else {}


def apply_actions(uow: UnitOfWork, run: Run, actions: Sequence[Action], *, status: str | None) -> None:
    """The status field and ``set`` values in one update, then stage moves, then flows to start."""
    record = run.record()
    values: dict[str, Any] = status_values(uow, run.entity, run.flow.status_field, status) if status else {}
    ctx = eval_context(uow, None)
    for action in actions:
        if action.kind == "set":
            values.update({k: e.evaluate(record, ctx) for k, e in action.values.items()})
    if values:
        run.written(write(uow, run.entity, run.record_id, values))
    for action in actions:
        if action.kind == "stage" and action.stage is not None:
            move(uow, run.entity, run.record_id, action.stage)
            run.forget_record()
    for action in actions:
        if action.kind == "start" and action.flow is not None:
            run.start_other(action.flow)


def write(uow: UnitOfWork, entity: str, record_id: int, values: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """An update of the record made by the flow (the one write path: rules, gates and audit run); the
    record's stored values after it (None when nothing changed)."""
    uow.scratch.get(WRITTEN, {}).pop((entity, record_id), None)
    with own_write(uow, entity, record_id):
        uow.records.update(entity, record_id, values, expected_version=None, bypass_readonly=True)
    written: Mapping[str, Any] | None = uow.scratch.get(WRITTEN, {}).pop((entity, record_id), None)
    return written


def move(uow: UnitOfWork, entity: str, record_id: int, stage: str) -> None:
    """A stage move through the pipeline's gate (refused moves stop the decision with the gate's error)."""
    from engine.runtime.sales.pipelines import transition

    with own_write(uow, entity, record_id):
        transition(uow, entity, record_id, stage)
