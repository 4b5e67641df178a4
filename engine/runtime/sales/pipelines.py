"""Stage gates: the write step (order 100) that enforces a ``pipeline:`` on every write path.

A record *moves* when a write changes its stage field (or creates it in a
stage).  Before the row is stored the step refuses the move with
:class:`~engine.errors.GateRefused` (422) when the transition is not one
the actor's roles may make, when the stage being left has open tasks and
``requires_tasks_done``, when a field the target stage ``requires:`` is
empty, or when its ``gate:`` is not met -- all of them named together.  A
move that passes sets ``probability`` from the stage and ``closed_at`` on
an outcome stage (formulas reading them are recomputed).  After the row is
written the step closes the stage history row of the stage left (its
``left_at`` and ``duration_seconds``), opens one for the stage entered, and
creates the stage's playbook tasks through the record service.

Because it is a write step, API PATCH, the transition endpoint,
``update_many``, handover, imports and workflow actions all pass through it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import insert, select, update

from engine.dsl.model import Workspace, text_in
from engine.dsl.sales.pipeline import Pipeline, Stage
from engine.errors import BadRequest, ExpressionEvalError, GateRefused, NotFound, ValidationFailed
from engine.runtime import users
from engine.runtime.engine_tables import crm_stage_history
from engine.runtime.records import exprs
from engine.runtime.records.steps import WriteContext
from engine.runtime.sales import playbooks
from engine.runtime.sales.recordctx import eval_context
from engine.wording import counted

if TYPE_CHECKING:
    from engine.runtime.runtime import UnitOfWork


def pipelines_of(workspace: Workspace) -> tuple[Pipeline, ...]:
    """The compiled pipelines of ``workspace``, in document order."""
    return tuple(o.compiled for o in workspace.objects_of("pipeline").values() if isinstance(o.compiled, Pipeline))


def pipeline_for(workspace: Workspace, entity: str) -> Pipeline | None:
    """The pipeline of ``entity`` (an entity has at most one), or None."""
    return next((p for p in pipelines_of(workspace) if p.entity == entity), None)


def write_steps(workspace: Workspace) -> list[Any]:
    """The stage-gate step, when the workspace has pipelines."""
    found = pipelines_of(workspace)
    return [StageGate({p.entity: p for p in found})] if found else []


@dataclass(frozen=True, slots=True)
class Move:
    """A stage change a write makes: ``source`` None when the record is created."""

    source: str | None
    target: str | None


def move_of(p: Pipeline, record: Mapping[str, Any], old: Mapping[str, Any] | None) -> Move | None:
    """The move the write of ``record`` (over ``old``) makes, or None when the stage stays."""
    target = record.get(p.field)
    if old is None:
        return Move(None, target) if target is not None else None
    source = old.get(p.field)
    return Move(source, target) if source != target else None


@dataclass(frozen=True, eq=False)  # compared and hashed by identity (it holds a mapping)
class StageGate:
    """The write step of every pipeline (see the module docstring)."""

    by_entity: Mapping[str, Pipeline]
    name: str = "stage_gate"
    order: int = 100

    def applies_to(self, entity: str) -> bool:
        return entity in self.by_entity

    def before_write(self, ctx: WriteContext, entity: str, record: dict[str, Any],
                     old: Mapping[str, Any] | None) -> None:
        """Refuse a move the pipeline does not allow; set what entering the stage sets."""
        p = self.by_entity[entity]
        move = move_of(p, record, old) if ctx.action in ("create", "update") else None
        if move is None:
            return
        uow = ctx.uow
        refuse_if_blocked(uow, p, move, record, old)
        if move.target is not None:
            enter(uow, p, p.stage(move.target), record, old)

    def after_write(self, ctx: WriteContext, entity: str, record: Mapping[str, Any],
                    old: Mapping[str, Any] | None) -> None:
        """Stage history (close the row of the stage left, open one for the stage entered) and playbook tasks."""
        p = self.by_entity[entity]
        move = move_of(p, record, old) if ctx.action in ("create", "update") else None
        if move is None:
            return
        uow = ctx.uow
        record_move(uow, p, int(record["id"]), move)
        stage = p.stage(move.target)
        if stage is not None and stage.tasks:
            playbooks.create_tasks(uow, p, stage, record)


# --------------------------------------------------------------------------- refusing


def refuse_if_blocked(uow: UnitOfWork, p: Pipeline, move: Move, record: Mapping[str, Any],
                      old: Mapping[str, Any] | None) -> None:
    """GateRefused naming everything that stops ``move``; nothing when it may go ahead."""
    ws = uow.workspace
    rid = record.get("id")
    what = f"{p.entity} {rid}" if rid is not None else f"the new {p.entity}"
    if move.target is None:
        raise GateRefused(f"{what} cannot leave stage {move.source!r} for no stage: it is in pipeline {p.name!r}",
                          hint=f"move it to one of: {', '.join(p.keys)}",
                          details={"pipeline": p.name, "from": move.source, "to": None,
                                   "fields": {p.field: ["is required: the record is in a pipeline"]}})
    stage = p.stage(move.target)
    assert stage is not None  # the field's options are the stages; coercion refused anything else
    actor = uow.actor
    if move.source is not None and not p.allows(move.source, move.target, actor.roles, admin=actor.is_admin):
        _refuse_transition(p, move, what, actor.roles, actor.is_admin)
    problems: list[str] = []
    details: dict[str, Any] = {"pipeline": p.name, "from": move.source, "to": move.target}
    fields: dict[str, list[str]] = {}
    label = text_in(stage.label, ws.locale, stage.key)
    if move.source is not None:
        left = p.stage(move.source)
        if left is not None and left.requires_tasks_done:
            open_tasks = playbooks.open_tasks(uow, p, left.key, int(record["id"]))
            if open_tasks:
                details["open_tasks"] = open_tasks
                problem = (f"{counted(len(open_tasks), 'task')} of stage {move.source!r} "
                           f"{'is' if len(open_tasks) == 1 else 'are'} not done "
                           f"({', '.join(repr(t['subject']) for t in open_tasks[:3])})")
                problems.append(problem)
                fields[p.field] = [problem]
    missing = [f for f in stage.requires if _empty(record.get(f))]
    if missing:
        entity = ws.entities[p.entity]
        names = [f"{f} ({text_in(entity.fields[f].label, ws.locale, f)})" for f in missing]
        problems.append(f"{', '.join(names)} {'is' if len(missing) == 1 else 'are'} required to enter it")
        details["missing"] = missing
        fields.update({f: [f"is required to enter stage {move.target!r}"] for f in missing})
    reads_missing = stage.gate is not None and bool(set(missing) & exprs.fields_used(stage.gate))
    gate_problem = None if reads_missing else _gate_problem(uow, stage, record, old)  # judged once filled in
    if gate_problem is not None:
        problems.append(gate_problem)
        fields.setdefault("_record", []).append(gate_problem)
        details["gate"] = {"expression": stage.gate.source if stage.gate else None,
                           "message": _local(stage.message, ws.locale) or None}
    if problems:
        details["fields"] = fields
        raise GateRefused(f"{what} cannot enter stage {label!r} ({move.target}): " + "; ".join(problems),
                          hint=_hint(missing, details), details=details)


def _refuse_transition(p: Pipeline, move: Move, what: str, roles: Sequence[str], admin: bool) -> None:
    assert move.source is not None and move.target is not None
    allowed = p.moves_from(move.source, roles, admin=admin)
    rule = {"sequential": "forward one stage, or to an outcome stage", "any": "any move"}.get(
        p.transitions if isinstance(p.transitions, str) else "", "the moves its transitions list")
    raise GateRefused(
        f"{what} cannot move from {move.source!r} to {move.target!r}: pipeline {p.name!r} allows {rule}"
        + ("" if isinstance(p.transitions, str) else f" for your roles ({', '.join(roles) or 'none'})"),
        hint=f"from {move.source!r} you may move to: {', '.join(allowed)}" if allowed
        else f"no move out of {move.source!r} is open to you; ask a user with the right role",
        details={"pipeline": p.name, "from": move.source, "to": move.target, "transition": "not_allowed",
                 "allowed": allowed, "fields": {p.field: [f"cannot move from {move.source!r} to {move.target!r}"]}})


def _gate_problem(uow: UnitOfWork, stage: Stage, record: Mapping[str, Any],
                  old: Mapping[str, Any] | None) -> str | None:
    if stage.gate is None:
        return None
    locale = uow.workspace.locale
    try:
        ok = exprs.evaluate(stage.gate, record, eval_context(uow, old))
    except ExpressionEvalError as e:
        return f"its gate `{stage.gate.source}` cannot be evaluated: {e.message}"
    if ok is True:
        return None
    message = _local(stage.message, locale)
    return message or f"its gate `{stage.gate.source}` is not met"


def _hint(missing: list[str], details: Mapping[str, Any]) -> str:
    steps = []
    if details.get("open_tasks"):
        steps.append("finish (or cancel) the open tasks")
    if missing:
        steps.append(f"fill in {', '.join(missing)}")
    if "gate" in details:
        steps.append(f"meet the gate `{details['gate']['expression']}`")
    return " and ".join(steps) + ", then move the record again"


def _local(label: Mapping[str, str], locale: str) -> str:
    """The text in the workspace locale, followed by the English one when they differ."""
    if not label:
        return ""
    en = label.get("en")
    local = text_in(label, locale, "")
    return f"{local} ({en})" if en and local and local != en else (local or en or "")


def _empty(value: Any) -> bool:
    return value is None or value == [] or (isinstance(value, str) and not value.strip())


# --------------------------------------------------------------------------- entering


def enter(uow: UnitOfWork, p: Pipeline, stage: Stage | None, record: dict[str, Any],
          old: Mapping[str, Any] | None) -> None:
    """What entering ``stage`` sets: probability, closed_at (set on an outcome, cleared when reopened)."""
    if stage is None:
        return
    plan = uow.state.plan(p.entity)
    changed = False
    if p.probability_field and stage.probability is not None:
        record[p.probability_field] = plan.coercers[p.probability_field](stage.probability)
        changed = True
    if p.closed_at_field:  # set on entering an outcome (won or lost), cleared when a deal is reopened
        record[p.closed_at_field] = uow.clock.now() if stage.outcome is not None else None
        changed = True
    if changed and plan.formulas:
        _refresh_formulas(uow, p.entity, record, old)


def _refresh_formulas(uow: UnitOfWork, entity: str, record: dict[str, Any], old: Mapping[str, Any] | None) -> None:
    """Recompute the formulas (``expected_revenue`` reads ``probability``) after the step changed inputs."""
    plan = uow.state.plan(entity)
    ctx = eval_context(uow, old)
    for name, compiled in plan.formulas:
        try:
            record[name] = plan.coercers[name](exprs.evaluate(compiled, record, ctx))
        except (ExpressionEvalError, ValueError) as e:
            raise ValidationFailed(f"invalid {entity}: {name}: cannot be computed: {e}",
                                   details={name: [f"cannot be computed: {e}"]}) from e
        key = plan.currency_keys.get(name)
        if key is not None and record.get(name) is not None:
            record[key] = exprs.result_currency(compiled, record) or record.get(key)


# --------------------------------------------------------------------------- history


def record_move(uow: UnitOfWork, p: Pipeline, record_id: int, move: Move) -> None:
    """Close the open history row of the record (left_at, duration) and open one for ``move.target``."""
    now = uow.clock.now()
    h = crm_stage_history
    mine = (h.c.entity == p.entity) & (h.c.record_id == record_id) & (h.c.pipeline == p.name)
    for row in uow.conn.execute(select(h.c.id, h.c.entered_at).where(mine & h.c.left_at.is_(None))):
        uow.conn.execute(update(h).where(h.c.id == row.id).values(
            left_at=now, duration_seconds=max(0, int((now - _aware(row.entered_at)).total_seconds()))))
    if move.target is not None:
        uow.conn.execute(insert(h).values(entity=p.entity, record_id=record_id, pipeline=p.name,
                                          from_stage=move.source, to_stage=move.target, entered_at=now,
                                          actor_id=uow.actor.user_id))


def _aware(at: dt.datetime) -> dt.datetime:
    return at.replace(tzinfo=dt.UTC) if at.tzinfo is None else at


def stage_history(uow: UnitOfWork, entity: str, record_id: int) -> dict[str, Any]:
    """The record's stage history, oldest first, for a caller who may read the record (NotFound otherwise).

    Each entry: from, to (keys and labels), entered_at, left_at, duration_seconds (null while the
    record is still in the stage; ``seconds_so_far`` then counts up to now), actor.
    """
    p = pipeline_for(uow.workspace, entity)
    if p is None:
        raise NotFound(f"entity {entity!r} has no pipeline", code="not_found",
                       hint="GET /api/v1/pipelines lists the pipelines")
    uow.records.get(entity, record_id, fields=["id"])  # the caller may read the record
    h = crm_stage_history
    stmt = select(h).where(h.c.entity == entity, h.c.record_id == record_id, h.c.pipeline == p.name).order_by(h.c.id)
    now = uow.clock.now()
    names = _usernames(uow, {r.actor_id for r in uow.conn.execute(stmt)})
    locale = uow.workspace.locale
    items = []
    for r in uow.conn.execute(stmt):
        stage = p.stage(r.to_stage)
        items.append({
            "from": r.from_stage, "to": r.to_stage,
            "label": text_in(stage.label, locale, r.to_stage) if stage else r.to_stage,
            "entered_at": _aware(r.entered_at), "left_at": _aware(r.left_at) if r.left_at else None,
            "duration_seconds": r.duration_seconds,
            "seconds_so_far": None if r.left_at else max(0, int((now - _aware(r.entered_at)).total_seconds())),
            "actor_id": r.actor_id, "actor": names.get(r.actor_id),
        })
    return {"pipeline": p.name, "entity": entity, "id": record_id, "items": items}


def _usernames(uow: UnitOfWork, ids: set[Any]) -> dict[Any, str]:
    out = {}
    for uid in ids - {None}:
        entry = users.directory_entry(uow.conn, uid)
        if entry is not None:
            out[uid] = entry["username"]
    return out


# --------------------------------------------------------------------------- the transition service


def transition(uow: UnitOfWork, entity: str, record_id: int, stage: Any, *, expected_version: int | None = None,
               values: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Move a record to ``stage`` (with other ``values`` written in the same update, e.g. a lost reason).

    The move goes through the record service, so the stage gate, rules, audit and events apply as for any
    update; GateRefused (422) says what stops it.
    """
    p = pipeline_for(uow.workspace, entity)
    if p is None:
        raise NotFound(f"entity {entity!r} has no pipeline", code="not_found",
                       hint="GET /api/v1/pipelines lists the pipelines")
    if not isinstance(stage, str) or p.stage(stage) is None:
        import difflib

        close = difflib.get_close_matches(str(stage), list(p.keys), n=1)
        raise BadRequest(f"{stage!r} is not a stage of pipeline {p.name!r}", code="bad_request",
                         hint=(f"did you mean {close[0]!r}? " if close else "")
                         + f"the stages are: {', '.join(p.keys)}",
                         details={"stage": [f"not one of: {', '.join(p.keys)}"]})
    extra = dict(values or {})
    if p.field in extra and extra[p.field] != stage:
        raise BadRequest(f"values name another stage ({extra[p.field]!r}) than the move ({stage!r})",
                         code="bad_request", hint=f"leave {p.field!r} out of values")
    return uow.records.update(entity, record_id, {**extra, p.field: stage},  # type: ignore[no-any-return]
                              expected_version=expected_version)


def describe(p: Pipeline, workspace: Workspace, actor: Any) -> dict[str, Any]:
    """The pipeline as the API shows it: stages with labels, probability, requires, gate message,
    guidance, tasks, and the moves the ``actor`` may make from each stage."""
    locale = workspace.locale
    entity = workspace.entities[p.entity]
    stages = []
    for s in p.stages:
        stages.append({
            "key": s.key, "label": dict(s.label), "text": text_in(s.label, locale, s.key),
            "probability": s.probability, "outcome": s.outcome,
            "requires": [{"field": f, "label": text_in(entity.fields[f].label, locale, f)} for f in s.requires],
            "gate": {"expression": s.gate.source, "message": dict(s.message)} if s.gate else None,
            "guidance": dict(s.guidance) or None, "requires_tasks_done": s.requires_tasks_done,
            "tasks": [{"subject": dict(t.subject), "due_in_days": t.due_in_days} for t in s.tasks],
            "moves": p.moves_from(s.key, actor.roles, admin=actor.is_admin),
        })
    return {"name": p.name, "label": dict(p.label), "entity": p.entity, "field": p.field,
            "transitions": p.transitions if isinstance(p.transitions, str) else "explicit", "stages": stages}
