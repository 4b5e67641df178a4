"""The SQL of money: a money field's currency code, and an amount converted at the dated exchange rates.

The conversion rule is the one :mod:`engine.runtime.exchange_rates` states and applies in Python
(:func:`~engine.runtime.exchange_rates.rate_on`): the pair's latest rate on or before the day, else the
reverse pair's latest rate inverted, rounded to 10 places; the same currency needs no rate.  The
``convert()`` expression function (:mod:`engine.runtime.currency.convert`), the SQL expressions
(:mod:`engine.runtime.sqlexpr`) and the money totals (:mod:`engine.runtime.currency.totals`) build
their clauses here, so they agree on SQLite and PostgreSQL.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Date, Float, Numeric, String, case, cast, func, literal, literal_column, select, type_coerce
from sqlalchemy.sql.elements import ColumnElement

from engine.dsl.expressions.functions import NUMBER_SCALE
from engine.dsl.model import JSON_COLUMN
from engine.runtime.engine_tables import crm_exchange_rates as rates_table
from engine.runtime.storage import Schema


def currency_expr(schema: Schema, table: Any, entity: str, key: str) -> ColumnElement[Any]:
    """The currency code ``<money field>_currency`` of ``table`` (a row of ``entity``), whatever the storage."""
    money = schema.workspace.entities[entity].fields[key.removesuffix("_currency")]
    if money.storage != "json":
        return type_coerce(table.c[key], String())
    col = table.c[JSON_COLUMN]
    if schema.dialect == "postgresql":
        return type_coerce(col.op("->>")(literal_column(f"'{key}'")), String())
    return type_coerce(func.json_extract(col, literal_column(f"'$.{key}'")), String())


def _latest_sql(src: ColumnElement[Any], dst: ColumnElement[Any], day: ColumnElement[Any]) -> ColumnElement[Any]:
    r = rates_table.alias()
    return (select(r.c.rate).where(r.c.from_currency == src, r.c.to_currency == dst, r.c.rate_date <= day)
            .order_by(r.c.rate_date.desc()).limit(1).correlate_except(r).scalar_subquery())


def converted_sql(amount: ColumnElement[Any], src: ColumnElement[Any], dst: ColumnElement[Any],
                  day: ColumnElement[Any], dialect: str) -> ColumnElement[Any]:
    """The SQL form of converting ``amount`` from ``src`` to ``dst`` on ``day`` (same rule as Python)."""
    pg = dialect == "postgresql"
    real = Numeric() if pg else Float()
    direct = _latest_sql(src, dst, day)
    reverse = _latest_sql(dst, src, day)
    one = cast(literal(1), Numeric()) if pg else literal(1.0, Float())
    inverted = func.round(one / func.nullif(cast(reverse, real), 0), NUMBER_SCALE)
    rate = func.coalesce(cast(direct, real), inverted)
    return case((src == dst, cast(amount, real)), else_=func.round(cast(amount, real) * rate, NUMBER_SCALE))


def utc_day_sql(value: ColumnElement[Any], kind: str, dialect: str) -> ColumnElement[Any]:
    """The UTC calendar day of a date or datetime clause."""
    if dialect == "postgresql":
        return cast(func.timezone("UTC", value), Date()) if kind == "datetime" else value
    return type_coerce(func.date(value), Date())
