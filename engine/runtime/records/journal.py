"""The audit journal of record writes: the one encoder of ``crm_audit`` rows.

Every write path -- create, update, delete, restore, handover, ``create_many``
and ``update_many`` -- hands its entries to :func:`write`, which encodes
them one way (values in their JSON form: Decimal as text, dates in ISO
format, the same on every database) and inserts them in one raw
executemany (:mod:`engine.runtime.rawsql`).  An entry is ``(entity,
record_id, action, field, old, new)``; who, when and under which revision
are the unit's.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection

from engine.runtime import crypto
from engine.runtime.audit import json_form
from engine.runtime.engine_tables import crm_audit
from engine.runtime.rawsql import Processor, RawInsert, raw_insert
from engine.runtime.records.rows import LINE_META

if TYPE_CHECKING:
    from engine.runtime.records.write_plan import EntityPlan
    from engine.runtime.runtime import UnitOfWork

#: crm_audit columns an entry fills, in this order (``id`` is the database's)
AUDIT_COLUMNS = ("entity", "record_id", "action", "field", "old_value", "new_value", "actor_id", "at",
                 "revision_id")
Entry = tuple[str, int, str, "str | None", Any, Any]
_NEW = AUDIT_COLUMNS.index("new_value")


def changed(entity: str, record_id: int, action: str, changes: Mapping[str, tuple[Any, Any]]) -> list[Entry]:
    """One entry per changed field (``changes``: field -> (old, new))."""
    return [(entity, record_id, action, name, old, new) for name, (old, new) in changes.items()]


def event(entity: str, record_id: int, action: str, snapshot: Mapping[str, Any] | None = None) -> Entry:
    """One entry for a whole-record event (create with its snapshot, delete, restore)."""
    return (entity, record_id, action, None, None, snapshot)


def write(uow: UnitOfWork, at: Any, entries: Iterable[Entry]) -> None:
    """Insert ``entries`` stamped with the unit's actor, ``at`` and the unit's revision (one executemany)."""
    ins, rows = encoded(uow, at, entries)
    ins.run(uow.conn, rows)


def encoded(uow: UnitOfWork, at: Any, entries: Iterable[Entry]) -> tuple[RawInsert, list[tuple[Any, ...]]]:
    """The raw insert of crm_audit and ``entries`` as its bound rows (what :func:`write` runs)."""
    conn = uow.conn
    ins = raw_insert(uow.state, conn, crm_audit, AUDIT_COLUMNS)
    encode = uow.state.memo("audit_json", conn.dialect.name, lambda: _json_encoder(conn, ins.processors[_NEW]))
    at_bound = ins.process("at", at)
    actor, revision = uow.actor.user_id, uow.state.revision_id
    sealed = uow.state.memo("audit_sealed", "fields", lambda: crypto.encrypted_fields(uow.workspace))
    if sealed:
        entries = (seal_entry(e, sealed.get(e[0])) for e in entries)
    return ins, [(e[0], e[1], e[2], e[3], encode(e[4]), encode(e[5]), actor, at_bound, revision) for e in entries]


def seal_entry(entry: Entry, fields: frozenset[str] | None) -> Entry:
    """``entry`` with the values of encrypted ``fields`` sealed (the audit never holds them in clear)."""
    if not fields:
        return entry
    entity, rid, action, name, old, new = entry
    if name is not None:
        if name in fields:
            return (entity, rid, action, name, _seal(old), _seal(new))
        return entry
    return (entity, rid, action, name, _seal_keys(old, fields), _seal_keys(new, fields))


def _seal(value: Any) -> Any:
    return crypto.keyring().seal(str(value)) if value is not None else None


def _seal_keys(snapshot: Any, fields: frozenset[str]) -> Any:
    if not isinstance(snapshot, Mapping) or fields.isdisjoint(snapshot):
        return snapshot
    return {k: _seal(v) if k in fields else v for k, v in snapshot.items()}


def snapshot_builder(plan: EntityPlan) -> Callable[[Mapping[str, Any]], dict[str, Any]]:
    """record -> the snapshot a ``create`` entry holds (fields, currencies, owner, lines without ids)."""
    keys = plan.snapshot_keys
    lines = tuple(plan.lines)

    def snapshot(r: Mapping[str, Any]) -> dict[str, Any]:
        out = {k: r.get(k) for k in keys}
        for name in lines:
            out[name] = [{k: v for k, v in line.items() if k not in LINE_META} for line in r.get(name) or ()]
        return out

    return snapshot


def _json_default(value: Any) -> Any:
    return json_form(value)


#: the journal's JSON text: the same as ``json.dumps(json_form(value))``, in one C-backed pass
_AUDIT_JSON = json.JSONEncoder(default=_json_default, check_circular=False)


def _json_encoder(conn: Connection, proc: Processor) -> Callable[[Any], Any]:
    """value -> the bound form of a crm_audit JSON column on ``conn``'s driver."""
    name = conn.dialect.name
    if name == "sqlite" and conn.dialect._json_serializer is None:  # type: ignore[attr-defined]
        return _AUDIT_JSON.encode
    if name == "postgresql" and conn.dialect.driver == "psycopg":
        from psycopg.types.json import Jsonb

        encode = _AUDIT_JSON.encode
        return lambda value: Jsonb(value, dumps=encode)
    assert proc is not None
    return lambda value: proc(json_form(value))
