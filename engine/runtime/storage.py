"""Binds a compiled workspace to SQL tables.

One table per entity, named after it, with the standard columns, one column
per ``storage: column`` field and the JSON column ``ext`` holding every
``storage: json`` field.  Above this module, storage is invisible: use
:meth:`Schema.field_expr` for the SQL value of any field (a real column or
a typed extraction from ``ext``), :meth:`Schema.to_db` /
:meth:`Schema.from_db` to move values in and out.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    cast,
    func,
    literal_column,
    type_coerce,
)
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.selectable import FromClause
from sqlalchemy.types import TypeEngine

from engine.dsl.model import JSON_COLUMN, Entity, Field, Workspace
from engine.dsl.search import search_fields
from engine.runtime.crypto import EncryptedText, digest_expr
from engine.runtime.engine_tables import engine_metadata
from engine.runtime.types import DecimalType, JsonType, UtcDateTime

DEFAULT_STRING_LENGTH = 255
_STRING_LENGTHS = {"email": 254, "phone": 40, "url": 2048, "auto_number": 64}
OPTION_LENGTH = 100


def column_type(field: Field) -> TypeEngine:
    """The SQL type of a field stored as a real column (an encrypted field: text holding the sealed value)."""
    if field.encrypted:
        return EncryptedText()
    return clear_column_type(field)


def clear_column_type(field: Field) -> TypeEngine:
    """The SQL type of a field's value in clear (what an encrypted field's column holds once decrypted)."""
    t = field.type
    if t in ("string", "email", "phone", "url", "auto_number"):
        return String(field.max_length or _STRING_LENGTHS.get(t, DEFAULT_STRING_LENGTH))
    if t == "text":
        return Text()
    if t == "integer":
        return BigInteger()
    if t in ("decimal", "money", "percent"):
        return DecimalType(18, field.scale)
    if t == "boolean":
        return Boolean()
    if t == "date":
        return Date()
    if t == "datetime":
        return UtcDateTime()
    if t == "picklist":
        return String(OPTION_LENGTH)
    if t in ("multi_picklist", "json"):
        return JsonType()
    if t in ("reference", "user"):
        return BigInteger()
    raise ValueError(f"field type {t!r} has no column type")


def currency_column(field: Field) -> str:
    """The companion column of a money field holding its currency code."""
    return f"{field.name}_currency"


def _fk_target(field: Field) -> str:
    return "crm_users.id" if field.type == "user" else f"{field.reference}.id"


def field_columns(field: Field) -> list[Column]:
    """The column(s) a ``storage: column`` field needs (money has two)."""
    ctype = column_type(field)
    if field.type in ("reference", "user"):
        ondelete = {"restrict": "RESTRICT", "set_null": "SET NULL", "cascade": "CASCADE"}[field.on_delete]
        cols = [Column(field.column_name, ctype, ForeignKey(_fk_target(field), ondelete=ondelete), nullable=True)]
    else:
        cols = [Column(field.column_name, ctype, nullable=True)]
    if field.type == "money":
        cols.append(Column(currency_column(field), String(3), nullable=True))
    return cols


def standard_columns(entity: Entity) -> list[Column]:
    cols = [
        Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
        Column("version", Integer, nullable=False, default=1),
        Column("created_at", UtcDateTime, nullable=False),
        Column("created_by", BigInteger, ForeignKey("crm_users.id"), nullable=True),
        Column("updated_at", UtcDateTime, nullable=False),
        Column("updated_by", BigInteger, ForeignKey("crm_users.id"), nullable=True),
        Column("owner_id", BigInteger, ForeignKey("crm_users.id"), nullable=True),
        Column("deleted_at", UtcDateTime, nullable=True),
        Column(JSON_COLUMN, JsonType, nullable=True),
    ]
    if entity.parent is not None:
        cols.append(
            Column(
                "parent_id",
                BigInteger,
                ForeignKey(f"{entity.parent.entity}.id", ondelete="CASCADE"),
                nullable=False,
            )
        )
        cols.append(Column("position", Integer, nullable=False, default=0))
    return cols


@dataclass(frozen=True)
class Schema:
    """The SQL side of one compiled workspace, for one dialect."""

    workspace: Workspace
    metadata: MetaData
    tables: Mapping[str, Table]
    dialect: str

    def table(self, entity: str) -> Table:
        return self.tables[entity]

    def field_expr(self, entity: str, field_name: str) -> ColumnElement[Any]:
        """The SQL value of a field, whatever its storage."""
        ent = self.workspace.entities[entity]
        field = ent.fields.get(field_name) or ent.retired[field_name]
        return json_field_expr(self.tables[entity], field, self.dialect) if field.storage == "json" else (
            self.tables[entity].c[field.column_name]
        )


def json_field_expr(table: FromClause, field: Field, dialect: str) -> ColumnElement[Any]:
    """The typed SQL expression of a field stored in the JSON column.

    Index expressions are built from the same function, so a filter or sort
    written with it can use the index.
    """
    col = table.c[JSON_COLUMN]
    key = field.column_name
    kind = field.type
    if dialect == "postgresql":
        text = col.op("->>")(literal_column(f"'{key}'"))
        if kind in ("integer",):
            return type_coerce(cast(text, BigInteger), BigInteger())
        if kind in ("decimal", "money", "percent"):
            return type_coerce(cast(text, DecimalType(18, field.scale).impl), DecimalType(18, field.scale))
        if kind == "boolean":
            return cast(text, Boolean)
        if kind == "date":
            return type_coerce(func.crm_text_to_date(text), Date())
        if kind == "datetime":
            return type_coerce(func.crm_text_to_timestamptz(text), UtcDateTime())
        if kind in ("multi_picklist", "json"):
            return type_coerce(col.op("->")(literal_column(f"'{key}'")), JsonType())
        if kind in ("reference", "user"):
            return type_coerce(cast(text, BigInteger), BigInteger())
        return type_coerce(text, String())
    # The path is a literal, not a bound parameter: SQLite matches an expression
    # index only against the identical expression text (``json_extract(ext, '$.key')``).
    # ``key`` is a validated field name, so quoting it inline is safe.
    path: Any = literal_column(f"'$.{key}'")
    extracted = func.json_extract(col, path)
    if kind in ("multi_picklist", "json"):
        return type_coerce(func.json_extract(col, path), JsonType())
    return type_coerce(extracted, _json_read_type(field))


def _json_read_type(field: Field) -> TypeEngine:
    if field.type in ("decimal", "money", "percent"):
        return DecimalType(18, field.scale)
    if field.type in ("reference", "user", "integer"):
        return BigInteger()
    if field.type == "boolean":
        return Boolean()
    if field.type == "date":
        return Date()
    if field.type == "datetime":
        return UtcDateTime()
    return String()


#: PostgreSQL functions the JSON expression indexes need (IMMUTABLE wrappers of casts).
PG_FUNCTIONS = (
    "CREATE OR REPLACE FUNCTION crm_text_to_date(t text) RETURNS date "
    "LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT t::date $$",
    "CREATE OR REPLACE FUNCTION crm_text_to_timestamptz(t text) RETURNS timestamptz "
    "LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT (t::timestamp AT TIME ZONE 'UTC') $$",
)


def to_json_value(field: Field, value: Any) -> Any:
    """The JSON form of a Python field value (what ``ext`` stores)."""
    if value is None:
        return None
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        return value.isoformat(sep=" ", timespec="microseconds")
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def from_json_value(field: Field, value: Any) -> Any:
    """The Python value of a field read from ``ext``."""
    if value is None:
        return None
    t = field.type
    if t in ("decimal", "money", "percent"):
        return Decimal(str(value)).quantize(Decimal(1).scaleb(-field.scale))
    if t == "date":
        return dt.date.fromisoformat(value)
    if t == "datetime":
        return dt.datetime.fromisoformat(value).replace(tzinfo=dt.UTC)
    return value


def _index_name(table: str, suffix: str) -> str:
    name = f"ix_{table}_{suffix}"
    if len(name) > 60:  # PostgreSQL truncates at 63; keep names unique and stable
        import hashlib

        name = name[:50] + "_" + hashlib.sha1(name.encode()).hexdigest()[:8]
    return name


def entity_indexes(table: Table, entity: Entity, dialect: str) -> list[Index]:
    """Indexes that serve the usual queries: owner, references, declared
    indexes — each declared index also ends in the default sort column so a
    filtered list in default order is one index range scan."""
    order = _sort_columns(table, entity, dialect)
    out = [
        Index(_index_name(table.name, "owner"), table.c.owner_id, *order),
        Index(_index_name(table.name, "created"), *order),
    ]
    if entity.parent is not None:
        out.append(Index(_index_name(table.name, "parent"), table.c.parent_id, table.c.position))
    for field in entity.fields.values():
        if not field.stored:
            continue
        expr = json_field_expr(table, field, dialect) if field.storage == "json" else table.c[field.column_name]
        if field.encrypted:  # equality lookups by blind index (see engine.runtime.crypto)
            out.append(Index(_index_name(table.name, f"{field.name}_bidx"), digest_expr(expr)))
        elif field.unique:
            out.append(_live_unique(_index_name(table.name, f"{field.name}_uq"), table, expr))
        elif field.type in ("reference", "user"):
            out.append(Index(_index_name(table.name, field.name), expr))
        elif field.index:
            out.append(Index(_index_name(table.name, field.name), expr, *order))
    if dialect == "postgresql" and search_fields(entity):
        out += [search_index(table, entity, field, dialect) for field in search_fields(entity)]
        out.append(bigram_index(table, entity))
    for spec in entity.indexes:
        cols = [_index_part(table, entity, part, dialect) for part in spec.fields]
        name = _index_name(table.name, spec.name)
        out.append(_live_unique(name, table, *cols) if spec.unique else Index(name, *cols))
    return out


def search_text(table: FromClause, field: Field, dialect: str) -> ColumnElement[Any]:
    """The text search reads of a searchable field on PostgreSQL: ``lower(<value> COLLATE "C")`` -- ASCII
    case folding, as the expression language's ``lower()`` -- the expression its trigram index holds, so
    ``LIKE '%acm%'`` and ``icontains()`` written with it use the index."""
    value = json_field_expr(table, field, dialect) if field.storage == "json" else table.c[field.column_name]
    return func.lower(value.collate("C"))


def search_index(table: Table, entity: Entity, field: Field, dialect: str) -> Index:
    """The pg_trgm GIN index of one searchable field (substring, ``LIKE`` and similarity lookups)."""
    label = f"{field.name}_trgm"
    return Index(_index_name(table.name, label), search_text(table, field, dialect).label(label),
                 postgresql_using="gin", postgresql_ops={label: "gin_trgm_ops"})


#: PostgreSQL: the function of :func:`bigram_index` (created with the index, see docs/search.md): every
#: two-character piece of each text, repeats kept (GIN stores each key once).  Its index holds what it
#: returns, so a new body needs a new name (and the plan then rebuilds the index).  PL/pgSQL: 13 us for
#: four fields of a lead here, against 22 us for the same in SQL with unnest() and generate_series()
BIGRAMS = "crm_bigrams"
BIGRAMS_SQL = f"""CREATE OR REPLACE FUNCTION {BIGRAMS}(VARIADIC parts text[]) RETURNS text[]
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
  pieces text[] := '{{}}';
  part text;
