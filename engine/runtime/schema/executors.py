"""Apply steps: the DDL (through Alembic operations) and data moves of each change kind.

Each executor takes the :class:`ApplyContext` and one :class:`Change`.  DDL
goes through ``alembic.operations.Operations`` on the apply's connection; on
SQLite, operations ALTER cannot do (drop column, type change) run in Alembic
batch mode, which rebuilds the table inside the same transaction.  Data moves
(storage moves, JSON key renames, option replacement, purge exports) read
and write rows in id order, in pages, with the storage module's value
conversions.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from alembic.operations import Operations
from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    MetaData,
    Table,
    bindparam,
    cast,
    func,
    insert,
    literal,
    null,
    select,
    text,
    update,
)
from sqlalchemy.schema import AddConstraint, CreateColumn, CreateIndex, CreateTable, ForeignKeyConstraint

from engine.dsl.model import JSON_COLUMN, Field
from engine.errors import PlanError
from engine.runtime.engine_tables import crm_audit, crm_stage_history
from engine.runtime.schema import features
from engine.runtime.schema.field_rules import PLAIN_NUMERIC, TEXTUAL
from engine.runtime.schema.model import CHANGE_KINDS, KINDS_BY_NAME, Change, Plan
from engine.runtime.storage import (
    BIGRAMS,
    BIGRAMS_SQL,
    Schema,
    column_type,
    field_columns,
    from_json_value,
    to_json_value,
)
from engine.runtime.types import JsonType, UtcDateTime
from engine.wording import counted

PAGE = 2000


@dataclass
class ApplyContext:
    """Everything an executor needs: the connection, Alembic operations, the plan, the schemas."""

    conn: Connection
    ops: Operations
    plan: Plan
    result_schema: Schema
    fail_after: int | None = None
    ddl_steps: int = 0
    exported: list[Path] = field(default_factory=list)
    created: set[str] = field(default_factory=set)
    deferred_fks: list[ForeignKeyConstraint] = field(default_factory=list)
    #: when this apply writes: the time of the audit rows its data moves leave
    at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    #: audit rows were written (their revision is filled in once the apply records it)
    audited: bool = False
    #: the revision the apply records (set before the feature data changes run, which come last)
    revision_id: int | None = None

    @property
    def sqlite(self) -> bool:
        return self.conn.dialect.name == "sqlite"

    def ddl_done(self) -> None:
        """Count one DDL step; the ``fail_after`` test hook raises once the count is reached."""
        self.ddl_steps += 1
        if self.fail_after is not None and self.ddl_steps >= self.fail_after:
            raise PlanError(f"injected failure after {counted(self.ddl_steps, 'DDL step')} (fail_after test hook)",
                            code="injected_failure")

    def old_field(self, change: Change) -> Field:
        """The field as the database holds it *before* this apply, under its current name."""
        assert self.plan.old is not None
        name = change.details["old_name"]
        entity = self.plan.old.entities.get(change.entity) or self.plan.old.retired_entities[change.entity]
        prior = entity.fields.get(name) or entity.retired[name]
        return prior if change.field is None else replace(prior, name=change.field)

    def new_field(self, change: Change) -> Field:
        entity = self.plan.result.entities[change.entity]
        assert change.field is not None
        return entity.fields.get(change.field) or entity.retired[change.field]

    @contextmanager
    def alter(self, table: str) -> Iterator[Any]:
        """Alembic batch operations on SQLite (table rebuild), plain operations elsewhere.

        SQLite cannot reflect expression indexes, so the table's indexes are
        dropped before the rebuild and re-created from their saved SQL after it;
        its triggers (the search index's, docs/search.md) go with the old table
        and are re-created the same way.
        """
        if not self.sqlite:
            yield _Bound(self.ops, table)
            return
        saved = self.conn.execute(
            text("SELECT type, name, sql FROM sqlite_master WHERE type IN ('index', 'trigger') AND tbl_name = :t "
                 "AND sql IS NOT NULL ORDER BY type"),
            {"t": table},
        ).all()
        for kind, name, _sql in saved:
            if kind == "index":
                self.ops.drop_index(name, table_name=table)
        with self.ops.batch_alter_table(table, recreate="always") as batch:
            yield batch
        for _kind, _name, sql in saved:
            self.conn.exec_driver_sql(sql)


class _Bound:
    """Plain Operations with the table name bound, shaped like a batch operations object."""

    def __init__(self, ops: Operations, table: str) -> None:
        self.ops, self.table = ops, table

    def alter_column(self, name: str, **kw: Any) -> None:
        self.ops.alter_column(self.table, name, **kw)

    def drop_column(self, name: str) -> None:
        self.ops.drop_column(self.table, name)


# --------------------------------------------------------------------------- row rewriting


def _adhoc(table: str, *columns: Column) -> Table:
    return Table(table, MetaData(), Column("id", BigInteger, primary_key=True), *columns)


def rewrite_rows(ctx: ApplyContext, table: Table, fn: Callable[[Any], dict[str, Any] | None]) -> int:
    """Call ``fn(row)`` on every row (id order, in pages); write back the dicts it returns."""
    cols = [c for c in table.c if c.name != "id"]
    stmt = update(table).where(table.c.id == bindparam("_id")).values(
        {c.name: bindparam(f"_v_{c.name}") for c in cols})
    last, written = None, 0
    while True:
        query = select(table).order_by(table.c.id).limit(PAGE)
        if last is not None:
            query = query.where(table.c.id > last)
        rows = ctx.conn.execute(query).all()
        if not rows:
            return written
        updates = [{"_id": r.id, **{f"_v_{k}": v for k, v in out.items()}}
                   for r in rows if (out := fn(r)) is not None]
        if updates:
            ctx.conn.execute(stmt, updates)
            written += len(updates)
        last = rows[-1].id


def _value_col(f: Field) -> Column:
    return Column(f.column_name, column_type(f))


# --------------------------------------------------------------------------- executors


def do_create_table(ctx: ApplyContext, change: Change) -> None:
    """CREATE TABLE; on PostgreSQL a foreign key to a table created later in this plan
    (a reference cycle) is deferred to :func:`add_deferred_foreign_keys`."""
    table = ctx.result_schema.tables[change.entity]
    ctx.created.add(change.entity)
    later = set() if ctx.sqlite else {c.entity for c in ctx.plan.changes
                                      if c.kind == "create_table" and c.entity not in ctx.created}
    now = [fk for fk in table.foreign_key_constraints if fk.referred_table.name not in later]
    ctx.deferred_fks.extend(fk for fk in table.foreign_key_constraints if fk.referred_table.name in later)
    ctx.ops.execute(CreateTable(table, include_foreign_key_constraints=now))
    ctx.ddl_done()


def add_deferred_foreign_keys(ctx: ApplyContext) -> None:
    """The foreign keys :func:`do_create_table` deferred, once every table exists."""
    for fk in ctx.deferred_fks:
        ctx.ops.execute(AddConstraint(fk))
        ctx.ddl_done()


def do_add_index(ctx: ApplyContext, change: Change) -> None:
    table = ctx.result_schema.tables[change.entity]
    index = next(ix for ix in table.indexes if ix.name == change.details["index"])
    if not ctx.sqlite and "gin_trgm_ops" in (index.dialect_options["postgresql"].get("ops") or {}).values():
        ctx.ops.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")  # a search index (docs/search.md)
    if not ctx.sqlite and any(BIGRAMS in str(e) for e in index.expressions):
        ctx.ops.execute(BIGRAMS_SQL)  # the function the bigram search index holds (docs/search.md)
    ctx.ops.execute(CreateIndex(index))
    ctx.ddl_done()


def do_drop_index(ctx: ApplyContext, change: Change) -> None:
    ctx.ops.drop_index(change.details["index"], table_name=change.entity)
    ctx.ddl_done()


def do_add_column(ctx: ApplyContext, change: Change) -> None:
    for col in field_columns(ctx.new_field(change)):
        add_column(ctx, change.entity, col)


def add_column(ctx: ApplyContext, table: str, col: Column) -> None:
    """ALTER TABLE ADD COLUMN; on SQLite a foreign key goes inline (Alembic would need a table rebuild)."""
    if ctx.sqlite and col.foreign_keys:
        quote = ctx.conn.dialect.identifier_preparer.quote
        fk = next(iter(col.foreign_keys))
        target_table, target_col = fk.target_fullname.split(".")
        spec = str(CreateColumn(col).compile(dialect=ctx.conn.dialect))
        ondelete = f" ON DELETE {fk.ondelete}" if fk.ondelete else ""
        ctx.ops.execute(f"ALTER TABLE {quote(table)} ADD COLUMN {spec} "
                        f"REFERENCES {quote(target_table)} ({quote(target_col)}){ondelete}")
    else:
        ctx.ops.add_column(table, col)
    ctx.ddl_done()


def do_rename(ctx: ApplyContext, change: Change) -> None:
    old = ctx.old_field(replace(change, field=None))
    new = replace(old, name=change.field or old.name)
    if old.storage == "json":
        _move_json_key(ctx, change.entity, old.column_name, new.column_name)
        return
    for before, after in zip(field_columns(old), field_columns(new), strict=True):
        ctx.ops.alter_column(change.entity, before.name, new_column_name=after.name)
        ctx.ddl_done()


def _move_json_key(ctx: ApplyContext, table_name: str, before: str, after: str) -> None:
    table = _adhoc(table_name, Column(JSON_COLUMN, JsonType))

    def move(row: Any) -> dict[str, Any] | None:
        ext = row.ext
        if not ext or before not in ext:
            return None
        ext = dict(ext)
        ext[after] = ext.pop(before)
        return {JSON_COLUMN: ext}

    rewrite_rows(ctx, table, move)


def do_move_storage(ctx: ApplyContext, change: Change) -> None:
    old, new = ctx.old_field(change), ctx.new_field(change)
    if change.details["to"] == "json":
        _column_to_json(ctx, change.entity, old, new)
    else:
        _json_to_column(ctx, change.entity, old, new)


def _column_to_json(ctx: ApplyContext, table_name: str, old: Field, new: Field) -> None:
    table = _adhoc(table_name, Column(JSON_COLUMN, JsonType), _value_col(old))

    def copy(row: Any) -> dict[str, Any] | None:
        value = row._mapping[old.column_name]
        if value is None:
            return None
        return {JSON_COLUMN: {**(row.ext or {}), new.column_name: to_json_value(new, value)},
                old.column_name: None}

    rewrite_rows(ctx, table, copy)
    with ctx.alter(table_name) as batch:
        for col in field_columns(old):
            batch.drop_column(col.name)
    ctx.ddl_done()


def _json_to_column(ctx: ApplyContext, table_name: str, old: Field, new: Field) -> None:
    for col in field_columns(new):
        add_column(ctx, table_name, col)
    table = _adhoc(table_name, Column(JSON_COLUMN, JsonType), _value_col(new))

    def copy(row: Any) -> dict[str, Any] | None:
        ext = row.ext
        if not ext or old.column_name not in ext:
            return None
        ext = dict(ext)
        value = from_json_value(old, ext.pop(old.column_name))
        return {JSON_COLUMN: ext, new.column_name: value}

    rewrite_rows(ctx, table, copy)


#: the audit action of rows a plan's option replacement (``replace:``, a pipeline's ``move_to:``) rewrote
REPLACE_AUDIT_ACTION = "replace_option"


def do_replace_option(ctx: ApplyContext, change: Change) -> None:
    old = ctx.old_field(change)
    src, dst = change.details["option"], change.details["to"]
    configured = ctx.plan.new.entities.get(change.entity)
    owned = configured.fields.get(change.field or "") if configured is not None else None
    if owned is not None and owned.options_owner:  # a pipeline's stages: the records' stage history moves too
        _move_stage_history(ctx, change.entity, src, dst)
    if old.storage == "column" and old.type == "picklist":
        table = _adhoc(change.entity, _value_col(old), Column("version", BigInteger))
        col = table.c[old.column_name]
        _audit_replaced(ctx, table, change.field or old.name, col == src, src, dst)
        ctx.conn.execute(update(table).where(col == src).values({old.column_name: dst,
                                                                 "version": table.c.version + 1}))
        return
    multi = old.type == "multi_picklist"
    in_json = old.storage == "json"
    table = _adhoc(change.entity, Column(JSON_COLUMN, JsonType) if in_json else _value_col(old))

    def swap(value: Any) -> Any:
        if multi and isinstance(value, list):
            return list(dict.fromkeys(dst if v == src else v for v in value))
        return dst if value == src else value

    def fix(row: Any) -> dict[str, Any] | None:
        if in_json:
            ext = row.ext
            if not ext or old.column_name not in ext or swap(ext[old.column_name]) == ext[old.column_name]:
                return None
            return {JSON_COLUMN: {**ext, old.column_name: swap(ext[old.column_name])}}
        value = row._mapping[old.column_name]
        return None if swap(value) == value else {old.column_name: swap(value)}

    rewrite_rows(ctx, table, fix)


def _audit_replaced(ctx: ApplyContext, table: Table, field_name: str, where: Any, src: Any, dst: Any) -> None:
    """One audit row per row about to move from ``src`` to ``dst``: a single INSERT ... SELECT.

    No actor (the apply's author is named by the revision, which :func:`stamp_audit_revision` fills in).
    """
    def as_json(value: Any) -> Any:
        param = bindparam(None, value, type_=JsonType)
        return param if ctx.sqlite else cast(param, JsonType)  # SQLite's CAST(.. AS JSON) would make a number

    rows = select(literal(table.name), table.c.id, literal(REPLACE_AUDIT_ACTION), literal(field_name),
                  as_json(src), as_json(dst), null(), bindparam(None, ctx.at, type_=UtcDateTime), null()
                  ).where(where)
    cols = ["entity", "record_id", "action", "field", "old_value", "new_value", "actor_id", "at", "revision_id"]
    ctx.conn.execute(insert(crm_audit).from_select(cols, rows))
    ctx.audited = True


def _move_stage_history(ctx: ApplyContext, entity: str, src: str, dst: str) -> None:
    """Records whose stage the apply moves from ``src`` to ``dst``: their open ``crm_stage_history`` row is
    closed (``left_at``, ``duration_seconds``) and a row for ``dst`` opened, set-based (no actor: the apply)."""
    h = crm_stage_history
    at = bindparam(None, ctx.at, type_=UtcDateTime)
    mine = (h.c.entity == entity) & (h.c.to_stage == src)
    still_in = mine & h.c.left_at.is_(None)
    if ctx.sqlite:  # julianday() days as a float; the small bias keeps 7200 s from truncating to 7199
        seconds: Any = cast((func.julianday(at) - func.julianday(h.c.entered_at)) * 86400 + 0.0005, BigInteger)
    else:
        seconds = cast(func.floor(func.extract("epoch", at - h.c.entered_at)), BigInteger)
    ctx.conn.execute(update(h).where(still_in).values(left_at=at, duration_seconds=seconds))
    just_left = select(h.c.entity, h.c.record_id, h.c.pipeline, literal(src), literal(dst), at).where(
        mine & (h.c.left_at == at))
    ctx.conn.execute(insert(h).from_select(["entity", "record_id", "pipeline", "from_stage", "to_stage",
                                            "entered_at"], just_left))


def stamp_audit_revision(ctx: ApplyContext, revision_id: int) -> None:
    """Name the revision an apply just recorded on the audit rows its data moves wrote."""
    if ctx.audited:
        a = crm_audit
        ctx.conn.execute(update(a).where(a.c.revision_id.is_(None), a.c.action == REPLACE_AUDIT_ACTION,
                                         a.c.at == ctx.at).values(revision_id=revision_id))


def do_change_type(ctx: ApplyContext, change: Change) -> None:
    old, new = ctx.old_field(change), ctx.new_field(change)
    if new.storage == "json":
        return  # JSON values already fit (the plan checked); nothing to alter
    before, after = column_type(old), column_type(new)
    kw: dict[str, Any] = {"type_": after, "existing_type": before}
    if not ctx.sqlite:
        kw["postgresql_using"] = _pg_using(ctx, old, new)
    with ctx.alter(change.entity) as batch:
        batch.alter_column(new.column_name, **kw)
    ctx.ddl_done()


def _pg_using(ctx: ApplyContext, old: Field, new: Field) -> str:
    """``USING`` of a PostgreSQL type change: a cast between related types, else NULL.

    The plan only lets an unrelated type change through when no row has a value.
    """
    target = column_type(new).compile(dialect=ctx.conn.dialect)
    quoted = ctx.conn.dialect.identifier_preparer.quote(new.column_name)
    related = (old.type in TEXTUAL and new.type in TEXTUAL) or (
        old.type in PLAIN_NUMERIC and new.type in PLAIN_NUMERIC)
    return f"{quoted}::{target}" if related or old.type == new.type else "NULL"


def do_purge(ctx: ApplyContext, change: Change) -> None:
    old = ctx.old_field(replace(change, field=None))
    path = Path(change.details["export_path"])
    _export(ctx, change.entity, old, path)
    ctx.exported.append(path)
    if old.storage == "json":
        table = _adhoc(change.entity, Column(JSON_COLUMN, JsonType))
        key = old.column_name
        rewrite_rows(ctx, table, lambda r: {JSON_COLUMN: {k: v for k, v in r.ext.items() if k != key}}
                     if r.ext and key in r.ext else None)
        return
    with ctx.alter(change.entity) as batch:
        for col in field_columns(old):
            batch.drop_column(col.name)
    ctx.ddl_done()


def _export(ctx: ApplyContext, table_name: str, old: Field, path: Path) -> None:
    """Write ``{"id": ..., "<field>": value}`` per row with a value, one JSON object a line."""
    in_json = old.storage == "json"
    cols = [Column(JSON_COLUMN, JsonType)] if in_json else [Column(c.name, c.type) for c in field_columns(old)]
    table = _adhoc(table_name, *cols)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        out = path.open("x", encoding="utf-8")
    except FileExistsError as e:
        raise PlanError(f"purge export file {path} already exists", code="export_exists",
                        hint="move the earlier export away or choose another export folder") from e
    with out:
        for row in ctx.conn.execute(select(table).order_by(table.c.id)):
            record = _export_record(row, old, in_json)
            if record is not None:
                out.write(json.dumps(record, ensure_ascii=False) + "\n")


def _export_record(row: Any, old: Field, in_json: bool) -> dict[str, Any] | None:
    m = row._mapping
    if in_json:
        if not row.ext or row.ext.get(old.column_name) is None:
            return None
        return {"id": row.id, old.name: row.ext[old.column_name]}
    values = {k: to_json_value(old, v) for k, v in m.items() if k != "id"}
    if values.get(old.column_name) is None:
        return None
    return {"id": row.id, old.name: values.pop(old.column_name), **values}


def do_fill_default(ctx: ApplyContext, change: Change) -> None:
    """Rows where a newly required field is empty get its default."""
    new = ctx.new_field(change)
    value = from_json_value(new, change.details["value"])
    if new.storage == "json":
        table = _adhoc(change.entity, Column(JSON_COLUMN, JsonType))

        def fill(row: Any) -> dict[str, Any] | None:
            ext = dict(row.ext or {})
            if ext.get(new.column_name) is not None:
                return None
            ext[new.column_name] = change.details["value"]
            return {JSON_COLUMN: ext}

        rewrite_rows(ctx, table, fill)
        return
    table = _adhoc(change.entity, _value_col(new))
    col = table.c[new.column_name]
    ctx.conn.execute(update(table).where(col.is_(None)).values({new.column_name: value}))


def do_feature_data(ctx: ApplyContext, change: Change) -> None:
    """A plan step's data change: run by the step of that name of the new workspace's plugins."""
    import datetime as dt

    step_name = str(change.details.get("step"))
    try:
        step = features.find_step(ctx.plan.new, step_name)
    except KeyError as e:
        raise PlanError(f"no plan step {step_name!r} among the new configuration's plugins", code="apply_failed",
                        hint="is the plugin that planned this change still enabled?") from e
    step.apply(features.FeatureApplyContext(ctx.conn, ctx.plan.new, ctx.revision_id, dt.datetime.now(dt.UTC)),
               change)


def do_nothing(ctx: ApplyContext, change: Change) -> None:
    """Changes that only touch metadata (retire, unretire, add a JSON field, remove an unused option)."""


#: change kind -> executor, for every kind of :data:`engine.runtime.schema.model.CHANGE_KINDS`
EXECUTORS: dict[str, Callable[[ApplyContext, Change], None]] = {
    "create_table": do_create_table,
    "unretire_entity": do_nothing,
    "drop_index": do_drop_index,
    "rename_column": do_rename,
    "unretire_column": do_nothing,
    "add_column": do_add_column,
    "add_json_field": do_nothing,
    "move_storage": do_move_storage,
    "replace_options": do_replace_option,
    "remove_option": do_nothing,
    "change_type": do_change_type,
    "widen_length": do_change_type,
    "narrow_length": do_change_type,
    "fill_default": do_fill_default,
    "retire_column": do_nothing,
    "retire_entity": do_nothing,
    "purge_column": do_purge,
    "add_index": do_add_index,
    "feature_data": do_feature_data,
}
_missing = [k.name for k in CHANGE_KINDS if k.name not in EXECUTORS] + [k for k in EXECUTORS if k not in KINDS_BY_NAME]
if _missing:  # a change kind without its executor (or the reverse) is an engine bug: fail at import
    raise ImportError(f"change kinds and executors disagree: {_missing}")
