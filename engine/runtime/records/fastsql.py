"""Bulk inserts through the driver's executemany, with SQLAlchemy's own bind processors.

A Core ``conn.execute(insert(table), dicts)`` spends most of its time per row
in Python (parameter dicts, processors looked up per key).  Here the INSERT
text, the column order and each column's bind processor (the very function
Core would apply: UtcDateTime, DecimalType, JSON...) are worked out once per
(table, columns, dialect) and memoised on the State; rows become tuples and
go to ``exec_driver_sql`` in one executemany without RETURNING.  Values that
are the same for every row of a batch (the stamp) are processed once.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Table
from sqlalchemy.exc import DBAPIError

from engine.dsl.model import JSON_COLUMN
from engine.runtime.audit import json_form
from engine.runtime.engine_tables import crm_audit
from engine.runtime.records.write import _CHILD_IGNORED as CHILD_IGNORED

if TYPE_CHECKING:
    from engine.runtime.records.plan import EntityPlan
    from engine.runtime.runtime import State

Processor = Callable[[Any], Any] | None

#: crm_audit columns written by :func:`audit_rows`, in this order
AUDIT_COLUMNS = ("entity", "record_id", "action", "field", "old_value", "new_value", "actor_id", "at",
                 "revision_id")


@dataclass(frozen=True, slots=True)
class RawInsert:
    """``INSERT INTO table (columns) VALUES (?, ...)`` for one dialect, with each column's processor."""

    sql: str
    columns: tuple[str, ...]
    processors: tuple[Processor, ...]
    #: ``COPY table (columns) FROM STDIN`` on PostgreSQL with psycopg (faster than executemany), else None
    copy_sql: str | None = None

    def process(self, name: str, value: Any) -> Any:
        """``value`` as Core would bind it to column ``name``."""
        proc = self.processors[self.columns.index(name)]
        return proc(value) if proc is not None else value

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
    return RawInsert(sql, columns, procs, copy_sql)


def entity_insert(state: State, conn: Connection, plan: EntityPlan) -> RawInsert:
    """The raw INSERT of every column of the entity's table (ids included: reserved up front)."""
    return raw_insert(state, conn, plan.table, [c.name for c in plan.table.c])


def entity_rows(ins: RawInsert, plan: EntityPlan, records: Sequence[Mapping[str, Any]],
                const: Mapping[str, Any]) -> list[tuple[Any, ...]]:
    """Processed tuples of ``records``; columns named in ``const`` take that value (same for all rows)."""
    by_column = {name: key for key, (in_json, name, _f) in plan.storage.items() if not in_json}
    keys = [by_column.get(c, c) for c in ins.columns]
    fixed, procs, json_at = _row_spec(ins, const)
    ext_of = _ext_builder(plan, ins.processors[json_at] if json_at >= 0 else None)
    out = []
    for r in records:
        row = list(map(r.get, keys))
        for i, proc in procs:
            row[i] = proc(row[i])
        for i, value in fixed:
            row[i] = value
        if json_at >= 0:
            row[json_at] = ext_of(r)
        out.append(tuple(row))
    return out


def _row_spec(ins: RawInsert, const: Mapping[str, Any]) -> tuple[list[tuple[int, Any]],
                                                                   list[tuple[int, Callable[[Any], Any]]], int]:
    """(position, processed constant), (position, processor) of the other columns, the JSON column's position."""
    fixed: list[tuple[int, Any]] = []
    procs: list[tuple[int, Callable[[Any], Any]]] = []
    json_at = -1
    for i, (col, proc) in enumerate(zip(ins.columns, ins.processors, strict=True)):
        if col == JSON_COLUMN:
            json_at = i
        elif col in const:
            fixed.append((i, proc(const[col]) if proc is not None else const[col]))
        elif proc is not None:
            procs.append((i, proc))
    return fixed, procs, json_at


def _ext_builder(plan: EntityPlan, proc: Processor) -> Callable[[Mapping[str, Any]], Any]:
    """record -> the bound value of its JSON column (the JSON-stored fields present in the record)."""
    from engine.runtime.storage import to_json_value

    fields = [(key, name, f) for key, (in_json, name, f) in plan.storage.items() if in_json]
    if not fields:
        empty = proc(None) if proc is not None else None
        return lambda _r: empty

    def ext_of(r: Mapping[str, Any]) -> Any:
        ext = {name: (to_json_value(f, r[key]) if f is not None else r[key]) for key, name, f in fields if key in r}
        return proc(ext or None) if proc is not None else (ext or None)

    return ext_of


def snapshot_builder(plan: EntityPlan) -> Callable[[Mapping[str, Any]], dict[str, Any]]:
    """record -> its create snapshot with typed values already in JSON form (see :func:`audit_json`)."""
    typed = [k for k in plan.snapshot_keys if (f := plan.entity.fields.get(k)) is not None
             and f.type in ("decimal", "money", "percent", "date", "datetime")]
    keys = plan.snapshot_keys
    lines = tuple(plan.lines)

    def snapshot(r: Mapping[str, Any]) -> dict[str, Any]:
        out = {k: r.get(k) for k in keys}
        for k in typed:
            v = out[k]
            if v is not None:
                out[k] = json_form(v)
        for name in lines:
            out[name] = [{k: v for k, v in line.items() if k not in CHILD_IGNORED} for line in r.get(name) or ()]
        return out

    return snapshot


def _json_default(value: Any) -> Any:
    """What :func:`engine.runtime.audit.json_form` makes of a value the JSON encoder does not know."""
    return json_form(value)


#: the audit trail's JSON text: the same text as ``json.dumps(json_form(value))`` in one C-backed pass
_AUDIT_JSON = json.JSONEncoder(default=_json_default, check_circular=False)


def audit_json(conn: Connection, proc: Processor) -> Callable[[Any], Any]:
    """value -> the bound form of a crm_audit JSON column (what ``proc(json_form(value))`` gives)."""
    name = conn.dialect.name
    if name == "sqlite" and conn.dialect._json_serializer is None:  # type: ignore[attr-defined]
        return _AUDIT_JSON.encode
    if name == "postgresql" and conn.dialect.driver == "psycopg":
        from psycopg.types.json import Jsonb

        encode = _AUDIT_JSON.encode
        return lambda value: Jsonb(value, dumps=encode)
    assert proc is not None
    return lambda value: proc(json_form(value))


def audit_insert(state: State, conn: Connection) -> RawInsert:
    """The raw INSERT of crm_audit rows (id generated by the database)."""
    return raw_insert(state, conn, crm_audit, AUDIT_COLUMNS)
