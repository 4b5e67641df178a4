"""Evaluating a feature's compiled expressions on a record inside a unit of work (gates, task owners)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, select

from engine.runtime import exchange_rates, rawsql, users
from engine.runtime.records import exprs, rows

if TYPE_CHECKING:
    from engine.runtime.runtime import UnitOfWork


def eval_context(uow: UnitOfWork, old: Mapping[str, Any] | None) -> Any:
    """An expression context for the unit (user, clock, ``old``, one-hop references, the user directory)."""
    return exprs.make_context(user_id=uow.actor.user_id, now=uow.clock.now(), old=old,
                              ref=lambda entity, rid: read_record(uow, entity, rid),
                              users=lambda uid: users.directory_entry(uow.conn, uid),
                              rates=exchange_rates.resolver(uow.conn))


def read_record(uow: UnitOfWork, entity: str, record_id: int, *, lock: bool = False) -> Mapping[str, Any] | None:
    """The stored record ``record_id`` of ``entity`` as the engine reads it (for expressions; no row scope).

    ``lock``: FOR UPDATE (PostgreSQL; SQLite units write one at a time)."""
    plan = uow.state.plan(entity)
    query = uow.state.memo("read_record", (entity, lock), lambda: rawsql.Query(_read_stmt(plan.table, lock)))
    row = query.first(uow.conn, {"b_id": record_id})
    return rows.read(plan.readers, row._mapping) if row is not None else None


def _read_stmt(table: Any, lock: bool) -> Any:
    stmt = select(table).where(table.c.id == bindparam("b_id"))
    return stmt.with_for_update() if lock else stmt
