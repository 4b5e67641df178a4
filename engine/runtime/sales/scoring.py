"""Scoring at run time: the write step, the explanation of a record's score, the daily refresh job and the
plan step that rescores every record when the rules change (docs/scoring.md).

* :class:`ScoringStep` (order 300) computes each scoring's score and grade of a record on create, and on
  update only when the write changes a field the rules read (:attr:`Scoring.dependencies`) or the score
  is still empty.  Rules that read the clock or another record are kept fresh by the refresh job.
* :func:`explain` says, rule by rule, why a record has its score (``GET /records/<e>/<id>/score``).
* :class:`RefreshJob` (``scoring.refresh``, daily) and :class:`RescorePlanStep` (``crm plan`` / ``apply``)
  rescore set-based (:mod:`engine.runtime.sales.rescore`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from engine.dsl.model import Workspace, text_in
from engine.dsl.sales.scoring import ScoreOutcome, Scoring, score, scorings_of
from engine.errors import NotFound
from engine.runtime.sales.evaluation import eval_context
from engine.runtime.sales.rescore import RescoreResult, count_changes, rescore
from engine.runtime.schema.model import Change
from engine.wording import counted

if TYPE_CHECKING:
    from engine.runtime.records.steps import WriteContext
    from engine.runtime.runtime import UnitOfWork
    from engine.runtime.schema.features import FeatureApplyContext, FeaturePlanContext

#: the name of the plan step and of the write step
STEP = "scoring"
REFRESH_JOB = "scoring.refresh"


def needs_rescoring(scoring: Scoring, record: Mapping[str, Any], old: Mapping[str, Any] | None) -> bool:
    """Whether a write of ``record`` (``old``: the stored state, None on create) must rescore it."""
    if old is None or record.get(scoring.score_field) is None:
        return True
    return any(record.get(f) != old.get(f) for f in scoring.dependencies)


class ScoringStep:
    """The write step (order 300): sets every due scoring's score and grade field on the record."""

    name = STEP
    order = 300

    def __init__(self, workspace: Workspace) -> None:
        by_entity: dict[str, list[Scoring]] = {}
        for s in scorings_of(workspace):
            by_entity.setdefault(s.entity, []).append(s)
        self.by_entity = {k: tuple(v) for k, v in by_entity.items()}

    def applies_to(self, entity: str) -> bool:
        return entity in self.by_entity

    def before_write(self, ctx: WriteContext, entity: str, record: dict[str, Any],
                     old: Mapping[str, Any] | None) -> None:
        if ctx.action not in ("create", "update"):
            return
        due = [s for s in self.by_entity[entity] if needs_rescoring(s, record, old)]
        if not due:
            return
        ectx = eval_context(ctx.uow)
        view = record
        if old is None and record.get("created_at") is None:  # stamped after the steps: as the write will
            now = ctx.uow.clock.now()
            view = {**record, "created_at": now, "updated_at": now, "created_by": ctx.uow.actor.user_id}
        for s in due:
            outcome = score(s, view, ectx)
            record[s.score_field] = outcome.total
            record[s.grade_field] = outcome.grade


# --------------------------------------------------------------------------- explanation


def explain(uow: UnitOfWork, entity: str, record_id: int) -> dict[str, Any]:
    """Why the record has its scores: for every scoring of ``entity``, each rule (fired or not, its points
    after decay, its reason in the workspace locale and in every language), the total, the grade and the
    thresholds -- computed now, next to the stored values.

    The actor must be able to read the record (NotFound / PermissionDenied as for a read); the rules are
    evaluated on the whole record, fields hidden from the actor included (only their effect is shown).
    """
    uow.records.get(entity, record_id)
    found = scorings_of(uow.workspace, entity)
    if not found:
        raise NotFound(f"{entity} has no scoring", code="no_scoring",
                       hint="add a scoring: document for it (docs/scoring.md)", details={"entity": entity})
    with uow.elevated():
        record = uow.records.get(entity, record_id)
    ectx = eval_context(uow)
    locale = uow.workspace.locale
    return {"entity": entity, "id": record_id, "locale": locale,
            "scorings": [_explained(score(s, record, ectx), record, locale) for s in found]}


def _explained(outcome: ScoreOutcome, record: Mapping[str, Any], locale: str) -> dict[str, Any]:
    s = outcome.scoring
    rules = []
    for o in outcome.rules:
        r = o.rule
        rules.append({
            "index": r.index, "key": r.key, "when": r.when.source, "fired": o.fired, "points": o.points,
            "rule_points": r.points, "decay": dict(r.decay) if r.decay else None, "window_days": r.window_days,
            "outside_window": o.outside_window, "reason": r.reason_in(locale),
            "reasons": dict(r.reason), "error": o.error})
    return {"scoring": s.name, "label": text_in(s.label, locale, s.name), "score_field": s.score_field,
            "grade_field": s.grade_field, "score": outcome.total, "grade": outcome.grade,
            "raw_total": outcome.raw_total, "caps": {"min": s.min_score, "max": s.max_score},
            "grades": [{"grade": g, "min": low} for g, low in s.grades],
            "stored": {"score": record.get(s.score_field), "grade": record.get(s.grade_field)}, "rules": rules}


