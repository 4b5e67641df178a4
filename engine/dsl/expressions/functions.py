"""The function registry: typed signatures and Python implementations.

A :class:`FunctionRegistry` maps names to :class:`FunctionDef`.  The built-in
functions live in one frozen registry built once (:func:`default_registry`);
plugins register more functions into a :meth:`~FunctionRegistry.copy`.

SQL implementations are opaque callables keyed by dialect (``"sqlite"``,
``"postgresql"`` or ``"*"``); this package never imports SQLAlchemy, so the
SQL forms of the built-ins live in :mod:`engine.runtime.sqlexpr`.  A plugin
function supplies its own ``sql`` mapping: each callable receives the SQL
arguments (SQLAlchemy clauses) and returns a clause.

Null rules of the built-ins: string and number functions return null on a
null argument; functions returning a boolean return false; ``coalesce``,
``concat``, ``min``, ``max`` and ``isblank`` skip / accept nulls.
"""

from __future__ import annotations

import calendar
import datetime as dt
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Context, Decimal
from functools import cache
from types import MappingProxyType
from typing import Any

from engine.dsl.expressions import ast
from engine.errors import ExpressionEvalError, ExpressionTypeError

#: the whitespace ``trim`` and ``isblank`` remove (identical in every back end)
TRIM_CHARS = " \t\n\r"
#: decimal places kept by arithmetic that is not whole-number (both back ends)
NUMBER_SCALE = 10
DECIMAL_CONTEXT = Context(prec=60, rounding=ROUND_HALF_UP)
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_ASCII_UPPER = str.maketrans("abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")

#: A typer gets the argument types and nodes and returns the result type,
#: or raises ExpressionTypeError (``details={"arg": index}`` to point at an argument).
Typer = Callable[[Sequence[ast.ExprType], Sequence[ast.Node]], ast.ExprType]


@dataclass(frozen=True, slots=True)
class FunctionDef:
    """One function of the language.

    ``params`` are kind specs, one per parameter: kinds joined by ``|``
    (``"date|datetime"``), ``"any"``, or ``"T"`` (all ``T`` arguments share
    one type, which ``returns="T"`` gives back).  ``variadic`` repeats the last
    parameter; ``optional`` trailing parameters may be left out.  ``returns``
    is a kind, ``"integer"`` (a whole number) or ``"T"``; ``typer`` overrides
    all of that when a signature needs more.  ``needs_ctx`` passes the
    evaluation context first to ``python``.  ``currency_arg``: the checker
    passes the currency code of the first argument (a money value: its
    ``<field>_currency``, or the code it was converted to) as an extra
    argument right after it, to both back ends (``convert``).
    """

    name: str
    params: tuple[str, ...]
    returns: str
    python: Callable[..., Any]
    doc: str = ""
    variadic: bool = False
    optional: int = 0
    needs_ctx: bool = False
    typer: Typer | None = None
    sql: Mapping[str, Callable[..., Any]] = field(default_factory=lambda: MappingProxyType({}))
    currency_arg: bool = False

    @property
    def signature(self) -> str:
        """Human form, e.g. ``round(number, integer?) -> number``."""
        shown = [p + ("?" if i >= len(self.params) - self.optional else "") for i, p in enumerate(self.params)]
        if self.variadic:
            shown[-1] += ", ..."
        return f"{self.name}({', '.join(shown)}) -> {self.returns}"

    def result_type(self, types: Sequence[ast.ExprType], nodes: Sequence[ast.Node]) -> ast.ExprType:
        """The type of a call with these argument types; ExpressionTypeError if they do not fit."""
        self._check_arity(len(types))
        if self.typer is not None:
            return self.typer(types, nodes)
        bound: list[ast.ExprType] = []
        for index, arg_type in enumerate(types):
            spec = self.params[min(index, len(self.params) - 1)]
            _check_param(self, index, spec, arg_type, bound)
        return _result(self.returns, bound)

    def _check_arity(self, count: int) -> None:
        low = len(self.params) - self.optional
        high = None if self.variadic else len(self.params)
        if count < low or (high is not None and count > high):
            want = f"at least {low}" if high is None else (str(low) if low == high else f"{low} to {high}")
            noun = "argument" if want in ("1", "at least 1") else "arguments"
            raise ExpressionTypeError(f"{self.name}() takes {want} {noun}, got {count}",
                                      code="expression_bad_arguments", hint=f"use {self.signature}")


