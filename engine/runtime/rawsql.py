"""Raw inserts through the driver's executemany (or COPY), with SQLAlchemy's own bind processors.

A Core ``conn.execute(insert(table), dicts)`` spends most of its time per row
in Python (parameter dicts, processors looked up per key).  A
:class:`RawInsert` works the INSERT text, the column order and each column's
bind processor (the very function Core would apply: UtcDateTime,
DecimalType, JSON...) out once per (table, columns, dialect), memoised on the
State; rows are ready tuples and go to the driver in one executemany
without RETURNING (COPY on PostgreSQL with psycopg).  Used for bulk entity
rows (:mod:`engine.runtime.records.fastsql`) and for audit rows
(:mod:`engine.runtime.records.journal`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Table
from sqlalchemy.exc import DBAPIError

if TYPE_CHECKING:
    from engine.runtime.runtime import State

Processor = Callable[[Any], Any] | None

@dataclass(frozen=True, slots=True)
class RawInsert:
    """``INSERT INTO table (columns) VALUES (?, ...)`` for one dialect, with each column's processor."""

    sql: str
    columns: tuple[str, ...]
    processors: tuple[Processor, ...]
    #: ``COPY table (columns) FROM STDIN`` on PostgreSQL with psycopg (faster than executemany), else None
    copy_sql: str | None = None
    #: ``sql`` with ``RETURNING id`` on PostgreSQL (SQLite gives the new id as the cursor's ``lastrowid``)
    returning_sql: str | None = None

    def process(self, name: str, value: Any) -> Any:
        """``value`` as Core would bind it to column ``name``."""
        proc = self.processors[self.columns.index(name)]
        return proc(value) if proc is not None else value

    def run_one(self, conn: Connection, row: tuple[Any, ...]) -> int:
        """Insert one ready (processed) row in the unit's transaction; its new ``id``.  A driver error is
        raised as SQLAlchemy's (IntegrityError...), as ``conn.execute`` would."""
        dbapi = conn.connection.dbapi_connection
        assert dbapi is not None
        base_error = conn.dialect.loaded_dbapi.Error
        sql = self.returning_sql or self.sql
        try:
            cur: Any = dbapi.cursor()
            try:
                cur.execute(sql, row)
                return int(cur.fetchone()[0] if self.returning_sql else cur.lastrowid)
            finally:
                cur.close()
        except base_error as e:
            raise DBAPIError.instance(sql, row, e, base_error) from e

    def run(self, conn: Connection, rows: Sequence[tuple[Any, ...]]) -> None:
        """One executemany (COPY on PostgreSQL) of ready tuples (already processed), in the unit's transaction."""
        if not rows:
            return
        if self.copy_sql is None:
            conn.exec_driver_sql(self.sql, list(rows))
            return
        dbapi = conn.connection.dbapi_connection
        assert dbapi is not None
        base_error = conn.dialect.loaded_dbapi.Error
        try:
            cur: Any = dbapi.cursor()  # a psycopg cursor (copy_sql is only set for psycopg)
            with cur, cur.copy(self.copy_sql) as copy:
                for row in rows:
                    copy.write_row(row)
        except base_error as e:  # the driver's error as SQLAlchemy's (IntegrityError...), as executemany raises it
            raise DBAPIError.instance(self.copy_sql, None, e, base_error) from e


def raw_insert(state: State, conn: Connection, table: Table, columns: Sequence[str]) -> RawInsert:
    """The memoised :class:`RawInsert` of ``columns`` of ``table`` on ``conn``'s dialect."""
    key = (table.name, tuple(columns), conn.dialect.name)
    return state.memo("raw_insert", key, lambda: _build(conn, table, tuple(columns)))  # type: ignore[no-any-return]


def _build(conn: Connection, table: Table, columns: tuple[str, ...]) -> RawInsert:
    dialect = conn.dialect
    prep = dialect.identifier_preparer
    if dialect.paramstyle == "qmark":
        mark = "?"
    elif dialect.paramstyle in ("format", "pyformat"):
        mark = "%s"
    else:  # pragma: no cover - only SQLite and psycopg are supported
        raise NotImplementedError(f"paramstyle {dialect.paramstyle!r}")
    names = ", ".join(prep.quote(c) for c in columns)
    sql = f"INSERT INTO {prep.format_table(table)} ({names}) VALUES ({', '.join([mark] * len(columns))})"
    procs = tuple(table.c[c].type._cached_bind_processor(dialect) for c in columns)
    copy_sql = f"COPY {prep.format_table(table)} ({names}) FROM STDIN" \
        if dialect.name == "postgresql" and dialect.driver == "psycopg" else None
    returning = f"{sql} RETURNING id" if dialect.name == "postgresql" else None
    return RawInsert(sql, columns, procs, copy_sql, returning)


