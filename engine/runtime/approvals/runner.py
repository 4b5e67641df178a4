"""One approval instance's workflow inside a unit of work: load it, move it, sync its ready tasks to task
rows, persist it.

:class:`Run` is made by :func:`start` (a new instance) or :func:`load` (an instance read under a row lock).
After every move (:meth:`Run.complete_step`, :meth:`Run.reset_to`, :meth:`Run.fire_timers`) the caller calls
:meth:`Run.settle`: it syncs the task rows with the workflow's READY user/manual tasks (new rows for a new
step, cancelled rows for a step the workflow left, e.g. through a boundary timer), re-plans timers,
applies the outcome when the workflow completed, and writes the state in the same transaction.

BPMN timers run on the engine's clock, not SpiffWorkflow's wall clock: when a timer starts waiting its
deadline is computed from ``uow.clock`` and kept in the task's internal data (``crm_deadline``) while
SpiffWorkflow's own value is pushed to :data:`NEVER`; :meth:`Run.fire_timers` fires the due ones.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from SpiffWorkflow.bpmn.specs.event_definitions.timer import (  # type: ignore[import-untyped]
    DurationTimerEventDefinition,
    TimeDateEventDefinition,
    TimerEventDefinition,
)
from SpiffWorkflow.util.task import TaskState  # type: ignore[import-untyped]

from engine.dsl.approvals.model import ApprovalFlow, ApprovalStep
from engine.errors import Conflict, NoAssignee, WorkflowTextRefused
from engine.runtime.approvals import assignees, live, notices, oldflows, outcome, rules, spec, store
from engine.runtime.approvals.script import FlowEnvironment, FlowScriptEngine, flow_values
from engine.runtime.approvals.taskrows import TaskRows
from engine.runtime.sales.recordctx import eval_context, read_record

if TYPE_CHECKING:
    from engine.runtime.runtime import UnitOfWork

NEVER = "9999-12-31T00:00:00+00:00"
PAST = "1970-01-01T00:00:00+00:00"


def flows_of(uow: UnitOfWork) -> dict[str, ApprovalFlow]:
    """The workspace's compiled approval flows by name."""
    return {n: o.compiled for n, o in uow.workspace.objects_of("approval").items()
            if isinstance(o.compiled, ApprovalFlow)}


def flow_named(uow: UnitOfWork, name: str) -> ApprovalFlow:
    flow = flows_of(uow).get(name)
    if flow is None:
        raise Conflict(f"the approval flow {name!r} is not in the active configuration", code="unknown_flow",
                       details={"flow": name})
    return flow


