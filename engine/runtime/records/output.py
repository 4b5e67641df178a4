"""Shaping records for the caller: hidden fields removed, field selection, lines, reference expansion."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, select

from engine.errors import BadRequest
from engine.runtime import rawsql
from engine.runtime.engine_tables import crm_users
from engine.runtime.records import masking, rows
from engine.runtime.records.query import base_select
from engine.runtime.records.write_plan import EntityPlan
from engine.runtime.security import Access

if TYPE_CHECKING:
    from engine.runtime.runtime import UnitOfWork

ALWAYS = ("id", "version")
MAX_EXPAND = 10


def visible_keys(plan: EntityPlan, access: Access) -> tuple[str, ...]:
    """Record keys the actor may see, in output order (lines fields last)."""
    hidden = access.hidden | {plan.currency_keys[h] for h in access.hidden if h in plan.currency_keys}
    return tuple(k for k in (*plan.out_fields, *plan.lines) if k not in hidden)


def select_keys(plan: EntityPlan, access: Access, fields: Sequence[str] | None) -> tuple[str, ...]:
    """The keys to return: all visible ones, or ``fields`` (checked: unknown or hidden -> BadRequest)."""
    visible = visible_keys(plan, access)
    if fields is None:
        return visible
    if isinstance(fields, str) or not all(isinstance(f, str) for f in fields):
        raise BadRequest("fields must be a list of field names", code="bad_fields")
    unknown = [f for f in fields if f not in visible]
    if unknown:
        noun = "field" if len(unknown) == 1 else "fields"
        raise BadRequest(f"unknown {noun}: {', '.join(repr(u[:60]) for u in unknown[:5])}", code="bad_fields",
                         details={"fields": [f"unknown field {u[:60]!r}" for u in unknown[:5]]})
    wanted = set(fields) | set(ALWAYS)
    return tuple(k for k in visible if k in wanted)


def shape(readers: Iterable[tuple[str, rows.Getter]], keys: Sequence[str],
          mapping: Mapping[Any, Any]) -> dict[str, Any]:
    """The record dict of ``mapping`` limited to ``keys`` (lines keys are filled in later)."""
    return {k: get(mapping) for k, get in pick(readers, keys)}


def pick(readers: Iterable[tuple[str, rows.Getter]], keys: Sequence[str]) -> list[tuple[str, rows.Getter]]:
    """The readers of ``keys`` only (compute once per page, then read every row with them)."""
    wanted = set(keys)
    return [(k, get) for k, get in readers if k in wanted]


def attach_lines(uow: UnitOfWork, plan: EntityPlan, records: Sequence[dict[str, Any]],
                 keys: Sequence[str]) -> None:
    """Fill every selected lines field with the child rows, ordered by position."""
    ids = [r["id"] for r in records]
    for name, child_name in plan.lines.items():
        if name not in keys or not ids:
            continue
        child = uow.state.plan(child_name)
        ckeys = [k for k in visible_keys(child, uow.guard.access(child_name))]
        by_parent: dict[int, list[dict[str, Any]]] = {i: [] for i in ids}
        readers = pick(child.readers, ckeys)
        for row in _child_rows(uow, child.table, ids):
            m = row._mapping
            by_parent[row.parent_id].append({k: get(m) for k, get in readers})
        for r in records:
            r[name] = by_parent[r["id"]]


def _child_rows(uow: UnitOfWork, table: Any, ids: Sequence[int]) -> Any:
    """The child rows of ``ids`` by parent and position (one parent: a statement built once per table)."""
    t = table
    if len(ids) == 1:
        query = uow.state.memo("child_rows", t.name, lambda: rawsql.Query(
            select(t).where(t.c.parent_id == bindparam("b_parent")).order_by(t.c.position)))
        return query.all(uow.conn, {"b_parent": ids[0]})
    return uow.conn.execute(select(t).where(t.c.parent_id.in_(ids)).order_by(t.c.parent_id, t.c.position))


def expand(uow: UnitOfWork, plan: EntityPlan, access: Access, records: Sequence[dict[str, Any]],
           names: Sequence[str] | None) -> None:
    """Replace reference ids by the referenced record (one hop) where the actor may read it.

    A reference the actor cannot see becomes ``{"id": n}``: its existence was
    already known from the id, nothing more leaks.
    """
    if not names:
        return
    if isinstance(names, str) or len(names) > MAX_EXPAND:
        raise BadRequest("expand must be a list of at most 10 reference fields", code="bad_expand")
    for name in names:
        target = plan.references.get(name) if name not in access.hidden else None
        if target is None:
            raise BadRequest(f"cannot expand {str(name)[:60]!r}: not a reference field", code="bad_expand",
                             details={"expand": [f"{str(name)[:60]!r} is not a reference field"]})
        ids = {r[name] for r in records if r.get(name) is not None}
        found = _users(uow, ids) if target == "crm_users" else _targets(uow, target, ids)
        for r in records:
            if r.get(name) is not None:
                r[name] = found.get(r[name], {"id": r[name]})


def _targets(uow: UnitOfWork, target: str, ids: set[int]) -> dict[int, dict[str, Any]]:
    if not ids:
        return {}
    plan = uow.state.plan(target)
    access = uow.guard.access(target)
    if access.read == "none":
        return {}
    keys = visible_keys(plan, access)
    stmt = base_select(uow, plan, access, list(plan.table.c)).where(plan.table.c.id.in_(sorted(ids)))
    readers = pick(plan.readers, keys)
    found = {row.id: {k: get(row._mapping) for k, get in readers} for row in uow.conn.execute(stmt)}
    masking.apply(uow, target, list(found.values()))
    return found


def _users(uow: UnitOfWork, ids: set[int]) -> dict[int, dict[str, Any]]:
    if not ids:
        return {}
    u = crm_users
    stmt = select(u.c.id, u.c.username, u.c.display_name).where(u.c.id.in_(sorted(ids)))
    return {r.id: {"id": r.id, "username": r.username, "display_name": r.display_name}
            for r in uow.conn.execute(stmt)}
