"""Pipeline steps 7-8: references, auto numbers, the row write with its version check, and audit.

Inserts of one record use the database's generated id (one cached INSERT
per entity); bulk inserts get ids reserved up front (see :func:`reserve_ids`)
so they can go through one executemany without RETURNING (:mod:`fastsql`).
Every UPDATE is ``WHERE id = :id AND version = :expected`` — zero rows means
someone else wrote first (VersionConflict).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, delete, func, insert, select, text, update
from sqlalchemy.exc import IntegrityError

from engine.dsl.model import JSON_COLUMN
from engine.errors import RecordError, UniqueViolation, ValidationFailed, VersionConflict
from engine.runtime import sequences
from engine.runtime.engine_tables import crm_users
from engine.runtime.rawsql import raw_insert
from engine.runtime.records import rows
from engine.runtime.records.write_plan import EntityPlan
from engine.runtime.storage import _index_name

if TYPE_CHECKING:
    from engine.runtime.runtime import UnitOfWork


def check_references(uow: UnitOfWork, plan: EntityPlan, records: Sequence[Mapping[str, Any]],
                     keys: Iterable[str]) -> None:
    """Every reference (and owner) among ``keys`` points to an existing record the actor can see."""
    errors = reference_problems(uow, plan, records, keys)
    if errors:
        raise ValidationFailed(f"invalid {plan.name}: unknown references", details=errors)


def reference_problems(uow: UnitOfWork, plan: EntityPlan, records: Sequence[Mapping[str, Any]],
                       keys: Iterable[str]) -> dict[str, list[str]]:
    """key -> messages for references among ``keys`` to records that do not exist or the actor cannot see.

    A missing and an invisible record get the same message.  Ids found
    visible are remembered for the unit of work, so checking again is free.
    """
    errors: dict[str, list[str]] = {}
    for key in keys:
        target = "crm_users" if key == "owner_id" else plan.references.get(key)
        if target is None:
            continue
        wanted = {r[key] for r in records if r.get(key) is not None}
        if not wanted:
            continue
        missing = wanted - _existing(uow, target, wanted)
        if missing:
            what = "active user" if target == "crm_users" else f"{target} record"
            errors[key] = [f"refers to {what} {i}, which does not exist or is not visible to you"
                           for i in sorted(missing)[:5]]
    return errors


def _existing(uow: UnitOfWork, target: str, wanted: set[int]) -> set[int]:
    known = uow.visible_ids.setdefault(target, set())
    ids = wanted - known
    if not ids:
        return wanted
    if len(ids) == 1:  # the common single write: ``id = :id`` (no expanding IN to render per call)
        [only] = ids
        found = set(uow.conn.execute(_exists_stmt(uow, target, one=True), {"id": only}).scalars())
    else:
        found = set()
        id_list = sorted(ids)
        stmt = _exists_stmt(uow, target, one=False)
        for start in range(0, len(id_list), 900):
            found.update(uow.conn.execute(stmt, {"ids": id_list[start:start + 900]}).scalars())
    known |= found
    return (wanted & known) | found


def _exists_stmt(uow: UnitOfWork, target: str, *, one: bool) -> Any:
    """``SELECT id FROM target WHERE id IN :ids`` (or ``= :id``), live and visible to the actor; built once."""
    if target == "crm_users":
        u = crm_users
        return uow.state.memo("exists", (target, one), lambda: select(u.c.id).where(_id_match(u, one), u.c.active))
    guard = uow.guard
    scope_name = guard.access(target).read
    key = (target, one, scope_name, uow.actor.user_id, guard.team_ids() if scope_name == "team" else None)

    def make() -> Any:
        table = uow.state.plan(target).table
        stmt = select(table.c.id).where(_id_match(table, one), table.c.deleted_at.is_(None))
        scope = guard.scope_clause(table, scope_name)
        return stmt.where(scope) if scope is not None else stmt

    return uow.state.memo("exists", key, make)


def _id_match(table: Any, one: bool) -> Any:
    return table.c.id == bindparam("id") if one else table.c.id.in_(bindparam("ids", expanding=True))


def fill_auto_numbers(uow: UnitOfWork, plan: EntityPlan, records: Sequence[dict[str, Any]]) -> None:
    """Give every record without one the next number of each auto_number series."""
    now = uow.clock.now()
    for f in plan.auto_numbers:
        todo = [r for r in records if not r.get(f.name)]
        if todo:
            numbers = sequences.next_numbers(uow.conn, f"{plan.name}.{f.name}", f.pattern or "{#####}", now,
                                             len(todo))
            for r, number in zip(todo, numbers, strict=True):
                r[f.name] = number


def row_for_insert(plan: EntityPlan, record: Mapping[str, Any], stamp: Mapping[str, Any]) -> dict[str, Any]:
    """The column values of a new row: ``stamp`` (standard columns) plus the record's fields."""
    cols, ext = rows.split_columns(plan.storage, record)
    cols.update(stamp)
    cols[JSON_COLUMN] = ext or None
    return cols