class Run:
    """One instance's workflow, loaded in a unit of work (see the module docstring)."""

    def __init__(self, uow: UnitOfWork, flow: ApprovalFlow, parsed: spec.ParsedFlow, instance_id: int,
                 entity: str, record_id: int, submitter_id: int | None) -> None:
        self.uow = uow
        self.flow = flow
        self.parsed = parsed
        self.instance_id = instance_id
        self.entity = entity
        self.record_id = record_id
        self.submitter_id = submitter_id
        self.status = "pending"
        #: the instance row's version as this unit read or wrote it
        self.version = 1
        self.engine = FlowScriptEngine(FlowEnvironment(flow, self.record, eval_context(uow, None)))
        self.wf: Any = None
        #: rows that became ready during this unit (notified once, at settle)
        self.newly_ready: list[int] = []
        #: an outcome decided without the workflow reaching an end (a shorthand step's rejection)
        self.forced: str | None = None
        #: this unit starts the instance (a step without an approver refuses the start; later it goes to admins)
        self.starting = False
        self._record: Mapping[str, Any] | None = None
        self._tasks: TaskRows | None = None

    @property
    def tasks(self) -> TaskRows:
        """The instance's task rows, read once per unit (every write to them goes through this object)."""
        if self._tasks is None:
            self._tasks = TaskRows.load(self.uow, self.instance_id)
        return self._tasks

    def adopt_tasks(self, rows: TaskRows) -> None:
        """The instance's task rows as the caller read them under the instance's lock in this unit."""
        self._tasks = rows

    def record(self) -> Mapping[str, Any]:
        """The record's stored values, read once per run (:meth:`forget_record` after the flow writes it)."""
        if self._record is None:
            found = read_record(self.uow, self.entity, self.record_id)
            if found is None:
                raise Conflict(f"{self.entity} {self.record_id} is gone", code="not_found")
            self._record = found
        return self._record

    def forget_record(self) -> None:
        """The flow wrote the record: the next evaluation reads it again."""
        self._record = None

    def written(self, record: Mapping[str, Any] | None) -> None:
        """The flow wrote the record, which now holds ``record`` (None: unknown, read it again)."""
        self._record = record

    # ------------------------------------------------------------------ moving

    def ready_tasks(self) -> dict[str, Any]:
        """wf task id (text) -> READY manual task."""
        return {str(t.id): t for t in self.wf.get_tasks(state=TaskState.READY, manual=True)}

    def complete_step(self, wf_task: str, approved: bool, step: str,
                      data: Mapping[str, Any] | None = None) -> None:
        """Finish the workflow task ``wf_task`` with the step's decision and run the engine on.

        ``approvals``/``rejections`` count the instance's decided steps so far.  A rejected step of a
        shorthand flow ends the instance at once, rejected, whatever else runs in parallel (a parallel
        group's branches all go to its join; the shorthand's rule is that one rejection rejects)."""
        task = self.ready_tasks().get(wf_task.split("/", 1)[0])
        if task is None:  # task.run() does not check the state: never run a task that is not READY
            raise Conflict(f"step {step!r} is not waiting for a decision", code="not_ready")
        approvals = int(task.data.get("approvals") or 0) + (1 if approved else 0)
        rejections = int(task.data.get("rejections") or 0) + (0 if approved else 1)
        task.set_data(**dict(data or {}), approved=approved, step=step, approvals=approvals, rejections=rejections)
        task.run()
        if not approved and self.flow.shorthand:
            self.forced = "rejected"
            return
        self.wf.do_engine_steps()

    def reset_to(self, step: str) -> None:
        """退回 to an earlier step: the workflow is reset to that step's last completed task."""
        done = [t for t in self.wf.get_tasks(state=TaskState.COMPLETED) if t.task_spec.name == step]
        if not done:
            raise Conflict(f"step {step!r} has not been decided in this approval, so it cannot be returned to",
                           code="not_earlier_step", details={"step": step})
        last = max(done, key=lambda t: t.last_state_change)
        self.wf.reset_from_task_id(last.id)
        self.wf.do_engine_steps()

    def fire_timers(self, now: dt.datetime) -> int:
        """Fire the BPMN timers whose deadline (engine clock) has passed; how many fired."""
        fired = 0
        for task in list(self.wf.event_manager.tasks.values()):
            deadline = task.internal_data.get("crm_deadline")
            if deadline is not None and dt.datetime.fromisoformat(deadline) <= now:
                task.internal_data["event_value"] = PAST
                fired += 1
        if fired:
            self.wf.refresh_timers()
            self.wf.do_engine_steps()
        return fired

    # ------------------------------------------------------------------ settling

    def settle(self) -> None:
        """Sync task rows with the workflow, plan timers, finish when completed, write the state."""
        if self.forced is not None and self.status == "pending":
            outcome.finish(self, self.forced)
        self._sync_rows()
        next_timer = self._plan_timers()
        if self.wf.is_completed() and self.status == "pending":
            outcome.finish(self, outcome.result_of(self.wf))
        notices.ready(self.uow, self, self.newly_ready)
        self.newly_ready = []
        store.save_instance(self.uow, self.instance_id, state=spec.dump(self.wf), status=self.status,
                            next_timer_at=next_timer if self.status == "pending" else None,
                            **({"finished_at": self.uow.clock.now()} if self.status != "pending" else {}))
        self.version += 1
        if self.status == "pending":
            live.keep(self.uow, self.instance_id, self.version, self.parsed.digest, self.wf)

    def _sync_rows(self) -> None:
        """Cancel open rows of tasks the workflow left; open rows for a READY task that has none open.

        A row's ``wf_task`` is ``<workflow task id>/<round>``: a task run again (退回 resets the workflow
        to it, keeping its id) gets a new round, so earlier decisions do not count again."""
        ready = self.ready_tasks() if self.status == "pending" else {}
        rows = list(self.tasks)
        rounds: dict[str, set[str]] = {}
        open_keys: dict[str, str] = {}
        for row in rows:
            wf_id = row.wf_task.split("/", 1)[0]
            rounds.setdefault(wf_id, set()).add(row.wf_task)
            if row.status in rules.OPEN:
                if wf_id not in ready:
                    self.tasks.set(row.id, status="cancelled", decided_at=self.uow.clock.now())
                else:
                    open_keys[wf_id] = row.wf_task
        for wf_id, task in ready.items():
            key = open_keys.get(wf_id)
            if key is None:
                key = f"{wf_id}/{len(rounds.get(wf_id, ())) + 1}"
                self._open_step(key, task)
            self.refresh_readiness(key)

    def start_other(self, name: str) -> int:
        """An outcome's ``start`` action: flow ``name`` on the same record, for the same submitter."""
        return start_flow(self.uow, name, self.record_id, submitter_id=self.submitter_id)

    def step_of(self, name: str) -> ApprovalStep:
        found = self.flow.steps.get(name)
        if found is None:
            raise WorkflowTextRefused(f"flow {self.flow.name!r} has no approval step for task {name!r}",
                                      code="unknown_step", details={"flow": self.flow.name, "step": name})
        return found

    def _open_step(self, wf_task: str, task: Any) -> None:
        step = self.step_of(task.task_spec.name)
        users = assignees.resolve_all(self.uow, step.assignees, flow_values(self.flow, self.record(), task.data))
        if not users:
            users = self._no_assignee(step)
        timeout = step.timeout or self.flow.timeout
        now = self.uow.clock.now()
        due = now + timeout.after if timeout is not None else None
        seqs = [i if step.mode == "sequential" else 0 for i in range(len(users))]
        # the rows are inserted with the status the rules give them (ids -1, -2, ... stand in for theirs)
        wanted = rules.readiness(step.mode, [rules.Row(-1 - i, "waiting", seq) for i, seq in enumerate(seqs)])
        for i, uid in enumerate(users):
            status = wanted.get(-1 - i, "waiting")
            new_id = self.tasks.add(step=step.id, wf_task=wf_task, assignee_id=uid, status=status, seq=seqs[i],
                                    due_at=due, remind_at=due)
            if status == "ready":
                self.newly_ready.append(new_id)

    def _no_assignee(self, step: ApprovalStep) -> list[int]:
        """Who decides a step whose assignees name no active user: at the start, nobody (the submit is
        refused, NoAssignee); later (an earlier step approved, the user left since), the workspace's
        admins, with a ``no_assignee`` row in the history -- the approvers before must not be blocked."""
        missing = ", ".join(a.describe() for a in step.assignees)
        admins = [] if self.starting else assignees.admins(self.uow)
        if not admins:
            raise NoAssignee(
                f"step {step.id!r} of approval {self.flow.name!r} has no active approver for "
                f"{self.entity} {self.record_id}",
                details={"step": [f"no active user for {missing}"]},
                hint="give the record's owner a manager, or add an active user to the step's role or team")
        store.record_decision(self.uow, self.instance_id, "no_assignee", system=True,
                              comment=f"no active user for {missing}: the step goes to the admins",
                              data={"step": step.id, "to": admins})
        return admins

    def refresh_readiness(self, wf_task: str) -> None:
        """Set the open rows of one step to ready/waiting as the rules say (new ready rows are notified)."""
        rows = self.tasks.of(wf_task)
        if not rows:
            return
        wanted = rules.readiness(self.step_of(rows[0].step).mode, store.rule_rows(rows))
        for row in rows:
            target = wanted.get(row.id)
            if target is not None and target != row.status:
                self.tasks.set(row.id, status=target)
                if target == "ready":
                    self.newly_ready.append(row.id)

    def _plan_timers(self) -> dt.datetime | None:
        """Give every newly waiting BPMN timer its deadline on the engine clock; the earliest deadline."""
        earliest: dt.datetime | None = None
        now = self.uow.clock.now()
        for task in self.wf.event_manager.tasks.values():
            definition = task.task_spec.event_definition
            if not isinstance(definition, TimerEventDefinition):
                continue
            deadline = task.internal_data.get("crm_deadline")
            if deadline is None:
                when = _deadline(definition, self.engine.environment.evaluate(definition.expression, task.data), now)
                if when is None:
                    continue
                deadline = when.isoformat()
                task.internal_data["crm_deadline"] = deadline
                if task.internal_data.get("event_value") != PAST:
                    task.internal_data["event_value"] = NEVER
            at = dt.datetime.fromisoformat(deadline)
            earliest = at if earliest is None or at < earliest else earliest
        return earliest


