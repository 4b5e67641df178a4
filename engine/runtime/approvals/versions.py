"""Live changes of a flow: the ``approvals.versions`` plan step and the migration job.

A new revision's flow (a new digest) applies to new instances; running ones keep their version
(:mod:`.oldflows`).  ``crm plan`` lists, per flow, the pending instances on older versions and the steps
they wait in:

* without a ``migrate:`` mapping they finish on their version (a safe, informational change) -- unless
  one waits in a step the new version no longer has: that is *blocked* (the old version's step could no
  longer be migrated later, and the flow's new document gives no place for it), fixed by a mapping;
* with a mapping (old step -> new step) the apply queues the ``approvals.migrate`` job (in the apply's
  transaction); the worker moves each instance to the new version: a new workflow of the new spec is run
  forward -- steps before the mapped one count as passed -- until every mapped step is waiting, and the
  instance's open task rows are re-pointed to those steps (their assignees and history kept).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, inspect, select, update

from engine.dsl.approvals.model import ApprovalFlow
from engine.dsl.model import Workspace
from engine.errors import Conflict
from engine.runtime.approvals import rules, runner, spec, store
from engine.runtime.engine_tables import crm_approval_instances, crm_approval_tasks
from engine.runtime.schema.features import FeatureApplyContext, FeaturePlanContext
from engine.runtime.schema.model import Change
from engine.wording import counted

if TYPE_CHECKING:
    from engine.runtime.jobs.worker import JobContext
    from engine.runtime.runtime import UnitOfWork

STEP = "approvals.versions"
JOB = "approvals.migrate"
#: steps a migration may pass on its way to the mapped ones
MAX_FORWARD = 50


def plan_steps(workspace: Workspace) -> list[Any]:
    return [VersionsPlanStep()]


def job_kinds() -> list[Any]:
    return [MigrateJob()]


def _flows(workspace: Workspace) -> list[ApprovalFlow]:
    return [o.compiled for o in workspace.objects_of("approval").values() if isinstance(o.compiled, ApprovalFlow)]


def waiting_on_old(conn: Any, flow: ApprovalFlow) -> dict[str, dict[str, int]]:
    """Old digest -> {step: open tasks} of the flow's pending instances on versions other than ``flow``'s
    (a step with no open task counts 0: the instance waits on a timer)."""
    i, t = crm_approval_instances, crm_approval_tasks
    digest = spec.flow_digest(flow)
    out: dict[str, dict[str, int]] = {}
    rows = conn.execute(select(i.c.spec_digest, i.c.id).where(
        i.c.flow == flow.name, i.c.status == "pending", i.c.spec_digest != digest))
    for old, _iid in rows:
        out.setdefault(old, {})
    steps = conn.execute(select(i.c.spec_digest, t.c.step, func.count()).join(t, t.c.instance_id == i.c.id).where(
        i.c.flow == flow.name, i.c.status == "pending", i.c.spec_digest != digest,
        t.c.status.in_(sorted(rules.OPEN))).group_by(i.c.spec_digest, t.c.step))
    for old, step, n in steps:
        out.setdefault(old, {})[step] = int(n)
    return out


def instances_on(conn: Any, flow: str, digest: str) -> int:
    i = crm_approval_instances
    return int(conn.execute(select(func.count()).select_from(i).where(
        i.c.flow == flow, i.c.status == "pending", i.c.spec_digest == digest)).scalar_one())


class VersionsPlanStep:
    """The plan step (see the module docstring)."""

    name = STEP

    def fingerprints(self, workspace: Workspace) -> dict[str, str]:
        """The version of every flow: a plan looks at running instances only when a flow changed."""
        return {f"approval:{f.name}": spec.flow_digest(f) for f in _flows(workspace)}

    def plan(self, pctx: FeaturePlanContext) -> list[Change]:
        if pctx.conn is None or not inspect(pctx.conn).has_table(crm_approval_instances.name):
            return []
        out: list[Change] = []
        for flow in _flows(pctx.new):
            if pctx.old_fingerprints.get(f"approval:{flow.name}") == spec.flow_digest(flow):
                continue  # the flow did not change: no scan
            for old, steps in sorted(waiting_on_old(pctx.conn, flow).items()):
                out.append(self._change(pctx, flow, old, steps))
        return out

    def _change(self, pctx: FeaturePlanContext, flow: ApprovalFlow, old: str, steps: Mapping[str, int]) -> Change:
        n = instances_on(pctx.conn, flow.name, old)
        details = {"step": STEP, "flow": flow.name, "from": old, "to": spec.flow_digest(flow),
                   "migrate": dict(flow.migrate), "waiting": dict(steps)}
        where = ", ".join(f"{s} ({counted(k, 'task')})" for s, k in sorted(steps.items())) or "timers"
        lost = sorted(s for s in steps if s not in flow.steps and s not in flow.migrate)
        if flow.migrate and not lost:
            moves = ", ".join(f"{s} -> {flow.migrate.get(s, s)}" for s in sorted(steps))
            return Change("feature_data", flow.entity, f"move {counted(n, 'running instance')} of approval "
                          f"{flow.name} from version {old[:12]} to the new version ({moves})", rows=n,
                          note=f"waiting in {where}; queued for crm worker (job {JOB})", details=details)
        if lost:
            return Change("feature_data", flow.entity, f"approval {flow.name}: {counted(n, 'running instance')} "
                          f"of version {old[:12]} wait in {', '.join(lost)}, which the new version removes",
                          safety="blocked", rows=n, details=details,
                          reason=f"{', '.join(lost)} would have waiting tasks and no step to go to",
                          fix=f"add migrate: {{{lost[0]}: <a step of the new version>}} to approval {flow.name}, "
                              "or let those approvals finish before applying")
        return Change("feature_data", flow.entity, f"approval {flow.name}: {counted(n, 'running instance')} "
                      f"stay on version {old[:12]} and finish on it", rows=n, note=f"waiting in {where}",
                      details=details)

    def apply(self, actx: FeatureApplyContext, change: Change) -> None:
        d = change.details
        if not d.get("migrate"):
            return  # instances finish on their version
        from engine.runtime.jobs import queue

        queue.enqueue(actx.conn, JOB, {"flow": d["flow"], "from": d["from"], "to": d["to"]}, now=actx.now,
                      dedupe_key=f"{JOB}:{d['flow']}:{d['from']}:{d['to']}")


class MigrateJob:
    """``approvals.migrate``: move a flow's instances of one old version to the active version."""

    name = JOB
    max_attempts = 3

    def run(self, ctx: JobContext, payload: Mapping[str, Any]) -> None:
        uow = ctx.uow
        flow = runner.flows_of(uow).get(str(payload["flow"]))
        if flow is None or spec.flow_digest(flow) != payload["to"]:
            return  # another revision since: its own plan decides
        i = crm_approval_instances
        ids = [r[0] for r in uow.conn.execute(select(i.c.id).where(
            i.c.flow == flow.name, i.c.status == "pending", i.c.spec_digest == payload["from"]).order_by(i.c.id))]
        for instance_id in ids:
            migrate(uow, instance_id, flow)


