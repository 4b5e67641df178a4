"""Set-based rescoring: every record of an entity rescored by SQL, with audit rows for the ones that changed.

The score of a scoring is one SQL expression built from the compiled expressions of its rules
(:func:`score_sql`: a ``CASE WHEN condition THEN points ELSE 0 END`` per rule, decay and window as the
SQL forms of their compiled expressions, so SQLite and PostgreSQL do the date arithmetic the record in
memory does), capped; the grade is a ``CASE`` over the thresholds.  :func:`rescore` writes the new
values of the rows whose score or grade changes, bumps their ``version`` (their ``updated_at`` stays:
nobody edited them) and writes one ``crm_audit`` row per rescored record (action ``rescore``, the old
and new ``{score, grade}``), all set-based:

* PostgreSQL: one statement -- the scores computed once (a ``MATERIALIZED`` CTE), an ``UPDATE ... FROM``
  that skips a row written since (its version moved: that write scored it already), and the audit rows
  inserted from the update's ``RETURNING``;
* SQLite (writers are serialised): the changes computed once into a temporary table, then one
  ``INSERT ... SELECT`` of audit rows and one ``UPDATE ... FROM``.

Used by the plan step (a rule change rescores every row in the apply), the daily refresh job and
``crm rescore``.  This is the one sanctioned write of entity rows outside the record service.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    MetaData,
    String,
    Table,
    and_,
    case,
    cast,
    func,
    insert,
    literal,
    null,
    or_,
    select,
    type_coerce,
    update,
)
from sqlalchemy.sql.elements import ColumnElement

from engine.dsl.sales.scoring import Scoring
from engine.runtime.engine_tables import crm_audit
from engine.runtime.sqlexpr import to_sql
from engine.runtime.storage import Schema
from engine.runtime.types import UtcDateTime

#: the audit action of a set-based rescoring
AUDIT_ACTION = "rescore"
_TEMP = "crm_rescore_changes"


@dataclass(frozen=True, slots=True)
class RescoreResult:
    """What a rescoring changed (or, counting only, would change)."""

    scoring: str
    entity: str
    rows: int
    scores_changed: int
    grades_changed: int


def score_sql(scoring: Scoring, schema: Schema, *, now: dt.datetime) -> ColumnElement[Any]:
    """The capped total of ``scoring`` over its entity's table, as SQL (``now`` fixes the clock)."""
    pg = schema.dialect == "postgresql"

    def sql(expr: Any, *, condition: bool = False) -> ColumnElement[Any]:
        return to_sql(expr, schema, scoring.entity, now=now, for_filter=condition)

    def num(value: int) -> ColumnElement[Any]:
        return _typed(value, BigInteger()) if pg else literal(value, BigInteger())

    total: ColumnElement[Any] = num(0)
    for rule in scoring.rules:
        cond = sql(rule.when, condition=True)
        if rule.window is not None:
            cond = and_(cond, sql(rule.window, condition=True))
        points = sql(rule.decayed) if rule.decayed is not None else num(rule.points)
        total = total + case((cond, points), else_=num(0))
    if scoring.max_score is not None:
        total = (func.least if pg else func.min)(total, num(scoring.max_score))
    if scoring.min_score is not None:
        total = (func.greatest if pg else func.max)(total, num(scoring.min_score))
    return type_coerce(total, BigInteger())


def grade_sql(scoring: Scoring, score: ColumnElement[Any]) -> ColumnElement[Any]:
    """The grade a score reaches (NULL below every threshold)."""
    if not scoring.grades:
        return type_coerce(null(), String())
    return case(*[(score >= low, literal(g, String())) for g, low in scoring.grades], else_=null())


def _computed(scoring: Scoring, schema: Schema, now: dt.datetime) -> Any:
    """The live rows with their stored and new scores, computed once (a materialised CTE)."""
    t = schema.table(scoring.entity)
    return select(t.c.id.label("rid"), t.c.version.label("v"), t.c[scoring.score_field].label("old_score"),
                  t.c[scoring.grade_field].label("old_grade"), score_sql(scoring, schema, now=now).label("new_score")
                  ).where(t.c.deleted_at.is_(None)).cte(f"scores_{scoring.name}").prefix_with("MATERIALIZED")


def _changed(s: Any, scoring: Scoring) -> ColumnElement[bool]:
    return or_(s.c.old_score.is_distinct_from(s.c.new_score),
               s.c.old_grade.is_distinct_from(grade_sql(scoring, s.c.new_score)))


def count_changes(conn: Connection, schema: Schema, scoring: Scoring, *, now: dt.datetime) -> RescoreResult:
    """How many live rows there are and how many scores and grades a rescoring would change (reads only)."""
    s = _computed(scoring, schema, now)
    new_grade = grade_sql(scoring, s.c.new_score)
    one = literal(1, BigInteger())
    row = conn.execute(select(
        func.count(),
        func.coalesce(func.sum(case((s.c.old_score.is_distinct_from(s.c.new_score), one), else_=0)), 0),
        func.coalesce(func.sum(case((s.c.old_grade.is_distinct_from(new_grade), one), else_=0)), 0),
    ).select_from(s)).one()
    return RescoreResult(scoring.name, scoring.entity, int(row[0]), int(row[1]), int(row[2]))


