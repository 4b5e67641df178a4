"""Money totals in one currency: sums of a money field over the records a caller may read, and the
pipeline forecast (per stage: count, total, probability-weighted total).

Records may each carry their own currency; every amount is converted to the target currency (default:
the workspace's ``currency:``) at the rate of one chosen day (``as_of``, default today by the unit's
clock) before it is added.  The rates needed are checked first: a missing one is MissingExchangeRate
naming the pair and the day, never a silently smaller total.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy import Date, Text, cast, func, literal
from sqlalchemy.sql.elements import ColumnElement

from engine.errors import BadRequest, NotFound
from engine.runtime import exchange_rates, money_sql
from engine.runtime.records import listing, query
from engine.runtime.records.pipeline import open_entity
from engine.runtime.sales.pipelines import pipelines_of

if TYPE_CHECKING:
    from engine.runtime.runtime import UnitOfWork

CENT = Decimal("0.01")


@dataclass(frozen=True, slots=True)
class Total:
    """A converted total of one group (``key`` None for the whole set)."""

    key: Any
    count: int
    amount: Decimal

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "count": self.count, "amount": str(self.amount)}


def _money_field(uow: UnitOfWork, entity: str, field: str, hidden: frozenset[str]) -> None:
    f = uow.workspace.entities[entity].fields.get(field)
    if f is None or field in hidden or f.type != "money" or not f.stored:
        raise BadRequest(f"{entity} has no money field {field!r}", code="bad_request",
                         hint="name a stored money field, e.g. amount")


def _day(uow: UnitOfWork, as_of: Any) -> dt.date:
    return uow.clock.now().astimezone(dt.UTC).date() if as_of in (None, "") else exchange_rates.day_value(
        as_of, where="as_of")


def _parts(uow: UnitOfWork, entity: str, field: str, target: str, filter_text: str | None) -> Any:
    plan, access = open_entity(uow, entity, "read")
    _money_field(uow, entity, field, access.hidden)
    schema = uow.schema
    amount = schema.field_expr(entity, field)
    src = func.coalesce(money_sql.currency_expr(schema, plan.table, entity, f"{field}_currency"),
                        literal(uow.workspace.currency))
    where = [*listing.list_where(uow, plan, filter_text), amount.is_not(None)]
    return plan, access, amount, src, query.where_all(*where)


def _check_rates(uow: UnitOfWork, plan: Any, access: Any, src: Any, where: Any, target: str, day: dt.date) -> None:
    stmt = query.base_select(uow, plan, access, [src.label("c")]).where(where).distinct()
    for code in sorted(c for c in uow.conn.execute(stmt).scalars() if c is not None):
        exchange_rates.require_rate(uow.conn, code, target, day)


def _converted(uow: UnitOfWork, amount: Any, src: Any, target: str, day: dt.date) -> ColumnElement[Any]:
    pg = uow.schema.dialect == "postgresql"
    dst: Any = cast(literal(target), Text()) if pg else literal(target)
    when: Any = cast(literal(day, Date()), Date()) if pg else literal(day, Date())
    return money_sql.converted_sql(amount, cast(src, Text()) if pg else src, dst, when, uow.schema.dialect)


def money_totals(uow: UnitOfWork, entity: str, field: str, *, currency: str | None = None, as_of: Any = None,
                 filter_text: str | None = None, group_by: str | None = None) -> tuple[str, dt.date, list[Total]]:
    """(currency, day, totals): ``field`` summed over the live ``entity`` records the actor may read.

    ``group_by`` names a field to group on.  Totals are rounded to cents at the end (money's scale).
    """
    target = exchange_rates.currency_code(currency or uow.workspace.currency, where="currency")
    day = _day(uow, as_of)
    plan, access, amount, src, where = _parts(uow, entity, field, target, filter_text)
    _check_rates(uow, plan, access, src, where, target, day)
    value = _converted(uow, amount, src, target, day)
    cols: list[Any] = [func.count(), func.sum(value)]
    key = uow.schema.field_expr(entity, group_by) if group_by else None
    stmt = query.base_select(uow, plan, access, [*([key] if key is not None else []), *cols]).select_from(
        plan.table).where(where)
    if key is not None:
        stmt = stmt.group_by(key)
    out = []
    for row in uow.conn.execute(stmt):
        values = list(row)
        group = values.pop(0) if key is not None else None
        out.append(Total(group, int(values[0]), _cents(values[1])))
    return target, day, out


def _cents(value: Any) -> Decimal:
    return Decimal(str(value or 0)).quantize(CENT)


def forecast(uow: UnitOfWork, pipeline: str, *, field: str = "amount", currency: str | None = None,
             as_of: Any = None, filter_text: str | None = None) -> dict[str, Any]:
    """The forecast of a pipeline: per stage (in stage order) the records, their total and the total
    weighted by the stage probability, all in one currency at the rate of ``as_of``."""
    p = next((p for p in pipelines_of(uow.workspace) if p.name == pipeline), None)
    if p is None or uow.guard.access(p.entity).read == "none":
        raise NotFound(f"there is no pipeline {pipeline!r}", hint="GET /api/v1/pipelines lists the pipelines")
    target, day, totals = money_totals(uow, p.entity, field, currency=currency, as_of=as_of,
                                       filter_text=filter_text, group_by=p.field)
    by_stage = {t.key: t for t in totals}
    stages: list[dict[str, Any]] = []
    total = weighted_total = Decimal("0.00")
    for s in p.stages:
        t = by_stage.get(s.key, Total(s.key, 0, Decimal("0.00")))
        weighted = (t.amount * Decimal(str(s.probability or 0)) / 100).quantize(CENT)
        total, weighted_total = total + t.amount, weighted_total + weighted
        stages.append({"stage": s.key, "probability": s.probability, "count": t.count, "amount": str(t.amount),
                       "weighted": str(weighted)})
    return {"pipeline": p.name, "entity": p.entity, "field": field, "currency": target, "as_of": day.isoformat(),
            "stages": stages, "total": str(total), "weighted": str(weighted_total)}