def migrate(uow: UnitOfWork, instance_id: int, flow: ApprovalFlow) -> None:
    """Move one pending instance to ``flow``'s version by its ``migrate`` mapping (see the module docstring)."""
    old = runner.load(uow, instance_id)
    rows = [r for r in store.tasks_of(uow.conn, instance_id) if r.status in rules.OPEN]
    targets = {r.step: flow.migrate.get(r.step, r.step) for r in rows}
    missing = sorted(t for t in targets.values() if t not in flow.steps)
    if missing:
        raise Conflict(f"approval {instance_id} cannot move: the new version has no step {missing[0]!r}",
                       code="migrate_target", details={"steps": missing})
    parsed = spec.parsed(flow)
    store.ensure_spec(uow, parsed.digest, flow.name, flow.process_id, spec.spec_json(parsed))
    new = runner.Run(uow, flow, parsed, instance_id, old.entity, old.record_id, old.submitter_id)
    new.version = old.version
    new.wf = spec.new_workflow(parsed, new.engine)
    last = old.wf.last_task.data if old.wf.last_task is not None else {}
    new.wf.task_tree.set_data(approved=None, step=None, approvals=int(last.get("approvals") or 0),
                              rejections=int(last.get("rejections") or 0))
    new.wf.do_engine_steps()
    wanted = set(targets.values())
    for _ in range(MAX_FORWARD):
        ready = {t.task_spec.name: t for t in new.ready_tasks().values()}
        if wanted <= set(ready):
            break
        passing = next((t for name, t in ready.items() if name not in wanted), None)
        if passing is None:
            raise Conflict(f"approval {instance_id} cannot reach {', '.join(sorted(wanted))} in the new version",
                           code="migrate_target", details={"steps": sorted(wanted)})
        passing.set_data(approved=True, step=passing.task_spec.name)
        passing.run()
        new.wf.do_engine_steps()
    else:
        raise Conflict(f"approval {instance_id}: no way to {', '.join(sorted(wanted))}", code="migrate_target")
    ready_ids = {t.task_spec.name: str(t.id) for t in new.ready_tasks().values()}
    for row in rows:
        target = targets[row.step]
        uow.conn.execute(update(crm_approval_tasks).where(crm_approval_tasks.c.id == row.id).values(
            step=target, wf_task=f"{ready_ids[target]}/1"))
    uow.conn.execute(update(crm_approval_instances).where(crm_approval_instances.c.id == instance_id)
                     .values(spec_digest=parsed.digest))
    store.record_decision(uow, instance_id, "migrate", system=True,
                          data={"from": old.parsed.digest, "to": parsed.digest, "steps": targets})
    new.settle()
