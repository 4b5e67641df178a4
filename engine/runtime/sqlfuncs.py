"""SQL of the expression language's built-in functions (``lower``, ``days_between``, ``add_months``...) and
of the user directory (``owner.team``, ``manager_of(owner)``), for :mod:`engine.runtime.sqlexpr`.

Each built-in takes (SqlContext, args) and returns a clause with the same result as its Python form in
:mod:`engine.dsl.expressions.functions`, nulls included (the parity test checks both back ends).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    BigInteger,
    Date,
    Integer,
    Numeric,
    String,
    Text,
    and_,
    case,
    cast,
    extract,
    func,
    literal,
    literal_column,
    null,
    or_,
    select,
    type_coerce,
)
from sqlalchemy.sql.elements import BindParameter, Cast, ColumnElement

from engine.dsl.expressions import ast
from engine.dsl.expressions.functions import TRIM_CHARS, py_lower
from engine.runtime.engine_tables import crm_teams, crm_users
from engine.runtime.types import UtcDateTime

if TYPE_CHECKING:
    from engine.runtime.sqlexpr import SqlContext

SqlImpl = Callable[["SqlContext", Sequence[ColumnElement[Any]]], ColumnElement[Any]]


# --------------------------------------------------------------------------- the user directory


def user_attribute(user_id: ColumnElement[Any], name: str) -> ColumnElement[Any]:
    """An attribute of the user ``user_id`` (``checker.USER_ATTRIBUTES``) as a correlated scalar subquery.

    Users are the engine's directory (``crm_users``; the team name from ``crm_teams``): every
    signed-in user may read these attributes, as ``expand`` shows names of users.
    """
    u = crm_users.alias()
    if name == "team":
        t = crm_teams.alias()
        return select(t.c.name).select_from(u.join(t, t.c.id == u.c.team_id)).where(
            u.c.id == user_id).correlate_except(u, t).scalar_subquery()
    column = {"name": u.c.display_name, "username": u.c.username, "team_id": u.c.team_id, "active": u.c.active}[name]
    return select(column).where(u.c.id == user_id).correlate_except(u).scalar_subquery()


def manager_of(user_id: ColumnElement[Any]) -> ColumnElement[Any]:
    """The manager of ``user_id``: the user's own manager, else the manager of the user's team unless
    that is the user (same rule as :func:`engine.runtime.users.directory_entry`); NULL when none.

    Every subquery here correlates all but its own tables, so a nested ``manager_of(manager_of(owner))``
    still reads the outer row's ``owner_id`` two levels up."""
    u, t = crm_users.alias(), crm_teams.alias()
    team_manager = case((t.c.manager_id != u.c.id, t.c.manager_id), else_=null())
    return select(func.coalesce(u.c.manager_id, team_manager)).select_from(
        u.outerjoin(t, t.c.id == u.c.team_id)).where(u.c.id == user_id).correlate_except(u, t).scalar_subquery()



# --------------------------------------------------------------------------- built-in functions
# Each takes (SqlContext, args) and returns a clause; see functions.py for the contracts.

Args = Sequence[ColumnElement[Any]]


def _chars(ctx: SqlContext) -> ColumnElement[Any]:
    return cast(literal(TRIM_CHARS, Text()), Text()) if ctx.pg else literal(TRIM_CHARS, String())


def _is_list(ctx: SqlContext) -> bool:
    return bool(ctx.arg_types) and ctx.arg_types[0].kind == "list"


def _trim(ctx: SqlContext, a: Args) -> ColumnElement[Any]:
    return func.btrim(a[0], _chars(ctx)) if ctx.pg else func.trim(a[0], _chars(ctx))


def _lower(ctx: SqlContext, a: Args) -> ColumnElement[Any]:
    # ASCII-only case mapping: SQLite's lower() and PostgreSQL's under COLLATE "C"
    return func.lower(a[0].collate("C")) if ctx.pg else func.lower(a[0])


def _upper(ctx: SqlContext, a: Args) -> ColumnElement[Any]:
    return func.upper(a[0].collate("C")) if ctx.pg else func.upper(a[0])


def _len(ctx: SqlContext, a: Args) -> ColumnElement[Any]:
    if _is_list(ctx):
        return func.jsonb_array_length(a[0]) if ctx.pg else func.json_array_length(a[0])
    return func.char_length(a[0]) if ctx.pg else func.length(a[0])


