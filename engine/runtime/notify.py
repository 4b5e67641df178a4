"""Notifications (``crm_notifications``): what a user is told -- an assignment, a claim or return by a pool
admin, a warning before a record is recycled, a recycle, an approval waiting.

A notification is written in the unit of work of the change that causes it (it commits with the change,
or not at all); ``dedupe_key`` makes a retried job or a repeated run notify once.  Texts are kept in
English and Chinese; readers get the one of their locale.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, func, select, update

from engine.errors import BadRequest, NotFound
from engine.runtime import rawsql
from engine.runtime.engine_tables import crm_notifications

if TYPE_CHECKING:
    from engine.runtime.runtime import UnitOfWork

Text = Mapping[str, str]
MAX_PAGE = 200



@dataclass(frozen=True, slots=True)
class Notification:
    id: int
    user_id: int
    kind: str
    entity: str | None
    record_id: int | None
    text: str
    text_en: str
    text_zh: str | None
    data: Mapping[str, Any] | None
    created_at: dt.datetime
    read_at: dt.datetime | None

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "entity": self.entity, "record_id": self.record_id,
                "text": self.text, "text_en": self.text_en, "text_zh": self.text_zh, "data": self.data,
                "created_at": self.created_at, "read_at": self.read_at}


def send(uow: UnitOfWork, user_id: int | None, kind: str, text: Text, *, entity: str | None = None,
         record_id: int | None = None, data: Mapping[str, Any] | None = None,
         dedupe_key: str | None = None) -> bool:
    """Notify ``user_id`` in the unit's transaction; False when nothing was written (no user, or a
    notification with ``dedupe_key`` exists already)."""
    if user_id is None:
        return False
    uow.require_writable()
    en = text.get("en") or text.get("zh") or kind
    values = {"user_id": user_id, "kind": kind, "entity": entity, "record_id": record_id, "text_en": en,
              "text_zh": text.get("zh"), "data": dict(data) if data else None, "created_at": uow.clock.now(),
              "dedupe_key": dedupe_key}
    if dedupe_key is None:
        rawsql.insert_one(uow.state, uow.conn, crm_notifications, values)
        return True
    return rawsql.insert_one_new(uow.state, uow.conn, crm_notifications, values, "dedupe_key") is not None


def _row(row: Any, locale: str) -> Notification:
    text = (row.text_zh if locale.startswith("zh") and row.text_zh else row.text_en)
    return Notification(row.id, row.user_id, row.kind, row.entity, row.record_id, text, row.text_en, row.text_zh,
                        row.data, row.created_at, row.read_at)


def list_for(conn: Connection, user_id: int, *, unread: bool = False, limit: int = 50, before: int | None = None,
             locale: str = "en") -> list[Notification]:
    """The user's notifications, newest first (``before``: ids below this one, for paging)."""
    n = crm_notifications
    stmt = select(n).where(n.c.user_id == user_id)
    if unread:
        stmt = stmt.where(n.c.read_at.is_(None))
    if before is not None:
        stmt = stmt.where(n.c.id < before)
    stmt = stmt.order_by(n.c.id.desc()).limit(max(1, min(limit, MAX_PAGE)))
    return [_row(r, locale) for r in conn.execute(stmt)]


def unread_count(conn: Connection, user_id: int) -> int:
    n = crm_notifications
    return int(conn.execute(select(func.count()).select_from(n).where(
        n.c.user_id == user_id, n.c.read_at.is_(None))).scalar_one())


def mark_read(uow: UnitOfWork, ids: Sequence[int] | None = None) -> int:
    """Mark the actor's notifications read (``ids`` None: all of them); how many changed.

    An id that is not one of the actor's notifications is NotFound (nobody marks another's)."""
    uow.require_writable()
    uid = uow.actor.user_id
    if uid is None:
        raise BadRequest("the system actor has no notifications", code="bad_request")
    n = crm_notifications
    where = [n.c.user_id == uid, n.c.read_at.is_(None)]
    if ids is not None:
        if not all(type(i) is int for i in ids):
            raise BadRequest("ids must be a list of whole numbers", code="bad_request", details={"ids": list(ids)})
        mine = {r.id for r in uow.conn.execute(select(n.c.id).where(n.c.user_id == uid, n.c.id.in_(list(ids))))}
        missing = sorted(set(ids) - mine)
        if missing:
            raise NotFound(f"no notification {missing[0]} of yours", code="not_found", details={"ids": missing})
        where.append(n.c.id.in_(list(ids)))
    return int(uow.conn.execute(update(n).where(*where).values(read_at=uow.clock.now())).rowcount or 0)
