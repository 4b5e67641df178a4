"""Statements through the driver, with SQLAlchemy's own bind and result processors: inserts (executemany,
or COPY for many rows), single-row writes, and prepared hot SELECTs (:class:`Query`).

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

import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Table
from sqlalchemy.exc import DBAPIError

if TYPE_CHECKING:
    from engine.runtime.runtime import State

Processor = Callable[[Any], Any] | None
#: fewer rows than this go in one executemany even where COPY is possible: a COPY takes two round trips
#: (start, then data and end), an INSERT of a few rows one
COPY_FROM = 16

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
        if self.copy_sql is None or len(rows) < COPY_FROM:
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


# --------------------------------------------------------------------------- prepared SELECTs


class Query:
    """A hot ``SELECT`` compiled once per dialect and run through the driver, its parameters and results
    passed through Core's own bind and result processors (UtcDateTime, JSON, DecimalType...).

    ``conn.execute(stmt)`` of a statement built once still costs Core a cache-key lookup, parameter
    construction and a result proxy per call -- several times what SQLite takes to run a primary-key
    lookup.  Rows are named tuples (``row.id``, ``row[0]``, ``row._mapping``).  Not for statements
    with ``IN`` lists (expanding parameters: refused); literal values in the statement are bound as Core would.
    """

    __slots__ = ("_compiled", "stmt")

    def __init__(self, stmt: Any) -> None:
        self.stmt = stmt
        self._compiled: dict[str, _Compiled] = {}

    def first(self, conn: Connection, params: dict[str, Any] | None = None) -> Any:
        """The first row, or None."""
        c = self._for(conn)
        cur = _run(conn, c.sql, c.bind(params or {}))
        try:
            raw = cur.fetchone()
            return None if raw is None else c.row(cur, raw)
        finally:
            cur.close()

    def all(self, conn: Connection, params: dict[str, Any] | None = None) -> list[Any]:
        """Every row, in the statement's order."""
        c = self._for(conn)
        cur = _run(conn, c.sql, c.bind(params or {}))
        try:
            return [c.row(cur, raw) for raw in cur.fetchall()]
        finally:
            cur.close()

    def sql(self, conn: Connection, params: dict[str, Any] | None = None) -> tuple[str, Any]:
        """The statement's text on ``conn``'s dialect and ``params`` as the driver gets them (for EXPLAIN)."""
        c = self._for(conn)
        return c.sql, c.bind(params or {})

    def _for(self, conn: Connection) -> _Compiled:
        dialect = conn.dialect
        found = self._compiled.get(dialect.name)
        if found is None:
            found = self._compiled[dialect.name] = _Compiled.of(self.stmt, dialect)
        return found


class _Compiled:
    """One :class:`Query` on one dialect: the SQL text, how parameters bind, how rows come back."""

    __slots__ = ("_types", "defaults", "dialect", "keys", "names", "procs", "results", "row_type", "sql")

    def __init__(self, sql: str, dialect: Any, names: tuple[str, ...] | None, procs: dict[str, Processor],
                 defaults: dict[str, Any], keys: tuple[str, ...], types: tuple[Any, ...]) -> None:
        self.sql, self.dialect, self.names, self.procs, self.defaults = sql, dialect, names, procs, defaults
        self.keys = keys
        self.row_type = _row_type(keys)
        self._types = types
        #: the result processors, worked out at the first fetch (PostgreSQL's depend on the column's type code)
        self.results: tuple[Processor, ...] | None = None

    @classmethod
    def of(cls, stmt: Any, dialect: Any) -> _Compiled:
        compiled = stmt.compile(dialect=dialect)
        if compiled.literal_execute_params or compiled.post_compile_params:
            raise NotImplementedError("rawsql.Query: statements with expanding parameters are not supported")
        names = tuple(compiled.positiontup) if compiled.positiontup is not None else None
        procs: dict[str, Processor] = {}
        defaults: dict[str, Any] = {}
        for bind, name in compiled.bind_names.items():
            procs[name] = bind.type._cached_bind_processor(dialect)
            if not bind.required:
                defaults[name] = bind.effective_value
        columns = compiled._result_columns
        keys = tuple(col[0] for col in columns)
        return cls(compiled.string, dialect, names, procs, defaults, keys, tuple(col[3] for col in columns))

    def bind(self, params: dict[str, Any]) -> Any:
        values = {**self.defaults, **params} if self.defaults else params
        procs = self.procs
        if self.names is not None:
            out = []
            for name in self.names:
                value = values[name]
                proc = procs.get(name)
                out.append(proc(value) if proc is not None else value)
            return tuple(out)
        return {name: (procs[name](v) if procs.get(name) is not None else v)  # type: ignore[misc]
                for name, v in values.items()}

    def row(self, cur: Any, raw: Sequence[Any]) -> Any:
        results = self.results
        if results is None:
            codes = [d[1] for d in cur.description]
            results = self.results = tuple(t._cached_result_processor(self.dialect, code)
                                           for t, code in zip(self._types, codes, strict=True))
        return self.row_type([v if p is None else p(v) for p, v in zip(results, raw, strict=True)])


class Row(tuple):  # type: ignore[type-arg]
    """A row of a :class:`Query`: a tuple with its columns as attributes and ``_mapping`` (a dict)."""

    __slots__ = ()
    _keys: tuple[str, ...] = ()

    @property
    def _mapping(self) -> dict[str, Any]:
        return dict(zip(self._keys, self, strict=True))


def _row_type(keys: tuple[str, ...]) -> type[Row]:
    """A :class:`Row` class whose attributes are ``keys`` (no code generated: item getters)."""
    attrs: dict[str, Any] = {"__slots__": (), "_keys": keys}
    for i, key in enumerate(keys):
        if key.isidentifier() and not key.startswith("_"):
            attrs[key] = property(operator.itemgetter(i))
    return type("Row", (Row,), attrs)