def _contains(ctx: SqlContext, a: Args) -> ColumnElement[Any]:
    return (func.strpos(a[0], a[1]) if ctx.pg else func.instr(a[0], a[1])) > 0


def _icontains(ctx: SqlContext, a: Args) -> ColumnElement[Any]:
    """``lower(text)`` contains ``lower(needle)`` (ASCII case folding, as :func:`_lower`).  On PostgreSQL a
    literal needle becomes ``lower(text COLLATE "C") LIKE '%needle%'``: the expression a searchable field's
    pg_trgm index holds (:func:`engine.runtime.storage.search_text`), so the filter can use it."""
    hay = func.lower(a[0].collate("C")) if ctx.pg else func.lower(a[0])
    value = _literal_text(a[1])
    if ctx.pg and value is not None:
        low = py_lower(value) or ""
        pattern = low.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        return hay.like(literal(f"%{pattern}%", Text()), escape="\\")
    needle = func.lower(a[1].collate("C")) if ctx.pg else func.lower(a[1])
    return (func.strpos(hay, needle) if ctx.pg else func.instr(hay, needle)) > 0


def _literal_text(clause: ColumnElement[Any]) -> str | None:
    """The text of a literal string argument (a bound value, cast on PostgreSQL), else None."""
    inner = clause.clause if isinstance(clause, Cast) else clause
    value = getattr(inner, "value", None) if isinstance(inner, BindParameter) else None
    return value if isinstance(value, str) else None


def _startswith(ctx: SqlContext, a: Args) -> ColumnElement[Any]:
    if ctx.pg:
        return func.left(a[0], func.char_length(a[1])) == a[1]
    return func.substr(a[0], 1, func.length(a[1])) == a[1]


def _endswith(ctx: SqlContext, a: Args) -> ColumnElement[Any]:
    if ctx.pg:
        return func.right(a[0], func.char_length(a[1])) == a[1]
    start = func.length(a[0]) - func.length(a[1]) + 1
    return and_(func.length(a[1]) <= func.length(a[0]), func.substr(a[0], start) == a[1])


def _round(ctx: SqlContext, a: Args) -> ColumnElement[Any]:
    digits = a[1] if len(a) > 1 else literal(0, Integer())
    whole = ctx.result is not None and ctx.result.integral
    if ctx.arg_types and ctx.arg_types[0].integral:
        return a[0]
    value = cast(a[0], Numeric()) if ctx.pg else a[0]
    rounded = func.round(value, cast(digits, Integer()) if ctx.pg else digits)
    return cast(rounded, BigInteger()) if whole else rounded


def _min_max(pg_name: str, sqlite_name: str) -> SqlImpl:
    def impl(ctx: SqlContext, a: Args) -> ColumnElement[Any]:
        if ctx.pg:
            return getattr(func, pg_name)(*a)  # LEAST/GREATEST skip NULLs
        # SQLite's scalar min/max return NULL if any argument is: give each the others as fallback
        fallbacks = [func.coalesce(x, *[y for j, y in enumerate(a) if j != i]) for i, x in enumerate(a)]
        return getattr(func, sqlite_name)(*fallbacks)

    return impl


def utc_day(ctx: SqlContext, value: ColumnElement[Any], kind: str) -> ColumnElement[Any]:
    if ctx.pg:
        return cast(func.timezone("UTC", value), Date()) if kind == "datetime" else value
    return func.date(value)


def _days_between(ctx: SqlContext, a: Args) -> ColumnElement[Any]:
    kinds = [t.kind for t in ctx.arg_types] + ["date", "date"]
    first, second = utc_day(ctx, a[0], kinds[0]), utc_day(ctx, a[1], kinds[1])
    if ctx.pg:
        return type_coerce((second - first).self_group(), Integer())
    return cast(func.julianday(second) - func.julianday(first), Integer())


def _days_since(ctx: SqlContext, a: Args) -> ColumnElement[Any]:
    day_ctx = dataclasses.replace(ctx, arg_types=(*ctx.arg_types[:1], ast.DATE))
    return _days_between(day_ctx, [a[0], ctx.today])


def _moves_datetime(ctx: SqlContext) -> bool:
    return bool(ctx.arg_types) and ctx.arg_types[0].kind == "datetime"