def _accepts(spec: str, arg: ast.ExprType) -> bool:
    if arg.kind == "null" or spec in ("any", "T"):
        return True
    kinds = spec.split("|")
    if "integer" in kinds and arg.kind == "number" and arg.integral:
        return True
    return arg.kind in kinds or ("string" in kinds and arg.kind == "picklist")


def _check_param(fn: FunctionDef, index: int, spec: str, arg: ast.ExprType, bound: list[ast.ExprType]) -> None:
    if not _accepts(spec, arg):
        raise ExpressionTypeError(
            f"argument {index + 1} of {fn.name}() must be {spec.replace('|', ' or ')}, not {arg}",
            code="expression_bad_arguments", hint=f"use {fn.signature}", details={"arg": index})
    if spec != "T" or arg.kind == "null":
        return
    if bound and not _same_kind(bound[0], arg):
        raise ExpressionTypeError(
            f"the arguments of {fn.name}() must all have the same type ({bound[0]} and {arg})",
            code="expression_bad_arguments", hint=f"use {fn.signature}", details={"arg": index})
    bound.append(arg)


def _same_kind(a: ast.ExprType, b: ast.ExprType) -> bool:
    return a.kind == b.kind or (a.is_stringy and b.is_stringy)


def unify(types: Sequence[ast.ExprType]) -> ast.ExprType:
    """The common type of values that may stand for one another (nulls ignored)."""
    real = [t for t in types if t.kind != "null"]
    if not real:
        return ast.NULL
    first = real[0]
    if first.kind == "number":
        return ast.ExprType("number", integral=all(t.integral for t in real), currency=common_currency(real))
    if first.is_stringy and any(t != first for t in real):
        return ast.STRING
    return first


def common_currency(types: Sequence[ast.ExprType]) -> str | None:
    """The currency source shared by the money values among ``types`` (plain numbers take any);
    ExpressionTypeError when two money values come from different currencies."""
    sources = list(dict.fromkeys(t.currency for t in types if t.currency is not None))
    if len(sources) > 1:
        raise ExpressionTypeError(
            f"this mixes money in different currencies ({currency_text(sources[0])} and "
            f"{currency_text(sources[1])})", code="expression_mixed_currency",
            hint="convert the amounts to one currency first, e.g. convert(amount, 'CNY')")
    return sources[0] if sources else None


def currency_text(source: str) -> str:
    """A currency source for messages: ``amount's currency`` or ``CNY``."""
    return source[1:] if source.startswith("=") else f"{source}'s currency"


def _result(returns: str, bound: list[ast.ExprType]) -> ast.ExprType:
    if returns == "T":
        return unify(bound)
    if returns == "integer":
        return ast.INTEGER
    return ast.ExprType(returns)


# --------------------------------------------------------------------------- Python implementations


def to_decimal(value: Any) -> Decimal:
    """A number as Decimal (floats through their shortest repr, as SQL drivers do)."""
    if isinstance(value, Decimal):
        return value
    if isinstance(value, float):
        return Decimal(repr(value))
    return Decimal(value)


def quantize(value: Decimal, places: int = NUMBER_SCALE) -> Decimal:
    """Round half away from zero to ``places`` decimals (what SQL ROUND does)."""
    return value.quantize(Decimal(1).scaleb(-places), context=DECIMAL_CONTEXT)


def utc_date(value: dt.date) -> dt.date:
    """The UTC calendar day of a date or datetime."""
    if isinstance(value, dt.datetime):
        return (value.astimezone(dt.UTC) if value.tzinfo else value).date()
    return value


def py_lower(s: str | None) -> str | None:
    return None if s is None else s.translate(_ASCII_LOWER)


def py_upper(s: str | None) -> str | None:
    return None if s is None else s.translate(_ASCII_UPPER)


def py_trim(s: str | None) -> str | None:
    return None if s is None else s.strip(TRIM_CHARS)


