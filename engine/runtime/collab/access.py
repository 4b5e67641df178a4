"""Who may see and touch what hangs off a record: exactly who may read (or update) the record itself.

Every check goes through the record service (row scope, the record's existence, deletion), so a record
the caller cannot read is NotFound -- and so are its files, comments and timeline.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import Select, Table

from engine.errors import NotFound, PermissionDenied
from engine.runtime.context import Actor
from engine.runtime.security import Guard

if TYPE_CHECKING:
    from engine.runtime.runtime import UnitOfWork


def readable(uow: UnitOfWork, entity: str, record_id: int) -> dict[str, Any]:
    """The record (id, version, owner) when the unit's actor may read it; NotFound otherwise."""
    if entity not in uow.state.plans or uow.state.plan(entity).is_child:
        uow.guard.access(str(entity))  # an unknown entity: NotFound with a hint
        raise NotFound(f"there is no {entity} record {record_id}", code="not_found")
    return dict(uow.records.get(entity, record_id, fields=["owner_id"]))


def attached_row(uow: UnitOfWork, stmt: Select[Any], table: Table, entity: str, record_id: int, item_id: int,
                 noun: str) -> Any:
    """The row ``item_id`` of ``table`` (a file, a comment: read with ``stmt``) on record ``record_id`` of
    ``entity``; NotFound when there is none -- or it hangs off another record.  Read access is the caller's
    check (:func:`readable`)."""
    row = uow.conn.execute(stmt.where(table.c.id == item_id, table.c.entity == entity,
                                      table.c.record_id == record_id)).first()
    if row is None:
        raise NotFound(f"there is no {noun} {item_id} on {entity} {record_id}", code="not_found")
    return row


def require_update(uow: UnitOfWork, entity: str, record: dict[str, Any], what: str) -> None:
    """PermissionDenied unless the actor may update the (readable) ``record``: attaching a file changes it."""
    access = uow.guard.access(entity)
    if not uow.guard.allows(access.update, record.get("owner_id")):
        raise PermissionDenied(f"you may not {what} this {entity}: it needs update access to the record",
                               code="forbidden", hint="ask the record's owner or your manager")


def user_can_read(uow: UnitOfWork, actor: Actor, entity: str, owner_id: int | None) -> bool:
    """Whether another user (``actor``) may read a record of ``entity`` owned by ``owner_id``."""
    guard = Guard(actor, uow.workspace, uow.conn, memo=uow.state.memo)
    return guard.allows(guard.access(entity).read, owner_id)
