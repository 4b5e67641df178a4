"""Durable domain events: ``crm_outbox`` rows written in the transaction of the change that caused them.

When a unit of work is about to commit, every event some durable handler
wants (``crm_event_handlers``) becomes one outbox row -- in the same
transaction, so a committed change always has its event and a rolled-back
one never does.  ``crm worker`` dispatches each pending row: one job per
interested handler (``crm.event``, idempotent by ``event:<row>:<handler>``)
and the row marked dispatched, again in one transaction.  The job queue
then runs each handler once (:mod:`engine.runtime.jobs.queue`).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, select, update

from engine.runtime import crypto
from engine.runtime.audit import json_form
from engine.runtime.engine_tables import crm_outbox
from engine.runtime.jobs import queue
from engine.runtime.records.steps import DomainEvent

CHANNEL = "event"
EVENT_JOB = "crm.event"


def event_key(event: DomainEvent) -> str:
    """``lead.created``, ``quote.updated``... -- what handlers' ``events`` patterns match."""
    return f"{event.entity}.{event.kind}"


def wants(handler: Any, key: str) -> bool:
    """Whether ``handler`` listens to events named ``key`` (its patterns: ``lead.created``, ``*.updated``)."""
    return any(fnmatch.fnmatchcase(key, pattern) for pattern in handler.events)


def event_payload(event: DomainEvent, sealed: frozenset[str] | None = None) -> dict[str, Any]:
    """The JSON form of an event as it is stored and handed to a handler; the values of ``sealed`` fields
    (encrypted ones) stay sealed in the stored form (:func:`opened` before a handler sees them)."""
    changes = {k: [json_form(o), json_form(n)] for k, (o, n) in event.changes.items()}
    record = json_form(dict(event.record)) if event.record is not None else None
    if sealed:
        changes = crypto.seal_values(changes, sealed)
        record = crypto.seal_values(record, sealed) if record is not None else None
    return {"kind": event.kind, "entity": event.entity, "record_id": event.record_id, "actor_id": event.actor_id,
            "at": event.at.isoformat(), "key": event_key(event), "changes": changes, "record": record}


def opened(payload: Mapping[str, Any], sealed: Mapping[str, frozenset[str]]) -> dict[str, Any]:
    """A stored event with the sealed values of its entity's encrypted fields opened."""
    names = sealed.get(str(payload.get("entity")))
    if not names:
        return dict(payload)
    out = dict(payload)
    out["changes"] = crypto.open_values(payload.get("changes") or {}, names)
    if payload.get("record") is not None:
        out["record"] = crypto.open_values(payload["record"], names)
    return out


def store(conn: Connection, events: Iterable[DomainEvent], handlers: Sequence[Any], *, now: Any,
          sealed: Mapping[str, frozenset[str]] | None = None) -> int:
    """Write the events some handler wants as outbox rows (in the caller's transaction); how many.
    ``sealed``: entity -> encrypted fields, whose values are stored sealed."""
    if not handlers:
        return 0
    sealed = sealed or {}
    rows = [{"channel": CHANNEL, "payload": event_payload(e, sealed.get(e.entity)), "status": "pending",
             "attempts": 0,
             "created_at": now} for e in events if any(wants(h, event_key(e)) for h in handlers)]
    if rows:
        conn.execute(crm_outbox.insert(), rows)
    return len(rows)


def dispatch(conn: Connection, handlers: Sequence[Any], *, now: Any, limit: int = 200) -> int:
    """Turn pending outbox rows into one ``crm.event`` job per interested handler; how many rows."""
    o = crm_outbox
    pick = select(o.c.id, o.c.payload).where(o.c.status == "pending").order_by(o.c.id).limit(limit)
    if conn.dialect.name == "postgresql":
        pick = pick.with_for_update(skip_locked=True)
    rows = conn.execute(pick).all()
    for row in rows:
        payload: Mapping[str, Any] = row.payload or {}
        for handler in handlers:
            if wants(handler, str(payload.get("key", ""))):
                queue.enqueue(conn, EVENT_JOB, {"handler": handler.name, "outbox_id": row.id, "event": payload},
                              now=now, dedupe_key=f"event:{row.id}:{handler.name}")
    if rows:
        conn.execute(update(o).where(o.c.id.in_([r.id for r in rows])).values(status="dispatched", sent_at=now))
    return len(rows)