def py_len(s: str | Sequence[Any] | None) -> int | None:
    return None if s is None else len(s)


def py_contains(s: str | None, sub: str | None) -> bool:
    return s is not None and sub is not None and sub in s


def py_icontains(s: str | None, sub: str | None) -> bool:
    return s is not None and sub is not None and sub.translate(_ASCII_LOWER) in s.translate(_ASCII_LOWER)


def py_startswith(s: str | None, prefix: str | None) -> bool:
    return s is not None and prefix is not None and s.startswith(prefix)


def py_endswith(s: str | None, suffix: str | None) -> bool:
    return s is not None and suffix is not None and s.endswith(suffix)


def py_coalesce(*args: Any) -> Any:
    return next((a for a in args if a is not None), None)


def py_round(x: Any, digits: Any = 0) -> Any:
    if x is None or digits is None:
        return None
    rounded = quantize(to_decimal(x), int(digits))
    return int(rounded) if int(digits) == 0 else rounded


def py_abs(x: Any) -> Any:
    return None if x is None else abs(x)


def py_min(*args: Any) -> Any:
    present = [a for a in args if a is not None]
    return min(present) if present else None


def py_max(*args: Any) -> Any:
    present = [a for a in args if a is not None]
    return max(present) if present else None


def py_today(ctx: Any) -> dt.date:
    return ctx.today


def py_now(ctx: Any) -> dt.datetime:
    return ctx.now


def py_days_between(a: dt.date | None, b: dt.date | None) -> int | None:
    if a is None or b is None:
        return None
    return (utc_date(b) - utc_date(a)).days


def py_days_since(ctx: Any, a: dt.date | None) -> int | None:
    return None if a is None else (ctx.today - utc_date(a)).days


def as_utc(value: dt.datetime) -> dt.datetime:
    """An aware UTC datetime (a naive one is taken to be UTC already)."""
    return value.astimezone(dt.UTC) if value.tzinfo else value.replace(tzinfo=dt.UTC)


def py_add_days(d: dt.date | None, n: Any) -> dt.date | None:
    """A date or datetime moved by ``n`` days (a datetime keeps its UTC time of day)."""
    if d is None or n is None:
        return None
    try:
        if isinstance(d, dt.datetime):
            return as_utc(d) + dt.timedelta(days=int(n))
        return d + dt.timedelta(days=int(n))
    except OverflowError:
        return None


def py_add_months(d: dt.date | None, n: Any) -> dt.date | None:
    """A date or datetime moved by ``n`` months, the day clamped to the month's end (UTC for datetimes)."""
    if d is None or n is None:
        return None
    moment = as_utc(d) if isinstance(d, dt.datetime) else None
    day_of = moment.date() if moment is not None else d
    months = day_of.year * 12 + day_of.month - 1 + int(n)
    year, month = divmod(months, 12)
    if not 1 <= year <= 9999:
        return None
    day = dt.date(year, month + 1, min(day_of.day, calendar.monthrange(year, month + 1)[1]))
    return day if moment is None else dt.datetime.combine(day, moment.timetz())


def user_entry(ctx: Any, user_id: Any) -> Mapping[str, Any] | None:
    """The directory entry of ``user_id`` from the context's resolver (None for a null or unknown id)."""
    if user_id is None:
        return None
    if ctx.users is None:
        raise ExpressionEvalError("the expression reads user attributes but no user resolver was given",
                                  code="expression_no_resolver", hint="pass EvalContext(users=...)")
    return ctx.users(user_id)


def py_manager_of(ctx: Any, user_id: Any) -> Any:
    """The manager of a user: the user's own manager, else the manager of the user's team (never the
    user), else null (the directory entry's ``manager``, see :mod:`engine.runtime.users`)."""
    entry = user_entry(ctx, user_id)
    return None if entry is None else entry.get("manager")


def py_year(d: dt.date | None) -> int | None:
    return None if d is None else utc_date(d).year


def py_month(d: dt.date | None) -> int | None:
    return None if d is None else utc_date(d).month


def py_isblank(x: Any) -> bool:
    if x is None:
        return True
    if isinstance(x, str):
        return x.strip(TRIM_CHARS) == ""
    if isinstance(x, list | tuple):
        return len(x) == 0
    return False


