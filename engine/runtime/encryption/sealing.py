"""Rewriting stored values of encrypted fields in pages: the table column and the audit journal.

Both the apply (``encrypted:`` turned on or off) and ``crm keys rotate`` go through :func:`rewrite_column`
and :func:`rewrite_audit` with a function from the stored text to the text to store (None: leave the row).
They read and write the raw column (plain text, not the sealing column type), so a value is never sealed
twice, and work by id order in pages of :data:`PAGE` rows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy import BigInteger, Column, Connection, MetaData, Table, Text, bindparam, or_, select, update

from engine.runtime.engine_tables import crm_audit

PAGE = 1000
Rewrite = Callable[[str], "str | None"]


def raw_table(table: str, column: str) -> Table:
    """``table (id, column)`` with the column as plain text: what is stored, sealed or not."""
    return Table(table, MetaData(), Column("id", BigInteger, primary_key=True), Column(column, Text))


def rewrite_page(conn: Connection, table: Table, column: str, fn: Rewrite, after: int, *,
                 page: int = PAGE) -> tuple[int, int | None]:
    """Rewrite one page of rows with id > ``after``: (rows rewritten, last id read; None when none was left)."""
    col = table.c[column]
    rows = conn.execute(select(table.c.id, col).where(table.c.id > after, col.is_not(None))
                        .order_by(table.c.id).limit(page)).all()
    if not rows:
        return 0, None
    updates = [{"_id": r[0], "_v": new} for r in rows if (new := fn(r[1])) is not None and new != r[1]]
    if updates:
        conn.execute(update(table).where(table.c.id == bindparam("_id")).values({column: bindparam("_v")}),
                     updates)
    return len(updates), rows[-1][0]


def rewrite_column(conn: Connection, table: str, column: str, fn: Rewrite) -> int:
    """Rewrite every stored value of ``table.column`` (in the caller's transaction); rows rewritten."""
    t = raw_table(table, column)
    done, last = 0, 0
    while True:
        count, last_id = rewrite_page(conn, t, column, fn, last)
        if last_id is None:
            return done
        done, last = done + count, last_id


def rewrite_audit(conn: Connection, entity: str, fields: Iterable[str], fn: Rewrite, *, after: int = 0,
                  page: int = PAGE) -> tuple[int, int | None]:
    """Rewrite the values of ``fields`` in ``entity``'s audit entries with id > ``after`` (one page unless
    ``page`` is 0: all); (entries rewritten, last id read, None when none was left)."""
    names = frozenset(fields)
    a = crm_audit
    stmt = update(a).where(a.c.id == bindparam("_id")).values(old_value=bindparam("_old"),
                                                               new_value=bindparam("_new"))
    done, last = 0, after
    while True:
        rows = conn.execute(select(a.c.id, a.c.field, a.c.old_value, a.c.new_value)
                            .where(a.c.entity == entity, a.c.id > last,
                                   or_(a.c.field.in_(sorted(names)), a.c.field.is_(None)))
                            .order_by(a.c.id).limit(page or PAGE)).all()
        if not rows:
            return done, None if last == after else last
        updates = []
        for rid, name, old, new in rows:
            old2, new2 = _entry_values(name, old, names, fn), _entry_values(name, new, names, fn)
            if old2 != old or new2 != new:
                updates.append({"_id": rid, "_old": old2, "_new": new2})
        if updates:
            conn.execute(stmt, updates)
        done, last = done + len(updates), rows[-1][0]
        if page:
            return done, last


def _entry_values(name: str | None, value: Any, names: frozenset[str], fn: Rewrite) -> Any:
    if name is not None:
        return _one(value, fn) if name in names else value
    if isinstance(value, dict) and not names.isdisjoint(value):
        return {k: _one(v, fn) if k in names else v for k, v in value.items()}
    return value


def _one(value: Any, fn: Rewrite) -> Any:
    if not isinstance(value, str):
        return value
    new = fn(value)
    return value if new is None else new