def _add_days(ctx: SqlContext, a: Args) -> ColumnElement[Any]:
    if _moves_datetime(ctx):
        return _shift_datetime(ctx, a, "day", lambda day: func.date(day, _modifier(a[1], " days")))
    if ctx.pg:
        return a[0] + cast(a[1], Integer())
    return func.date(a[0], _modifier(a[1], " days"))


def _add_months(ctx: SqlContext, a: Args) -> ColumnElement[Any]:
    if _moves_datetime(ctx):
        return _shift_datetime(ctx, a, "month", lambda day: _sqlite_add_months(day, a[1]))
    if ctx.pg:  # PostgreSQL clamps to the month's last day, as Python does
        return cast(a[0] + a[1] * literal_column("INTERVAL '1 month'"), Date())
    return _sqlite_add_months(a[0], a[1])


def _sqlite_add_months(day: ColumnElement[Any], count: ColumnElement[Any]) -> ColumnElement[Any]:
    first = func.date(day, "start of month", _modifier(count, " months"))
    last_day = cast(func.strftime("%d", func.date(first, "+1 month", "-1 day")), Integer())
    day_of_month = cast(func.strftime("%d", day), Integer())
    return func.date(first, _modifier(func.min(day_of_month, last_day) - 1, " days"))


def _shift_datetime(ctx: SqlContext, a: Args, unit: str,
                    sqlite_day: Callable[[ColumnElement[Any]], ColumnElement[Any]]) -> ColumnElement[Any]:
    """A datetime moved by days or months in UTC, keeping its time of day (as the Python back end)."""
    if ctx.pg:  # in UTC wall time, so the session's time zone (DST) never shifts the hour
        utc = func.timezone("UTC", a[0])
        moved = utc + cast(a[1], Integer()) * literal_column(f"INTERVAL '1 {unit}'")
        return type_coerce(func.timezone("UTC", moved), UtcDateTime())
    # SQLite keeps naive UTC text 'YYYY-MM-DD HH:MM:SS.ffffff': move the date part, keep the rest
    return type_coerce(sqlite_day(a[0]).concat(func.substr(a[0], 11)), UtcDateTime())


def _modifier(count: ColumnElement[Any], unit: str) -> ColumnElement[Any]:
    """A SQLite date modifier like ``'-3 days'`` (CAST parenthesises: ``||`` binds tighter than ``-``)."""
    return cast(count, Text()).concat(unit)


def _part(field: str, fmt: str) -> SqlImpl:
    def impl(ctx: SqlContext, a: Args) -> ColumnElement[Any]:
        value = a[0]
        if ctx.pg:
            if ctx.arg_types and ctx.arg_types[0].kind == "datetime":
                value = func.timezone("UTC", value)
            return cast(extract(field, value), Integer())
        return cast(func.strftime(fmt, value), Integer())

    return impl


def _isblank(ctx: SqlContext, a: Args) -> ColumnElement[Any]:
    kind = ctx.arg_types[0].kind if ctx.arg_types else "null"
    if kind in ("string", "picklist"):
        return or_(a[0].is_(None), func.coalesce(_trim(ctx, a), "") == "")
    if kind == "list":
        return or_(a[0].is_(None), func.coalesce(_len(ctx, a), 0) == 0)
    return a[0].is_(None)


def _concat(ctx: SqlContext, a: Args) -> ColumnElement[Any]:
    empty = cast(literal("", Text()), Text()) if ctx.pg else literal("", String())
    parts = [func.coalesce(x, empty) for x in a]
    result: ColumnElement[Any] = parts[0]
    for part in parts[1:]:
        result = result.concat(part)
    return result


COMMON: Mapping[str, SqlImpl] = {
    "lower": _lower, "upper": _upper, "trim": _trim, "len": _len, "contains": _contains, "icontains": _icontains,
    "startswith": _startswith, "endswith": _endswith, "round": _round,
    "coalesce": lambda ctx, a: func.coalesce(*a), "abs": lambda ctx, a: func.abs(a[0]),
    "min": _min_max("least", "min"), "max": _min_max("greatest", "max"),
    "today": lambda ctx, a: ctx.today, "now": lambda ctx, a: ctx.now,
    "days_between": _days_between, "days_since": _days_since, "add_days": _add_days, "add_months": _add_months,
    "manager_of": lambda ctx, a: manager_of(a[0]),
    "year": _part("year", "%Y"), "month": _part("month", "%m"), "isblank": _isblank, "concat": _concat,
}
