"""Reading records: visibility, field selection, sorting, keyset pagination, counts.

Every read goes through :func:`base_select`, which adds ``deleted_at IS
NULL`` (``IS NOT NULL`` for the recycle bin) and the actor's read scope — so
get, list, count and reference expansion can never show a record the actor
may not read.

Pagination is keyset on (sort keys..., id): the cursor is an opaque base64
token holding the last row's sort values and the sort it belongs to.  Null
sorts lowest on both databases.  A picklist sorts in the declared order of
its options (:func:`option_position`), so its cursor value is a position.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy import Select, and_, case, false, literal, null, or_, select, true
from sqlalchemy.sql.elements import ColumnElement

from engine.errors import BadRequest
from engine.runtime.records.write_plan import EntityPlan
from engine.runtime.security import Access
from engine.wording import with_article

if TYPE_CHECKING:
    from engine.runtime.runtime import UnitOfWork

MAX_SORT_KEYS = 4
MAX_LIMIT = 1000
_SORTABLE_STANDARD = {"id": False, "created_at": False, "updated_at": False, "version": False,
                      "owner_id": True, "created_by": True, "updated_by": True, "deleted_at": True}
_UNSORTABLE_TYPES = frozenset({"lines", "json", "multi_picklist", "text"})


@dataclass(frozen=True, slots=True)
class SortKey:
    """One key of a sort: the record key, direction, SQL expression, whether it can be null, and the
    kind of value a cursor holds for it (see :data:`CURSOR_KINDS`)."""

    name: str
    desc: bool
    expr: Any
    nullable: bool
    kind: str = "integer"


#: field type -> the kind of cursor value a sort on it carries (anything else sorts as text)
CURSOR_KINDS = {"integer": "integer", "reference": "integer", "user": "integer", "decimal": "decimal",
                "money": "decimal", "percent": "decimal", "date": "date", "datetime": "datetime",
                "boolean": "boolean"}
_STANDARD_KINDS = {"created_at": "datetime", "updated_at": "datetime", "deleted_at": "datetime"}


def base_select(uow: UnitOfWork, plan: EntityPlan, access: Access, columns: Sequence[Any], *,
                deleted: bool = False) -> Select[Any]:
    """SELECT ``columns`` of live records the actor may read (``deleted``: of soft-deleted records instead)."""
    t = plan.table
    stmt = select(*columns).where(t.c.deleted_at.is_not(None) if deleted else t.c.deleted_at.is_(None))
    scope = uow.guard.scope_clause(t, access.read)
    return stmt.where(scope) if scope is not None else stmt


def parse_sort(uow: UnitOfWork, plan: EntityPlan, access: Access, text: str | None) -> tuple[SortKey, ...]:
    """``"-amount,name"`` -> sort keys; unknown, hidden or unsortable fields -> BadRequest."""
    parts = _sort_parts(text) if text else list(plan.entity.default_sort)
    if len(parts) > MAX_SORT_KEYS:
        raise BadRequest(f"sort by at most {MAX_SORT_KEYS} fields", code="bad_sort")
    keys = [_sort_key(uow, plan, access, part) for part in parts]
    if not any(k.name == "id" for k in keys):
        keys.append(SortKey("id", keys[-1].desc if keys else False, plan.table.c.id, False))
    return tuple(keys)


def _sort_parts(text: str) -> list[str]:
    if not isinstance(text, str) or len(text) > 500:
        raise BadRequest("sort must be text such as -amount,name", code="bad_sort")
    return [p.strip() for p in text.split(",") if p.strip()] or ["-created_at"]


def _sort_key(uow: UnitOfWork, plan: EntityPlan, access: Access, part: str) -> SortKey:
    desc = part.startswith("-")
    name = part[1:] if desc or part.startswith("+") else part
    f = plan.entity.fields.get(name)
    if f is not None and name not in access.hidden:
        if f.type in _UNSORTABLE_TYPES:
            raise BadRequest(f"cannot sort by {name!r} ({with_article(f.type)} field)", code="bad_sort",
                             details={"sort": [f"{name} is not sortable"]})
        if f.encrypted:
            raise BadRequest(f"cannot sort by {name!r}: it is stored encrypted", code="bad_sort",
                             details={"sort": [f"{name} is encrypted, so not sortable"]},
                             hint="sort by another field; an encrypted field can only be filtered by equality")
        expr = uow.schema.field_expr(plan.name, name)
        if f.type == "picklist":
            return SortKey(name, desc, option_position(expr, f.option_keys), not f.required, "integer")
        return SortKey(name, desc, expr, not f.required, CURSOR_KINDS.get(f.type, "string"))
    if name in _SORTABLE_STANDARD or (plan.is_child and name == "position"):
        return SortKey(name, desc, plan.table.c[name], _SORTABLE_STANDARD.get(name, False),
                       _STANDARD_KINDS.get(name, "integer"))
    raise BadRequest(f"cannot sort by {name[:60]!r}: no such field", code="bad_sort",
                     details={"sort": [f"unknown field {name[:60]!r}"]},
                     hint="sort by field names, comma-separated, '-' for descending: -amount,name")


def option_position(expr: ColumnElement[Any], options: Sequence[str]) -> ColumnElement[Any]:
    """A picklist's SQL value as the position of its option (0, 1, ...), for sorting in declared order.

    A value that is no longer an option (retired, left by a removed option)
    comes after every option; null stays null (lowest, like every null).
    One CASE, the same on SQLite and PostgreSQL; it cannot use an index on
    the column, so the database sorts the matching rows (a top-N sort with
    a limit).
    """
    whens = [(expr == key, literal(i)) for i, key in enumerate(options)]
    return case(*whens, (expr.is_not(None), literal(len(options))), else_=null())


def order_by(keys: Sequence[SortKey]) -> list[Any]:
    """ORDER BY terms; nullable keys get an explicit null placement (null lowest)."""
    out = []
    for k in keys:
        term = k.expr.desc() if k.desc else k.expr.asc()
        if k.nullable:
            term = term.nulls_last() if k.desc else term.nulls_first()
        out.append(term)
    return out


def after_cursor(keys: Sequence[SortKey], values: Sequence[Any]) -> ColumnElement[bool]:
    """Rows strictly after ``values`` in the order of ``keys`` (lexicographic, null lowest)."""
    if all(not k.nullable for k in keys) and len({k.desc for k in keys}) == 1:
        from sqlalchemy import tuple_

        lhs = tuple_(*[k.expr for k in keys])
        rhs = tuple_(*[_bind(k, v) for k, v in zip(keys, values, strict=True)])
        return lhs < rhs if keys[0].desc else lhs > rhs
    clause: ColumnElement[bool] = false()
    for k, v in reversed(list(zip(keys, values, strict=True))):
        clause = or_(_beyond(k, v), and_(_equal(k, v), clause))
    return clause


def _bind(k: SortKey, v: Any) -> Any:
    return literal(v, k.expr.type)


def _beyond(k: SortKey, v: Any) -> ColumnElement[bool]:
    if v is None:
        return false() if k.desc else k.expr.is_not(None)
    if k.desc:
        return or_(k.expr < _bind(k, v), k.expr.is_(None)) if k.nullable else k.expr < _bind(k, v)
    return k.expr > _bind(k, v)


def _equal(k: SortKey, v: Any) -> ColumnElement[bool]:
    return k.expr.is_(None) if v is None else k.expr == _bind(k, v)


def _sort_value(k: SortKey, mapping: Mapping[str, Any]) -> Any:
    return mapping[k.name]


# ---------------------------------------------------------------------- cursors


def encode_cursor(sort_spec: str, values: Sequence[Any]) -> str:
    """An opaque, URL-safe token for 'after these values in this sort'."""
    raw = json.dumps({"s": sort_spec, "v": [_enc(v) for v in values]}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, sort_spec: str, keys: Sequence[SortKey]) -> list[Any]:
    """The values in ``cursor``, each checked against its sort key's kind; BadRequest if the cursor is
    malformed, tampered with, or belongs to another sort."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        data = json.loads(raw)
        ok = data["s"] == sort_spec and len(data["v"]) == len(keys)
        values = [_dec(v, k) for v, k in zip(data["v"], keys, strict=True)] if ok else []
    except (ValueError, KeyError, TypeError, ArithmeticError, binascii.Error) as e:
        raise BadRequest("the cursor is not valid", code="bad_cursor",
                         hint="pass next_cursor from the previous page unchanged") from e
    if not ok:
        raise BadRequest("the cursor belongs to another sort or filter", code="bad_cursor",
                         hint="keep sort unchanged while paging, or start again without a cursor")
    return values


