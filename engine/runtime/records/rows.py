"""Moving records between SQL rows and plain dicts; storage stays invisible above this module.

A record dict has the standard columns, then every field by *name*
(references hold the target id under the field name, not ``<field>_id``),
money fields followed by ``<field>_currency``.  Fields stored in the JSON
column are read and written through :func:`engine.runtime.storage.to_json_value`
/ :func:`~engine.runtime.storage.from_json_value`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from sqlalchemy import Table

from engine.dsl.model import JSON_COLUMN, STANDARD_COLUMNS, Entity, Field
from engine.runtime.storage import currency_column, from_json_value, to_json_value

#: keys of a lines row that are bookkeeping, not data: a client may send them back unchanged (ignored on
#: write), and the audit snapshot leaves them out
LINE_META = frozenset({"id", "version", "parent_id", "position", "created_at", "created_by", "updated_at",
                       "updated_by", "owner_id", "deleted_at"})

Getter = Callable[[Mapping[Any, Any]], Any]


def make_readers(entity: Entity) -> tuple[tuple[str, Getter], ...]:
    """(record key, getter from a row mapping) for every key of the entity's record dicts."""
    out: list[tuple[str, Getter]] = [(c, _column(c)) for c in STANDARD_COLUMNS]
    if entity.parent is not None:
        out += [("parent_id", _column("parent_id")), ("position", _column("position"))]
    for f in entity.fields.values():
        if not f.stored:
            continue
        json = f.storage == "json"
        out.append((f.name, _json_getter(f) if json else _column(f.column_name)))
        if f.type == "money":
            key = currency_column(f)
            out.append((key, _json_raw(key) if json else _column(key)))
    return tuple(out)


def _column(name: str) -> Getter:
    return lambda m: m[name]


def _json_getter(field: Field) -> Getter:
    key = field.column_name

    def get(m: Mapping[Any, Any]) -> Any:
        ext = m[JSON_COLUMN]
        return from_json_value(field, ext.get(key)) if ext else None

    return get


def _json_raw(key: str) -> Getter:
    def get(m: Mapping[Any, Any]) -> Any:
        ext = m[JSON_COLUMN]
        return ext.get(key) if ext else None

    return get


def read(readers: Iterable[tuple[str, Getter]], mapping: Mapping[Any, Any]) -> dict[str, Any]:
    """The record dict of one row (``mapping`` is ``Row._mapping``)."""
    return {key: get(mapping) for key, get in readers}


def columns_for(entity: Entity, table: Table, keys: Iterable[str] | None) -> list[Any]:
    """The table columns needed to read ``keys`` (all keys when None); always id and version."""
    if keys is None:
        return [c for c in table.c]
    names = {"id", "version", "owner_id"}
    for key in keys:
        f = entity.fields.get(key) or _money_of(entity, key)
        if f is None:
            names.add(key)
        elif f.storage == "json":
            names.add(JSON_COLUMN)
        else:
            names.add(f.column_name)
            if f.type == "money":
                names.add(currency_column(f))
    return [c for c in table.c if c.name in names]


def _money_of(entity: Entity, key: str) -> Field | None:
    if key.endswith("_currency"):
        f = entity.fields.get(key[: -len("_currency")])
        if f is not None and f.type == "money":
            return f
    return None


def storage_map(entity: Entity) -> dict[str, tuple[bool, str, Field | None]]:
    """record key -> (stored in the JSON column?, column name or JSON key, field if JSON-converted)."""
    out: dict[str, tuple[bool, str, Field | None]] = {c: (False, c, None) for c in STANDARD_COLUMNS}
    if entity.parent is not None:
        out.update({"parent_id": (False, "parent_id", None), "position": (False, "position", None)})
    for f in entity.fields.values():
        if not f.stored:
            continue
        json = f.storage == "json"
        out[f.name] = (json, f.column_name, f if json else None)
        if f.type == "money":
            key = currency_column(f)
            out[key] = (json, key, None)
    return out


def split_columns(storage: Mapping[str, tuple[bool, str, Field | None]],
                  values: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split record values into (SQL column values, JSON-column values) by storage; other keys are skipped."""
    cols: dict[str, Any] = {}
    ext: dict[str, Any] = {}
    for key, value in values.items():
        spec = storage.get(key)
        if spec is None:
            continue
        in_json, name, field = spec
        if in_json:
            ext[name] = to_json_value(field, value) if field is not None else value
        else:
            cols[name] = value
    return cols, ext