BEGIN
  FOREACH part IN ARRAY parts LOOP
    IF part IS NOT NULL THEN
      FOR i IN 1 .. char_length(part) - 1 LOOP
        pieces := pieces || substr(part, i, 2);
      END LOOP;
    END IF;
  END LOOP;
  RETURN pieces;
END
$$"""


def bigrams(table: FromClause, entity: Entity) -> ColumnElement[Any]:
    """PostgreSQL: the two-character pieces of the entity's searchable fields (as :func:`search_text` reads
    them, repeats kept) -- what its bigram index holds."""
    fields = sorted(search_fields(entity), key=lambda f: f.name)  # a stored revision may list them otherwise
    return getattr(func, BIGRAMS)(*(search_text(table, f, "postgresql") for f in fields))


def bigram_index(table: Table, entity: Entity) -> Index:
    """PostgreSQL: a GIN index of :func:`bigrams`, for texts of two characters (``精密``), which have no
    trigram for the pg_trgm indexes to look up."""
    return Index(_index_name(table.name, "search_bigrams"), bigrams(table, entity).label("search_bigrams"),
                 postgresql_using="gin")


def _sort_columns(table: Table, entity: Entity, dialect: str) -> list[Any]:
    """The default list order as index columns, ending in ``id`` (the keyset tie-break).

    Lists run ``ORDER BY <default sort>, id``; an index that ends in exactly
    these columns lets both databases read a filtered page straight from the
    index (PostgreSQL cannot use SQLite's implicit rowid for the tie-break).
    Same-direction sorts are indexed ascending (scanned backwards for DESC).
    """
    parts = [p for p in entity.default_sort if p.lstrip("-") != "id"]
    mixed = len({p.startswith("-") for p in parts}) > 1
    cols = [_index_part(table, entity, p if mixed else p.lstrip("-"), dialect) for p in parts]
    last_desc = bool(parts) and parts[-1].startswith("-")
    cols.append(table.c.id.desc() if mixed and last_desc else table.c.id)
    return cols


def _live_unique(name: str, table: Table, *exprs: Any) -> Index:
    """A unique index over live records only: a soft-deleted record frees its value (partial index)."""
    live = table.c.deleted_at.is_(None)
    return Index(name, *exprs, unique=True, sqlite_where=live, postgresql_where=live)


def _index_part(table: Table, entity: Entity, part: str, dialect: str) -> Any:
    desc = part.startswith("-")
    name = part.lstrip("-")
    field = entity.fields.get(name)
    if field is None:
        expr: Any = table.c[name]
    elif field.storage == "json":
        expr = json_field_expr(table, field, dialect)
    else:
        expr = table.c[field.column_name]
    return expr.desc() if desc else expr


def build_schema(workspace: Workspace, dialect: str) -> Schema:
    """SQLAlchemy tables for every entity of ``workspace`` (plus the engine tables).

    Pure: no database connection.  A new MetaData each time, so two
    revisions can be bound side by side.
    """
    metadata = MetaData()
    for t in engine_metadata.tables.values():
        t.to_metadata(metadata)
    tables: dict[str, Table] = {}
    # parents before children so foreign keys resolve in creation order
    for entity in sorted(workspace.entities.values(), key=lambda e: e.parent is not None):
        tables[entity.name] = entity_table(metadata, entity)
    for entity in workspace.entities.values():
        entity_indexes(tables[entity.name], entity, dialect)  # an Index attaches itself to its table
    return Schema(workspace, metadata, tables, dialect)


def entity_table(metadata: MetaData, entity: Entity) -> Table:
    """``entity``'s table on ``metadata``, without indexes: the standard columns and a column per stored
    ``storage: column`` field, retired ones included.  Its foreign keys name their tables (``crm_users``,
    referenced entities), which resolve once those are on ``metadata`` too."""
    cols = standard_columns(entity)
    for field in (*entity.fields.values(), *entity.retired.values()):
        if field.stored and field.storage == "column":
            cols.extend(field_columns(field))
    return Table(entity.table_name, metadata, *cols)