def _enc(v: Any) -> Any:
    if isinstance(v, dt.datetime):
        return {"dt": v.isoformat()}
    if isinstance(v, dt.date):
        return {"d": v.isoformat()}
    if isinstance(v, Decimal):
        return {"n": str(v)}
    return v


_INT_LIMIT = 2**63
_DECIMAL_LIMIT = Decimal(10) ** 18


def _dec(v: Any, key: SortKey) -> Any:
    """One cursor value as its sort key's kind holds it (ValueError otherwise: the cursor was altered)."""
    if v is None:
        if not key.nullable:
            raise ValueError(f"{key.name} cannot be null")
        return None
    kind = key.kind
    if kind == "datetime" and isinstance(v, dict) and set(v) == {"dt"} and isinstance(v["dt"], str):
        out = dt.datetime.fromisoformat(v["dt"])
        if out.tzinfo is not None:
            return out
    elif kind == "date" and isinstance(v, dict) and set(v) == {"d"} and isinstance(v["d"], str):
        if len(v["d"]) == 10:
            return dt.date.fromisoformat(v["d"])
    elif kind == "integer" and type(v) is int and -_INT_LIMIT < v < _INT_LIMIT:
        return v
    elif kind == "decimal" and ((isinstance(v, dict) and set(v) == {"n"} and isinstance(v["n"], str))
                                or type(v) in (int, float)):
        number = Decimal(v["n"]) if isinstance(v, dict) else Decimal(str(v))
        if number.is_finite() and abs(number) < _DECIMAL_LIMIT:
            return number
    elif kind == "boolean" and isinstance(v, bool):
        return v
    elif kind == "string" and isinstance(v, str) and len(v) <= 100_000 and "\x00" not in v:
        v.encode("utf-8")  # an unpaired surrogate raises UnicodeEncodeError, a ValueError
        return v
    raise ValueError(f"not {with_article(kind)} value for {key.name}")


def clamp_limit(limit: Any) -> int:
    """1..MAX_LIMIT, else BadRequest."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise BadRequest(f"limit must be a whole number from 1 to {MAX_LIMIT}", code="bad_limit")
    return limit


def where_all(*clauses: ColumnElement[bool] | None) -> ColumnElement[bool]:
    parts = [c for c in clauses if c is not None]
    return and_(*parts) if parts else true()