def py_concat(*args: str | None) -> str:
    return "".join(a for a in args if a is not None)


# --------------------------------------------------------------------------- typers


def _round_typer(types: Sequence[ast.ExprType], nodes: Sequence[ast.Node]) -> ast.ExprType:
    if types[0].kind not in ("number", "null"):
        raise ExpressionTypeError(f"argument 1 of round() must be number, not {types[0]}",
                                  code="expression_bad_arguments", details={"arg": 0})
    if len(nodes) == 1:
        return ast.ExprType("number", integral=True, currency=types[0].currency)
    digits = nodes[1]
    if not (isinstance(digits, ast.Literal) and type(digits.value) is int and 0 <= digits.value <= NUMBER_SCALE):
        raise ExpressionTypeError(f"the digits of round() must be a whole number from 0 to {NUMBER_SCALE}",
                                  code="expression_bad_arguments", hint="write e.g. round(amount, 2)",
                                  details={"arg": 1})
    return ast.ExprType("number", integral=digits.value == 0, currency=types[0].currency)


def _len_typer(types: Sequence[ast.ExprType], nodes: Sequence[ast.Node]) -> ast.ExprType:
    if types[0].kind not in ("string", "picklist", "list", "null"):
        raise ExpressionTypeError(f"argument 1 of len() must be string or list, not {types[0]}",
                                  code="expression_bad_arguments", details={"arg": 0})
    return ast.INTEGER


def _builtins() -> Iterator[FunctionDef]:
    F = FunctionDef
    yield F("lower", ("string",), "string", py_lower, "ASCII letters to lower case")
    yield F("upper", ("string",), "string", py_upper, "ASCII letters to upper case")
    yield F("trim", ("string",), "string", py_trim, "remove spaces, tabs and line breaks at both ends")
    yield F("len", ("string|list",), "integer", py_len, "number of characters (or of list items)",
            typer=_len_typer)
    yield F("contains", ("string", "string"), "boolean", py_contains, "text contains text (case-sensitive)")
    yield F("icontains", ("string", "string"), "boolean", py_icontains,
            "text contains text, ignoring the case of A-Z (lower()-based; a searchable field's trigram "
            "index serves it on PostgreSQL)")
    yield F("startswith", ("string", "string"), "boolean", py_startswith, "text starts with text")
    yield F("endswith", ("string", "string"), "boolean", py_endswith, "text ends with text")
    yield F("coalesce", ("T", "T"), "T", py_coalesce, "the first argument that is not null", variadic=True)
    yield F("round", ("number", "integer"), "number", py_round,
            "round half away from zero to 0-10 decimals (a literal)", optional=1, typer=_round_typer)
    yield F("abs", ("number",), "T", py_abs, "absolute value", typer=_abs_typer)
    yield F("min", ("T", "T"), "T", py_min, "smallest argument, nulls skipped", variadic=True,
            typer=_ordered_typer("min"))
    yield F("max", ("T", "T"), "T", py_max, "largest argument, nulls skipped", variadic=True,
            typer=_ordered_typer("max"))
    yield F("today", (), "date", py_today, "the current date (UTC), same as $today", needs_ctx=True)
    yield F("now", (), "datetime", py_now, "the current time, same as $now", needs_ctx=True)
    yield F("days_between", ("date|datetime", "date|datetime"), "integer", py_days_between,
            "whole days from the first to the second (UTC calendar days)")
    yield F("days_since", ("date|datetime",), "integer", py_days_since, "days_between(x, $today)",
            needs_ctx=True)
    yield F("add_days", ("date|datetime", "integer"), "date", py_add_days,
            "date or datetime plus a whole number of days (datetimes keep their UTC time of day)",
            typer=_shift_typer("add_days"))
    yield F("add_months", ("date|datetime", "integer"), "date", py_add_months,
            "date or datetime plus months; the day is clamped to the month's last day",
            typer=_shift_typer("add_months"))
    yield F("manager_of", ("reference",), "reference", py_manager_of,
            "the user id of a user's manager (own manager, else the team's manager), null when none",
            needs_ctx=True)
    yield F("year", ("date|datetime",), "integer", py_year, "the year (UTC for datetimes)")
    yield F("month", ("date|datetime",), "integer", py_month, "the month 1-12 (UTC for datetimes)")
    yield F("isblank", ("any",), "boolean", py_isblank, "null, whitespace-only text or an empty list")
    yield F("concat", ("string",), "string", py_concat, "join texts; nulls count as empty", variadic=True)