# --------------------------------------------------------------------------- set-based: job, command, plan


def rescore_entity(uow: UnitOfWork, entity: str, *, only_time_based: bool = False) -> list[RescoreResult]:
    """Rescore every record of ``entity`` under each of its scorings, set-based, in the unit's transaction
    (audit rows name the unit's actor and revision).  NotFound when the entity has no scoring."""
    uow.require_writable()
    if entity not in uow.workspace.entities:
        uow.guard.access(entity)  # NotFound with a hint
    found = scorings_of(uow.workspace, entity)
    if not found:
        raise NotFound(f"{entity} has no scoring", code="no_scoring",
                       hint="add a scoring: document for it (docs/scoring.md)", details={"entity": entity})
    now = uow.clock.now()
    return [rescore(uow.conn, uow.schema, s, now=now, actor_id=uow.actor.user_id, revision_id=uow.state.revision_id)
            for s in found if s.time_based or not only_time_based]


class RefreshJob:
    """``scoring.refresh``, daily: rescores the scorings whose rules read the clock (decay, windows,
    ``days_since``) or another record, so scores age without anyone writing the records."""

    name = REFRESH_JOB
    schedule = "daily 02:00"
    max_attempts = 3

    def run(self, ctx: Any, payload: Mapping[str, Any]) -> None:
        uow = ctx.uow
        now = uow.clock.now()
        for s in scorings_of(uow.workspace):
            if s.time_based:
                rescore(uow.conn, uow.schema, s, now=now, revision_id=uow.state.revision_id)


def _key(s: Scoring) -> str:
    return f"scoring/{s.name}"


class RescorePlanStep:
    """Rescores every record of an entity in the apply when one of its scorings' rules, caps or grades
    changed (the revision's fingerprint of the scoring differs); the plan says how many grades change."""

    name = STEP

    def fingerprints(self, workspace: Workspace) -> dict[str, str]:
        return {_key(s): s.fingerprint() for s in scorings_of(workspace)}

    def plan(self, pctx: FeaturePlanContext) -> list[Change]:
        out = []
        for s in scorings_of(pctx.new):
            if pctx.old_fingerprints.get(_key(s)) == s.fingerprint():
                continue  # unchanged rules: no scan
            if pctx.old is None or s.entity not in {**pctx.old.entities, **pctx.old.retired_entities}:
                continue  # a table this plan creates has no rows to rescore
            out.append(self._change(pctx, s))
        return out

    def _change(self, pctx: FeaturePlanContext, s: Scoring) -> Change:
        details = {"step": STEP, "scoring": s.name}
        description = f"rescore {s.entity} (scoring {s.name})"
        hops = {(via, target, f) for r in s.rules for e in r.expressions for via, target, f in e.references_used}
        ready = pctx.holds(s.entity, {*s.dependencies, s.score_field, s.grade_field}) and all(
            pctx.holds(target, [f]) for _via, target, f in hops)
        if not ready or pctx.conn is None:
            return Change("feature_data", s.entity, description, details=details,
                          note="every row is scored once this apply has added the fields the rules read")
        counts = count_changes(pctx.conn, pctx.new_schema, s, now=dt.datetime.now(dt.UTC))
        note = (f"{counted(counts.grades_changed, 'grade')} and {counted(counts.scores_changed, 'score')} of "
                f"{counted(counts.rows, 'row')} would change")
        return Change("feature_data", s.entity, description, rows=counts.scores_changed, note=note,
                      details={**details, "grades_changed": counts.grades_changed})

    def apply(self, actx: FeatureApplyContext, change: Change) -> None:
        name = change.details["scoring"]
        s = next((x for x in scorings_of(actx.workspace) if x.name == name), None)
        if s is None:
            return  # the scoring went away between plan and apply: the plan check refuses that anyway
        actx.done[_key(s)] = rescore(actx.conn, actx.schema, s, now=actx.now, revision_id=actx.revision_id)


# --------------------------------------------------------------------------- the feature plugin's hooks


def write_steps(workspace: Workspace) -> list[Any]:
    """The scoring step, when the workspace has scorings."""
    return [ScoringStep(workspace)] if scorings_of(workspace) else []


def job_kinds() -> list[Any]:
    return [RefreshJob()]


def plan_steps(workspace: Workspace) -> list[Any]:
    return [RescorePlanStep()]
