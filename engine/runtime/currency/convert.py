"""``convert(amount, 'CNY'[, day])``: a money value in another currency at the dated exchange rate.

The checker passes the amount's own currency (its ``<field>_currency``) as a hidden second argument
(``FunctionDef.currency_arg``), so both back ends see ``(amount, from, to[, day])``.  The day
defaults to ``$today`` -- the date of the unit of work's injected clock (UTC), the same value the
SQL form gets as a bound parameter -- so Python and SQL agree on which rate applies.  A null amount,
currency or day gives null, as does a pair without a rate on or before the day (a total that must not
silently drop rows checks the rates first: :mod:`engine.runtime.currency.totals`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from decimal import Decimal
from types import MappingProxyType
from typing import Any

from sqlalchemy import Text, cast
from sqlalchemy.sql.elements import ColumnElement

from engine.dsl.expressions import ast
from engine.dsl.expressions.functions import FunctionDef, utc_date
from engine.errors import ExpressionEvalError, ExpressionTypeError, InvalidCurrency
from engine.runtime import exchange_rates, money_sql
from engine.runtime.sqlexpr import SqlContext

_TODAY: Any = object()


def py_convert(ctx: Any, amount: Any, src: str | None, dst: str, day: Any = _TODAY) -> Decimal | None:
    """The Python form (see the module docstring); a day given but null gives null (unless
    the currencies are the same), as in SQL."""
    if amount is None or src is None:
        return None
    if src == dst:  # no rate needed, whatever the day
        return Decimal(amount) if not isinstance(amount, Decimal) else amount
    if day is None:
        return None
    if ctx.rates is None:
        raise ExpressionEvalError("convert() needs exchange rates but none were given",
                                  code="expression_no_resolver", hint="pass EvalContext(rates=...)")
    when: dt.date = ctx.today if day is _TODAY else utc_date(day)
    return exchange_rates.convert_value(amount, ctx.rates(src, dst, when))


def sql_convert(ctx: SqlContext, args: Sequence[ColumnElement[Any]]) -> ColumnElement[Any]:
    """The SQL form: a correlated lookup of the latest rate on or before the day (reverse pair inverted)."""
    amount, src, dst = args[0], args[1], args[2]
    if len(args) > 3:
        kind = ctx.arg_types[3].kind if len(ctx.arg_types) > 3 else "date"
        day = money_sql.utc_day_sql(args[3], kind, ctx.dialect)
    else:
        day = ctx.today
    if ctx.pg:
        src, dst = cast(src, Text()), cast(dst, Text())
    return money_sql.converted_sql(amount, src, dst, day, ctx.dialect)


def _typer(types: Sequence[ast.ExprType], nodes: Sequence[ast.Node]) -> ast.ExprType:
    amount = types[0]
    if amount.kind not in ("number", "null"):
        raise ExpressionTypeError(f"argument 1 of convert() must be a money value, not {amount}",
                                  code="expression_bad_arguments", details={"arg": 0})
    if amount.kind == "number" and amount.currency is None:
        raise ExpressionTypeError("argument 1 of convert() must be a money value (a money field, or a sum "
                                  "of one), not a plain number", code="expression_not_money",
                                  hint="convert a money field, e.g. convert(amount, 'CNY')", details={"arg": 0})
    target = nodes[1]
    if not (isinstance(target, ast.Literal) and isinstance(target.value, str)):
        raise ExpressionTypeError("argument 2 of convert() must be a currency code in quotes, e.g. 'CNY'",
                                  code="expression_bad_arguments", details={"arg": 1})
    try:
        code = exchange_rates.currency_code(target.value)
    except InvalidCurrency:
        raise ExpressionTypeError(f"'{target.value}' is not an ISO 4217 currency code",
                                  code="invalid_currency", hint="use a three-letter code such as CNY, USD or EUR",
                                  details={"arg": 1}) from None
    if code != target.value:
        raise ExpressionTypeError(f"write the currency code in capitals: '{code}'", code="invalid_currency",
                                  details={"arg": 1})
    if len(types) > 2 and types[2].kind not in ("date", "datetime", "null"):
        raise ExpressionTypeError(f"argument 3 of convert() must be a date or datetime, not {types[2]}",
                                  code="expression_bad_arguments", details={"arg": 2})
    return ast.ExprType("number", currency=f"={code}")


CONVERT = FunctionDef(
    "convert", ("number", "string", "date|datetime"), "number", py_convert,
    "a money value in another currency at the latest exchange rate on or before the day (default $today); "
    "null when there is no rate", optional=1, needs_ctx=True, typer=_typer, currency_arg=True,
    sql=MappingProxyType({"*": sql_convert}),
)


def functions() -> list[FunctionDef]:
    """The expression functions of the multi-currency feature."""
    return [CONVERT]