def _deadline(definition: Any, text: str, now: dt.datetime) -> dt.datetime | None:
    """When a timer of ``definition`` evaluated to ``text`` fires, counted from ``now`` (None: cycles,
    which are left to SpiffWorkflow)."""
    if isinstance(definition, DurationTimerEventDefinition):
        duration = TimerEventDefinition.parse_iso_duration(text)
        return now + TimerEventDefinition.get_timedelta_from_start(duration, now)  # type: ignore[no-any-return]
    if isinstance(definition, TimeDateEventDefinition):
        return TimerEventDefinition.parse_time_or_duration(text)  # type: ignore[no-any-return]
    return None


# --------------------------------------------------------------------------- making and loading


def start(uow: UnitOfWork, flow: ApprovalFlow, record_id: int, *, submitter_id: int | None) -> Run:
    """A new instance of ``flow`` on the record, run to its first wait state and stored (same unit).

    The record's row is locked first (PostgreSQL; SQLite units write one at a time), so two submits at
    once cannot both find no pending instance."""
    record = read_record(uow, flow.entity, record_id, lock=True)
    if record is None:
        raise Conflict(f"{flow.entity} {record_id} is gone", code="not_found")
    if store.pending_for(uow.conn, flow.entity, record_id, flow.name):
        raise Conflict(f"{flow.entity} {record_id} is already waiting for approval {flow.name!r}",
                       code="approval_pending", details={"flow": flow.name})
    parsed = spec.parsed(flow)
    store.ensure_spec(uow, parsed.digest, flow.name, flow.process_id, spec.spec_json(parsed))
    instance_id = store.new_instance(uow, flow=flow.name, digest=parsed.digest, entity=flow.entity,
                                     record_id=record_id, submitter_id=submitter_id)
    run = Run(uow, flow, parsed, instance_id, flow.entity, record_id, submitter_id)
    run._record, run._tasks, run.starting = record, TaskRows(uow, instance_id, []), True
    run.wf = spec.new_workflow(parsed, run.engine)
    run.wf.task_tree.set_data(approved=None, step=None, approvals=0, rejections=0)
    store.record_decision(uow, instance_id, "submit")
    run.wf.do_engine_steps()
    return run