def _abs_typer(types: Sequence[ast.ExprType], nodes: Sequence[ast.Node]) -> ast.ExprType:
    if types[0].kind not in ("number", "null"):
        raise ExpressionTypeError(f"argument 1 of abs() must be number, not {types[0]}",
                                  code="expression_bad_arguments", details={"arg": 0})
    return ast.ExprType("number", integral=types[0].integral, currency=types[0].currency)


def _shift_typer(name: str) -> Typer:
    """add_days / add_months: (date, whole number) -> date, (datetime, whole number) -> datetime."""
    def typer(types: Sequence[ast.ExprType], nodes: Sequence[ast.Node]) -> ast.ExprType:
        moved, count = types
        if moved.kind not in ("date", "datetime", "null"):
            raise ExpressionTypeError(f"argument 1 of {name}() must be date or datetime, not {moved}",
                                      code="expression_bad_arguments", details={"arg": 0})
        if count.kind != "null" and not (count.kind == "number" and count.integral):
            raise ExpressionTypeError(f"argument 2 of {name}() must be a whole number, not {count}",
                                      code="expression_bad_arguments", details={"arg": 1},
                                      hint="round it first, e.g. round(x)")
        return ast.DATETIME if moved.kind == "datetime" else ast.DATE

    return typer


def _ordered_typer(name: str) -> Typer:
    def typer(types: Sequence[ast.ExprType], nodes: Sequence[ast.Node]) -> ast.ExprType:
        for index, t in enumerate(types):
            if t.kind not in ("number", "date", "datetime", "null"):
                raise ExpressionTypeError(f"argument {index + 1} of {name}() must be number, date or "
                                          f"datetime, not {t}", code="expression_bad_arguments",
                                          details={"arg": index})
        result = unify(types)
        if any(t.kind not in (result.kind, "null") for t in types):
            raise ExpressionTypeError(f"the arguments of {name}() must all have the same type",
                                      code="expression_bad_arguments")
        return result

    return typer


# --------------------------------------------------------------------------- registry


class FunctionRegistry:
    """Functions by name.  The default registry is frozen; :meth:`copy` gives a mutable one."""

    def __init__(self, functions: Mapping[str, FunctionDef] | None = None, *, frozen: bool = False) -> None:
        self._functions: dict[str, FunctionDef] = dict(functions or {})
        self._frozen = frozen

    def get(self, name: str) -> FunctionDef | None:
        """The function called ``name``, or None."""
        return self._functions.get(name)

    def names(self) -> tuple[str, ...]:
        return tuple(sorted(self._functions))

    def __contains__(self, name: object) -> bool:
        return name in self._functions

    def __iter__(self) -> Iterator[FunctionDef]:
        return iter(self._functions.values())

    def register(self, fn: FunctionDef, *, replace: bool = False) -> None:
        """Add ``fn``; a name already taken needs ``replace=True``.

        Raises TypeError on the frozen default registry (register into a copy).
        """
        if self._frozen:
            raise TypeError("the default function registry is frozen; register into registry.copy()")
        if not fn.name.isidentifier() or fn.name.startswith("_"):
            raise ValueError(f"invalid function name {fn.name!r}")
        if fn.name in self._functions and not replace:
            raise ValueError(f"function {fn.name!r} is already registered")
        self._functions[fn.name] = fn

    def copy(self) -> FunctionRegistry:
        """A mutable copy (plugins register their functions into it)."""
        return FunctionRegistry(self._functions)


@cache
def builtin_functions() -> tuple[FunctionDef, ...]:
    """The built-in functions (the built-in plugin registers them like any plugin's)."""
    return tuple(default_registry())


def default_registry() -> FunctionRegistry:
    """The frozen registry of built-in functions (built once)."""
    return FunctionRegistry({f.name: f for f in _builtins()}, frozen=True)