# --------------------------------------------------------------------------- single-row writes


def insert_one(state: State, conn: Connection, table: Table, values: dict[str, Any]) -> int:
    """``INSERT`` one row of ``values`` (every column it needs given: Core's Python-side column defaults
    are not applied here) through the driver; its new ``id``."""
    ri = raw_insert(state, conn, table, tuple(values))
    row = tuple(v if p is None else p(v) for p, v in zip(ri.processors, values.values(), strict=True))
    return ri.run_one(conn, row)


def insert_one_new(state: State, conn: Connection, table: Table, values: dict[str, Any], key: str) -> int | None:
    """Like :func:`insert_one`, but ``ON CONFLICT (key) DO NOTHING``: the new id, or None when a row with
    the same ``key`` exists already."""
    stmt = _keyed(state, conn, table, tuple(values), key)
    row = tuple(v if p is None else p(v) for p, v in zip(stmt.processors, values.values(), strict=True))
    cur = _run(conn, stmt.sql, row)
    try:
        got = cur.fetchone()
    finally:
        cur.close()
    return int(got[0]) if got is not None else None


def update_by_id(state: State, conn: Connection, table: Table, row_id: int, values: dict[str, Any], *,
                 bump_version: bool = False) -> int:
    """``UPDATE table SET values [, version = version + 1] WHERE id = row_id`` through the driver; the
    number of rows changed."""
    stmt = _updater(state, conn, table, tuple(values), bump_version)
    row = (*(v if p is None else p(v) for p, v in zip(stmt.processors, values.values(), strict=True)), row_id)
    cur = _run(conn, stmt.sql, row)
    try:
        return int(cur.rowcount)
    finally:
        cur.close()


@dataclass(frozen=True, slots=True)
class _Statement:
    sql: str
    processors: tuple[Processor, ...]


def _mark(conn: Connection) -> str:
    style = conn.dialect.paramstyle
    if style == "qmark":
        return "?"
    if style in ("format", "pyformat"):
        return "%s"
    raise NotImplementedError(f"paramstyle {style!r}")  # pragma: no cover - only SQLite and psycopg


def _keyed(state: State, conn: Connection, table: Table, columns: tuple[str, ...], key: str) -> _Statement:
    def build() -> _Statement:
        prep = conn.dialect.identifier_preparer
        marks = ", ".join([_mark(conn)] * len(columns))
        sql = (f"INSERT INTO {prep.format_table(table)} ({', '.join(prep.quote(c) for c in columns)}) "
               f"VALUES ({marks}) ON CONFLICT ({prep.quote(key)}) DO NOTHING RETURNING id")
        return _Statement(sql, tuple(table.c[c].type._cached_bind_processor(conn.dialect) for c in columns))

    return state.memo("raw_keyed_insert", (table.name, columns, key, conn.dialect.name), build)  # type: ignore[no-any-return]


def _updater(state: State, conn: Connection, table: Table, columns: tuple[str, ...], bump: bool) -> _Statement:
    def build() -> _Statement:
        prep = conn.dialect.identifier_preparer
        mark = _mark(conn)
        sets = [f"{prep.quote(c)} = {mark}" for c in columns]
        if bump:
            sets.append(f"{prep.quote('version')} = {prep.quote('version')} + 1")
        sql = f"UPDATE {prep.format_table(table)} SET {', '.join(sets)} WHERE {prep.quote('id')} = {mark}"
        return _Statement(sql, tuple(table.c[c].type._cached_bind_processor(conn.dialect) for c in columns))

    return state.memo("raw_update", (table.name, columns, bump, conn.dialect.name), build)  # type: ignore[no-any-return]


def _run(conn: Connection, sql: str, row: tuple[Any, ...]) -> Any:
    """A driver cursor that ran ``sql`` with ``row`` in the unit's transaction (driver errors raised as
    SQLAlchemy's, as ``conn.execute`` raises them); the caller closes it."""
    dbapi = conn.connection.dbapi_connection
    assert dbapi is not None
    base_error = conn.dialect.loaded_dbapi.Error
    cur: Any = dbapi.cursor()
    try:
        cur.execute(sql, row)
    except base_error as e:
        cur.close()
        raise DBAPIError.instance(sql, row, e, base_error) from e
    return cur