def insert_one(uow: UnitOfWork, plan: EntityPlan, row: Mapping[str, Any]) -> int:
    """Insert one row; returns its id (UniqueViolation names the field).

    Through the driver with Core's own bind processors (:class:`~engine.runtime.rawsql.RawInsert`): the
    statement text and processors are worked out once per column set, not per row -- this runs on every
    create."""
    raw = raw_insert(uow.state, uow.conn, plan.table, tuple(row))
    values = tuple([proc(v) if proc is not None else v for proc, v in zip(raw.processors, row.values(), strict=True)])
    try:
        return raw.run_one(uow.conn, values)
    except IntegrityError as e:
        raise integrity_error(plan, e) from e


def reserve_ids(uow: UnitOfWork, plan: EntityPlan, count: int) -> list[int]:
    """``count`` fresh ids for bulk inserts.

    PostgreSQL: from the table's own sequence.  SQLite: above the current
    maximum — safe because a writing unit holds SQLite's write lock
    (BEGIN IMMEDIATE) until it commits.
    """
    if count == 0:
        return []
    conn = uow.conn
    if conn.dialect.name == "postgresql":
        seq = conn.execute(text("SELECT pg_get_serial_sequence(:t, 'id')"), {"t": plan.table.name}).scalar_one()
        stmt = text("SELECT nextval(CAST(:s AS regclass)) FROM generate_series(1, :n)")
        return [int(i) for i in conn.execute(stmt, {"s": seq, "n": count}).scalars()]
    top = conn.execute(select(func.max(plan.table.c.id))).scalar() or 0
    top = max(top, _sqlite_seq(uow, plan.table.name))
    return list(range(top + 1, top + count + 1))


def _sqlite_seq(uow: UnitOfWork, table: str) -> int:
    """SQLite's AUTOINCREMENT high-water mark when the table has one (else 0)."""
    has = uow.conn.execute(text("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_sequence'")).first()
    if not has:
        return 0
    return int(uow.conn.execute(text("SELECT seq FROM sqlite_sequence WHERE name = :t"), {"t": table}).scalar()
               or 0)


def update_row(uow: UnitOfWork, plan: EntityPlan, record_id: int, expected: int, values: Mapping[str, Any],
               old_ext: Mapping[str, Any] | None, stamp: Mapping[str, Any]) -> None:
    """``UPDATE ... SET values, version = version + 1 WHERE id AND version = expected``."""
    cols, ext = rows.split_columns(plan.storage, values)
    if ext:
        cols[JSON_COLUMN] = {**(old_ext or {}), **ext}
    cols.update(stamp)
    t = plan.table
    stmt = uow.state.memo("update_row", t.name, lambda: update(t).where(
        t.c.id == bindparam("b_id"), t.c.version == bindparam("b_version")).values(version=t.c.version + 1))
    try:  # the SET columns are the statement's parameters (one statement per table, compiled per column set)
        count = uow.conn.execute(stmt, {"b_id": record_id, "b_version": expected, **cols}).rowcount
    except IntegrityError as e:
        raise integrity_error(plan, e) from e
    if count != 1:
        raise VersionConflict(f"{plan.name} {record_id} was changed by someone else (expected version {expected})",
                              hint="read the record again and repeat your change",
                              details={"id": record_id, "expected_version": expected})


def replace_lines(uow: UnitOfWork, child: EntityPlan, parent_id: int, lines: Sequence[Mapping[str, Any]],
                  stamp: Mapping[str, Any], *, replace: bool) -> None:
    """Store ``lines`` as the parent's child rows (positions 0..n-1), replacing the old ones."""
    t = child.table
    if replace:
        uow.conn.execute(delete(t).where(t.c.parent_id == parent_id))
    batch = [row_for_insert(child, line, {**stamp, "parent_id": parent_id, "position": i})
             for i, line in enumerate(lines)]
    if batch:
        try:
            uow.conn.execute(insert(t), batch)
        except IntegrityError as e:
            raise integrity_error(child, e) from e


def integrity_error(plan: EntityPlan, exc: IntegrityError) -> RecordError:
    """A database constraint failure as the engine's error (the unique field named)."""
    text_ = str(exc.orig)
    for f in plan.uniques:
        markers = (_index_name(plan.table.name, f"{f.name}_uq"), f"{plan.table.name}.{f.column_name}")
        if any(m in text_ for m in markers):
            return UniqueViolation(f"another {plan.name} already has this {f.name}", code="unique_violation",
                                   details={f.name: ["must be unique; another record already has this value"]},
                                   hint=f"choose a different {f.name}, or update the existing record")
    if "FOREIGN KEY" in text_.upper():
        return ValidationFailed(f"invalid {plan.name}: a referenced record does not exist",
                                details={"_record": ["refers to a record that does not exist"]})
    return RecordError(f"the database refused the {plan.name} record: {text_.splitlines()[0]}",
                       code="constraint_violation")