def start_flow(uow: UnitOfWork, name: str, record_id: int, *, submitter_id: int | None) -> int:
    """Start flow ``name`` on the record (status field set to pending, CC told); the instance id."""
    flow = flow_named(uow, name)
    run = start(uow, flow, record_id, submitter_id=submitter_id)
    status = outcome.status_values(uow, flow.entity, flow.status_field, "pending")
    record = run.record()
    if status and any(record.get(k) != v for k, v in status.items()):
        run.written(outcome.write(uow, flow.entity, record_id, status))
    run.settle()
    notices.cc(uow, run, "start")
    return run.instance_id


def load(uow: UnitOfWork, instance_id: int, row: Any = None) -> Run:
    """The instance's workflow, restored under a row lock with the flow's script engine attached.

    ``row``: the instance's row as the caller read it under the lock in this unit."""
    if row is None:
        row = store.instance(uow.conn, instance_id, lock=True)
    flow = flow_named(uow, row.flow)
    parsed = spec.parsed(flow)
    if parsed.digest != row.spec_digest:  # an instance of an older version keeps its spec and its flow
        stored = store.stored_spec(uow.conn, row.spec_digest)
        if stored is None:
            raise Conflict(f"approval instance {instance_id} has lost its flow version", code="workflow_state")
        flow = oldflows.flow_of_revision(uow, stored.revision_id, row.flow) or flow
        parsed = spec.from_spec_json(row.spec_digest, stored.spec)
    run = Run(uow, flow, parsed, instance_id, row.entity, int(row.record_id), row.submitter_id)
    run.status, run.version = row.status, int(row.version)
    kept = live.take(uow, instance_id, run.version, parsed.digest)
    if kept is not None:  # as the last committed unit of this process left it (see engine.runtime.approvals.live)
        kept.script_engine = run.engine
        run.wf = kept
    else:
        run.wf = spec.restore(row.state, parsed, run.engine)
    return run


def task_uuid(text: str) -> uuid.UUID:
    return uuid.UUID(text)