def rescore(conn: Connection, schema: Schema, scoring: Scoring, *, now: dt.datetime, actor_id: int | None = None,
            revision_id: int | None = None) -> RescoreResult:
    """Rescore every live record of ``scoring``'s entity on ``conn`` (in the caller's transaction)."""
    if schema.dialect == "postgresql":
        return _rescore_pg(conn, schema, scoring, now, actor_id, revision_id)
    return _rescore_sqlite(conn, schema, scoring, now, actor_id, revision_id)


def _typed(value: Any, sqltype: Any, *, pg: bool = True) -> ColumnElement[Any]:
    """A bound value of ``sqltype``: cast on PostgreSQL, whose ``INSERT ... SELECT`` cannot guess the types
    of parameters; plain on SQLite (a CAST there would apply SQLite's affinity rules to the text)."""
    value_ = literal(value, sqltype) if value is not None else null()
    return cast(value_, sqltype) if pg else value_


def _audit_rows(source: Any, scoring: Scoring, *, pg: bool, now: dt.datetime, actor_id: int | None,
                revision_id: int | None) -> Any:
    """``INSERT INTO crm_audit SELECT ...``: one row per rescored record of ``source`` (rid, old_score,
    new_score, old_grade, new_grade), its old and new ``{score_field: ..., grade_field: ...}`` as JSON."""
    def pair(score: Any, grade: Any) -> Any:
        build = func.jsonb_build_object if pg else func.json_object
        return build(typed(scoring.score_field, String()), score, typed(scoring.grade_field, String()), grade)

    def typed(value: Any, sqltype: Any) -> ColumnElement[Any]:
        return _typed(value, sqltype, pg=pg)

    rows = select(typed(scoring.entity, String()), source.c.rid, typed(AUDIT_ACTION, String()),
                  _typed(None, String(), pg=pg), pair(source.c.old_score, source.c.old_grade),
                  pair(source.c.new_score, source.c.new_grade), typed(actor_id, BigInteger()),
                  typed(now, UtcDateTime()), typed(revision_id, BigInteger()))
    cols = ["entity", "record_id", "action", "field", "old_value", "new_value", "actor_id", "at", "revision_id"]
    return insert(crm_audit).from_select(cols, rows)


def _rescore_pg(conn: Connection, schema: Schema, scoring: Scoring, now: dt.datetime, actor_id: int | None,
                revision_id: int | None) -> RescoreResult:
    t = schema.table(scoring.entity)
    s = _computed(scoring, schema, now)
    new_grade = grade_sql(scoring, s.c.new_score)
    upd = (update(t).values({scoring.score_field: s.c.new_score, scoring.grade_field: new_grade,
                             "version": t.c.version + 1})
           .where(t.c.id == s.c.rid, t.c.version == s.c.v, _changed(s, scoring))
           .returning(t.c.id.label("rid"), s.c.old_score, s.c.new_score, s.c.old_grade,
                      t.c[scoring.grade_field].label("new_grade"))
           .cte("rescored"))
    audit = _audit_rows(upd, scoring, pg=True, now=now, actor_id=actor_id, revision_id=revision_id).cte("audited")
    one = literal(1, BigInteger())
    row = conn.execute(select(
        func.count(),
        func.coalesce(func.sum(case((upd.c.old_score.is_distinct_from(upd.c.new_score), one), else_=0)), 0),
        func.coalesce(func.sum(case((upd.c.old_grade.is_distinct_from(upd.c.new_grade), one), else_=0)), 0),
    ).select_from(upd).add_cte(audit)).one()
    return RescoreResult(scoring.name, scoring.entity, int(row[0]), int(row[1]), int(row[2]))


def _rescore_sqlite(conn: Connection, schema: Schema, scoring: Scoring, now: dt.datetime, actor_id: int | None,
                    revision_id: int | None) -> RescoreResult:
    t = schema.table(scoring.entity)
    temp = Table(_TEMP, MetaData(), Column("rid", BigInteger), Column("v", BigInteger),
                 Column("old_score", BigInteger), Column("new_score", BigInteger), Column("old_grade", String),
                 Column("new_grade", String), prefixes=["TEMPORARY"])
    conn.exec_driver_sql(f"DROP TABLE IF EXISTS temp.{_TEMP}")
    temp.create(conn)
    try:
        s = _computed(scoring, schema, now)
        conn.execute(insert(temp).from_select(
            ["rid", "v", "old_score", "new_score", "old_grade", "new_grade"],
            select(s.c.rid, s.c.v, s.c.old_score, s.c.new_score, s.c.old_grade,
                   grade_sql(scoring, s.c.new_score)).where(_changed(s, scoring))))
        conn.execute(_audit_rows(temp, scoring, pg=False, now=now, actor_id=actor_id, revision_id=revision_id))
        conn.execute(update(t).values({scoring.score_field: temp.c.new_score, scoring.grade_field: temp.c.new_grade,
                                       "version": t.c.version + 1}).where(t.c.id == temp.c.rid))
        one = literal(1, BigInteger())
        row = conn.execute(select(
            func.count(),
            func.coalesce(func.sum(case((temp.c.old_score.is_distinct_from(temp.c.new_score), one), else_=0)), 0),
            func.coalesce(func.sum(case((temp.c.old_grade.is_distinct_from(temp.c.new_grade), one), else_=0)), 0),
        ).select_from(temp)).one()
    finally:
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS temp.{_TEMP}")
    return RescoreResult(scoring.name, scoring.entity, int(row[0]), int(row[1]), int(row[2]))
