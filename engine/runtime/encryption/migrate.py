"""``encrypted:`` turned on or off for a field with data: the plan step that seals or opens every value.

``crm plan`` shows one change per field (``~ encrypt the values of lead.phone (safe, 1,204 rows)``);
``crm apply`` runs it in the apply's transaction, after the schema changes: on PostgreSQL the column
becomes ``text`` first (a sealed value is longer than the field's clear length), then every value is
sealed (or opened), and so are the field's values in the audit journal; turning encryption off opens
them, then gives the column its clear type back.  Nothing is lost: the values are rewritten in place,
and a value already in the wanted form is left as it is (an interrupted apply rolls back whole).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from engine.dsl.model import Entity, Field
from engine.runtime import crypto
from engine.runtime.encryption.sealing import rewrite_audit, rewrite_column
from engine.runtime.schema.model import Change
from engine.runtime.storage import clear_column_type

STEP = "encryption"


class EncryptionPlanStep:
    """Plans and applies the moves of stored values into and out of encryption."""

    name = STEP

    def plan(self, pctx: Any) -> list[Change]:
        if pctx.old is None:
            return []  # an empty database: new tables are created with the sealing column type
        out = []
        for entity in pctx.new.entities.values():
            before = pctx.old.entities.get(entity.name)
            if before is None:
                continue
            for f in entity.fields.values():
                old = _stored_as(before, f)
                if old is None or old.encrypted == f.encrypted or f.storage != "column" or old.storage != "column":
                    continue
                out.append(self._change(pctx, entity, f))
        return out

    def _change(self, pctx: Any, entity: Entity, f: Field) -> Change:
        rows = None
        if pctx.holds(entity.name, [f.name]):
            t = pctx.new_schema.tables[entity.name]
            col = t.c[f.column_name]
            rows = int(pctx.conn.execute(select(func.count()).select_from(t).where(col.is_not(None))).scalar_one())
        verb = "encrypt" if f.encrypted else "decrypt"
        note = ("sealed with the current key of CRM_ENCRYPTION_KEYS, audit values too" if f.encrypted
                else "stored in clear again, audit values too")
        return Change("feature_data", entity.name, f"{verb} the values of {entity.name}.{f.name}", field=f.name,
                      rows=rows, note=note, details={"step": STEP, "entity": entity.name, "field": f.name,
                                                     "column": f.column_name, "encrypt": f.encrypted})

    def apply(self, actx: Any, change: Change) -> None:
        d = change.details
        conn = actx.conn
        field = actx.workspace.entities[d["entity"]].fields[d["field"]]
        ring = crypto.keyring()
        pg = conn.dialect.name == "postgresql"
        if d["encrypt"]:
            if pg:
                _alter_type(conn, d["entity"], d["column"], "TEXT")
            else:  # freed and rewritten cells are zeroed, so the clear values do not linger in the file
                conn.exec_driver_sql("PRAGMA secure_delete = ON")

            def fn(v: str) -> str | None:
                return None if crypto.key_id_of(v) else ring.seal(v)
        else:
            def fn(v: str) -> str | None:
                return ring.open(v) if crypto.key_id_of(v) else None
        actx.done[f"encryption/{d['entity']}.{d['field']}"] = rewrite_column(conn, d["entity"], d["column"], fn)
        rewrite_audit(conn, d["entity"], [d["field"]], fn, page=0)
        if not d["encrypt"] and pg:
            _alter_type(conn, d["entity"], d["column"], str(clear_column_type(field).compile(dialect=conn.dialect)))


def _stored_as(before: Entity, f: Field) -> Field | None:
    """The field as the active revision stored it (under its former name when it is being renamed)."""
    old = before.fields.get(f.name)
    if old is None and f.renamed_from:
        old = before.fields.get(f.renamed_from)
    return old


def _alter_type(conn: Any, table: str, column: str, sql_type: str) -> None:
    quote = conn.dialect.identifier_preparer.quote
    conn.exec_driver_sql(f"ALTER TABLE {quote(table)} ALTER COLUMN {quote(column)} TYPE {sql_type}")
