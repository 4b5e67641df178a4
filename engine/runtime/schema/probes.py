"""What the plan rules need from the database: row counts and values of the *old* schema."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, func, select
from sqlalchemy.sql.elements import ColumnElement

from engine.dsl.model import Field, Workspace
from engine.runtime.schema.snapshot import DbState
from engine.runtime.storage import Schema, build_schema, json_field_expr


@dataclass(frozen=True)
class PlanContext:
    """Read-only access to the database being planned against.

    ``conn`` is None for an empty database (every count is 0).  Queries run
    against ``old_schema``: the tables the active revision left behind,
    retired entities included.
    """

    conn: Connection | None
    dialect: str
    old_schema: Schema | None
    purge: bool = False
    export_dir: Path | None = None
    stamp: str = ""

    @classmethod
    def build(cls, conn: Connection | None, old: DbState | None, dialect: str, **kw: Any) -> PlanContext:
        schema = None
        if old is not None:
            ws = Workspace(name="old", entities={**old.retired_entities, **old.entities})
            schema = build_schema(ws, dialect)
        return cls(conn=conn, dialect=dialect, old_schema=schema, **kw)

    @property
    def has_data(self) -> bool:
        return self.conn is not None and self.old_schema is not None

    def expr(self, entity: str, field: Field) -> ColumnElement[Any]:
        """The SQL value of ``field`` (as the old schema stores it) in ``entity``'s table."""
        assert self.old_schema is not None
        table = self.old_schema.tables[entity]
        if field.storage == "json":
            return json_field_expr(table, field, self.dialect)
        return table.c[field.column_name]

    def count(self, entity: str, where: ColumnElement[Any] | None = None) -> int:
        """Rows of ``entity`` matching ``where`` (all rows when None); 0 without a database."""
        if not self.has_data:
            return 0
        assert self.conn is not None and self.old_schema is not None
        stmt = select(func.count()).select_from(self.old_schema.tables[entity])
        if where is not None:
            stmt = stmt.where(where)
        return int(self.conn.execute(stmt).scalar_one())

    def scalar(self, entity: str, expr: ColumnElement[Any]) -> Any:
        """One aggregate over ``entity``'s rows (None without a database)."""
        if not self.has_data:
            return None
        assert self.conn is not None and self.old_schema is not None
        return self.conn.execute(select(expr).select_from(self.old_schema.tables[entity])).scalar()

    def count_filled(self, entity: str, field: Field) -> int:
        """Rows where ``field`` has a value."""
        return self.count(entity, self.expr(entity, field).is_not(None)) if self.has_data else 0

    def values(self, entity: str, field: Field) -> Iterator[Any]:
        """Every non-null value of ``field`` (for checks SQL cannot do on both databases)."""
        if not self.has_data:
            return
        assert self.conn is not None
        expr = self.expr(entity, field)
        for (value,) in self.conn.execute(select(expr).where(expr.is_not(None))):
            yield value
