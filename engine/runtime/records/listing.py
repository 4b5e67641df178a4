"""The list read path: one statement per (entity, fields, filter, sort, limit, actor scope), built once.

Building a SELECT with labelled columns, the scope, the filter and the order
costs more than running it on an index.  :func:`list_query` memoises the
finished statement (and how to turn its rows into record dicts) in a bounded
LRU on the State, so it never outlives its revision.  A reused statement
object also keeps SQLAlchemy's cache key, so executing it skips that work too.
Statements are only memoised when nothing in them depends on the call: a
filter reading ``$user``/``$today``/``$now`` or a reference (whose guard
depends on other entities' scopes) is built per call, as is a cursor page.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Select
from sqlalchemy.sql.elements import ColumnElement

from engine.runtime.records import exprs, filtering, masking, output, query, rows
from engine.runtime.records.query import SortKey
from engine.runtime.records.write_plan import EntityPlan
from engine.runtime.security import Access

if TYPE_CHECKING:
    from sqlalchemy.engine import Row

    from engine.runtime.runtime import UnitOfWork

Shaper = Callable[["Row[Any]"], dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Within:
    """A set of records a list is confined to *instead of* the actor's row scope: a pool's unclaimed records
    have no owner a member's scope could match, so the pool service lists them with this (the member's
    field rules and masks still apply).  ``key`` identifies the set in the statement memo."""

    key: Hashable
    clause: ColumnElement[bool]


@dataclass(frozen=True, slots=True)
class ListQuery:
    """A ready list statement: ``stmt`` (first page) and ``base`` (before order/limit, for cursors)."""

    keys: tuple[str, ...]
    base: Select[Any]
    stmt: Select[Any]
    sort_keys: tuple[SortKey, ...]
    spec: str
    shape: Shaper
    #: position in a row of each sort key's value (for the next cursor)
    sort_at: tuple[int, ...]


def list_query(uow: UnitOfWork, plan: EntityPlan, access: Access, *, filter_text: str | None, sort: str | None,
               limit: int, fields: Sequence[str] | None, within: Within | None = None,
               deleted: bool = False) -> ListQuery:
    """The (memoised when possible) statement of one list call; BadRequest for bad input.

    ``deleted``: list soft-deleted records (the recycle bin) instead of live ones."""
    field_key = tuple(fields) if fields is not None and not isinstance(fields, str) else fields
    if within is not None:
        access = dataclasses.replace(access, read="all")
    key: Any = (plan.name, access, field_key, filter_text, sort, limit, _scope_key(uow, access),
                within.key if within is not None else None, bool(masking.active(uow, plan.name)), deleted)
    try:
        cached = uow.state.cached("list", key)
    except TypeError:  # unhashable input: not a valid request; _build reports it
        key, cached = None, None
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    built, static = _build(uow, plan, access, filter_text, sort, limit, fields, within, deleted)
    if static and key is not None:
        uow.state.store("list", key, built)
    return built


def _scope_key(uow: UnitOfWork, access: Access) -> Any:
    """What the actor's read scope clause depends on."""
    if access.read in ("all", "none"):
        return access.read
    guard = uow.guard
    return access.read, uow.actor.user_id, guard.team_ids() if access.read == "team" else None


def _build(uow: UnitOfWork, plan: EntityPlan, access: Access, filter_text: str | None, sort: str | None,
           limit: int, fields: Sequence[str] | None, within: Within | None,
           deleted: bool = False) -> tuple[ListQuery, bool]:
    keys = output.select_keys(plan, access, fields)
    if fields is None:
        keys = tuple(k for k in keys if k not in plan.lines)
    sort_keys = query.parse_sort(uow, plan, access, sort)
    where = list_where(uow, plan, filter_text, [k.name for k in sort_keys], within)
    cols, shape = _columns(plan, keys)
    sort_at = _sort_columns(cols, sort_keys)
    base = query.base_select(uow, plan, access, cols, deleted=deleted).where(query.where_all(*where))
    stmt = base.order_by(*query.order_by(sort_keys)).limit(limit + 1)
    spec = filtering.cursor_spec(sort_keys, filter_text)
    return ListQuery(keys, base, stmt, sort_keys, spec, shape, sort_at), _static(uow, plan, filter_text)


def list_where(uow: UnitOfWork, plan: EntityPlan, filter_text: str | None, sorted_by: Sequence[str] = (),
               within: Within | None = None) -> Any:
    """The WHERE parts of a list or count besides the row scope: the filter, the set it is confined to,
    and -- when the filter or sort reads a masked field -- no row where that field is masked
    (:func:`engine.runtime.records.masking.exclusion`)."""
    where = filtering.filter_where(uow, plan, filter_text)
    parts = [where] if where is not None else []
    if within is not None:
        parts.append(within.clause)
    if masking.active(uow, plan.name):
        names = set(sorted_by)
        if where is not None:
            names |= exprs.fields_used(filtering.compiled_filter(uow, plan, filter_text or ""))
        hidden = masking.exclusion(uow, plan.name, names)
        if hidden is not None:
            parts.append(hidden)
    return parts


def _sort_columns(cols: list[Any], sort_keys: Sequence[SortKey]) -> tuple[int, ...]:
    """Where each sort value is in a row; a sort expression that is not a selected column is appended.

    Selecting a sorted column a second time under another name is not free: on
    PostgreSQL it widened the sorted rows and doubled the time of a first page.
    """
    out = []
    for i, k in enumerate(sort_keys):
        at = next((j for j, c in enumerate(cols) if c is k.expr), None)
        if at is None:
            at = len(cols)
            cols.append(k.expr.label(f"_s{i}"))
        out.append(at)
    return tuple(out)


def _static(uow: UnitOfWork, plan: EntityPlan, filter_text: str | None) -> bool:
    """True when the filter's SQL depends on nothing but its text (see :func:`filtering.filter_where`)."""
    if filter_text is None or not filter_text.strip():
        return True
    compiled = filtering.compiled_filter(uow, plan, filter_text)
    return not (exprs.uses_context(compiled) or exprs.hops(compiled))


def _columns(plan: EntityPlan, keys: Sequence[str]) -> tuple[list[Any], Shaper]:
    """The columns to select for ``keys`` and the row -> record dict function (lines filled in later)."""
    flat = _flat_keys(plan, keys)
    if flat is not None:  # every key a plain column, selected in key order: rows zip straight into dicts
        cols = [plan.table.c[plan.storage[k][1]] for k in flat]
        return cols, lambda r: dict(zip(flat, r, strict=False))
    cols = rows.columns_for(plan.entity, plan.table, [k for k in keys if k not in plan.lines])
    readers = output.pick(plan.readers, keys)
    return cols, lambda r: {k: get(r._mapping) for k, get in readers}


def _flat_keys(plan: EntityPlan, keys: Sequence[str]) -> tuple[str, ...] | None:
    """``keys`` when all of them are real columns (the fast read path), else None."""
    specs = [plan.storage.get(k) for k in keys if k not in plan.lines]
    if any(spec is None or spec[0] for spec in specs):
        return None
    return tuple(k for k in keys if k not in plan.lines)
