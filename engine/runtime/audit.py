"""Field-level audit trail in ``crm_audit``: reading a record's history, and the JSON form of values.

One row per changed field on update (``action="update"``, ``field``, old and
new value), one row per record on create (``field`` None, ``new_value`` the
whole record), delete, restore and owner handover.  Values are stored in
their JSON form (Decimal as a string, dates in ISO format) so the trail reads
the same on every database.  Rows are only ever inserted, by the one
encoder of record writes (:mod:`engine.runtime.records.journal`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, select

from engine.runtime.engine_tables import crm_audit, crm_users


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One row of a record's history."""

    id: int
    action: str
    field: str | None
    old: Any
    new: Any
    actor_id: int | None
    actor: str | None
    at: dt.datetime
    revision_id: int | None

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "action": self.action, "field": self.field, "old": self.old, "new": self.new,
                "actor_id": self.actor_id, "actor": self.actor, "at": self.at, "revision_id": self.revision_id}


_PLAIN = frozenset({type(None), bool, int, float, str})


def json_form(value: Any) -> Any:
    """The JSON-ready form of a field value, as the audit trail stores it."""
    kind = type(value)
    if kind in _PLAIN:
        return value
    if kind is Decimal:
        return str(value)
    if isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): json_form(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_form(v) for v in value]
    return str(value)


def history(conn: Connection, entity: str, record_id: int, *,
            hidden: Iterable[str] = (), renames: Mapping[str, str] | None = None,
            encrypted: Iterable[str] = ()) -> list[AuditEntry]:
    """Every audit entry of one record, oldest first; entries of ``hidden`` fields are left out
    and hidden keys are removed from whole-record snapshots.  ``renames`` (former field name ->
    current name) shows entries written before a rename under the field's current name."""
    hidden_set = frozenset(hidden)
    sealed = frozenset(encrypted) - hidden_set
    renamed = dict(renames or {})
    a, u = crm_audit, crm_users
    stmt = (select(a, u.c.username).outerjoin(u, u.c.id == a.c.actor_id)
            .where(a.c.entity == entity, a.c.record_id == record_id).order_by(a.c.id))
    out = []
    for r in conn.execute(stmt):
        name = renamed.get(r.field, r.field) if renamed and r.field is not None else r.field
        if name in hidden_set:
            continue
        old, new = r.old_value, r.new_value
        if renamed and r.field is None:
            old, new = _renamed_keys(old, renamed), _renamed_keys(new, renamed)
        if isinstance(new, dict) and r.field is None and hidden_set:
            new = {k: v for k, v in new.items() if k not in hidden_set}
        if sealed:  # encrypted fields' values are sealed in the journal: opened only once hidden ones are gone
            old, new = _opened(old, name, sealed), _opened(new, name, sealed)
        out.append(AuditEntry(r.id, r.action, name, old, new, r.actor_id, r.username, r.at, r.revision_id))
    return out


def _opened(value: Any, name: str | None, sealed: frozenset[str]) -> Any:
    """An audit value with the sealed values of encrypted fields opened (``name``: the entry's field, None
    for a whole-record snapshot)."""
    from engine.runtime import crypto

    if name is not None:
        return crypto.keyring().open(value) if name in sealed and isinstance(value, str) else value
    if isinstance(value, dict) and not sealed.isdisjoint(value):
        ring = crypto.keyring()
        return {k: ring.open(v) if k in sealed and isinstance(v, str) else v for k, v in value.items()}
    return value


def _renamed_keys(value: Any, renamed: Mapping[str, str]) -> Any:
    """A whole-record snapshot with former field names replaced by current ones."""
    if not isinstance(value, dict):
        return value
    return {renamed.get(k, k): v for k, v in value.items()}
