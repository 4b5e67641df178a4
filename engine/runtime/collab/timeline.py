"""The timeline of a record (跟进记录): one stream, newest first, of what happened to it and its children.

Subjects: the record (the caller must be able to read it: NotFound otherwise) and its children -- the live
records of every entity with a reference field to it (an account's contacts, opportunities, quotes...)
that the caller may read, at most :data:`MAX_CHILDREN` per reference.  Items, each only for a subject:

* ``activity`` -- an ``activity`` record linked to a subject, at its ``occurred_at``;
* ``created`` / ``updated`` / ``deleted`` / ``restored`` / ``handover`` ... -- the audit trail (one item per
  changed field), the caller's hidden fields left out and pool masks applied;
* ``comment``, ``file``, ``stage`` (crm_stage_history), ``pool`` (claims, returns, assignments, recycles),
  ``approval`` (every decision of the record's approvals).

Paged by an opaque cursor on (time, source, id); every source is read after the cursor, newest first.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, false, func, or_, select, type_coerce
from sqlalchemy.sql.elements import ColumnElement

from engine.errors import BadRequest
from engine.runtime.audit import AuditEntry
from engine.runtime.collab import access
from engine.runtime.engine_tables import (
    crm_approval_decisions,
    crm_approval_instances,
    crm_audit,
    crm_comments,
    crm_files,
    crm_pool_log,
    crm_stage_history,
    crm_users,
)
from engine.runtime.records import masking, output
from engine.runtime.records.query import base_select
from engine.runtime.types import UtcDateTime

if TYPE_CHECKING:
    from engine.runtime.runtime import UnitOfWork

ACTIVITY_ENTITY = "activity"
MAX_CHILDREN = 500
MAX_PAGE = 200
#: audit actions shown by their own sources (comments, files), not as changes
OWN_SOURCES = ("comment", "comment_edit", "comment_delete", "file_upload", "file_delete")
Subjects = dict[str, list[int]]


@dataclass(frozen=True, slots=True)
class Item:
    at: dt.datetime
    rank: int
    id: int
    #: None: a row the caller may not see after all (a hidden field under its former name); it still takes
    #: its place in the page, so paging stays exact
    body: dict[str, Any] | None

    @property
    def key(self) -> tuple[dt.datetime, int, int]:
        return (self.at, self.rank, self.id)


@dataclass(frozen=True, slots=True)
class Cursor:
    at: dt.datetime
    rank: int
    id: int


def encode_cursor(item: Item) -> str:
    raw = json.dumps([item.at.isoformat(), item.rank, item.id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(text: str) -> Cursor:
    try:
        at, rank, id_ = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        when = dt.datetime.fromisoformat(at)
        if not (isinstance(rank, int) and isinstance(id_, int)) or when.tzinfo is None:
            raise ValueError("bad cursor")
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError) as e:
        raise BadRequest("the cursor is not one this timeline gave", code="bad_cursor",
                         hint="pass next_cursor of the previous page unchanged") from e
    return Cursor(when, rank, id_)


def _after(at: Any, id_: Any, rank: int, cursor: Cursor | None) -> ColumnElement[bool] | None:
    """Rows of a source of ``rank`` that come after ``cursor`` in (time, rank, id) descending order."""
    if cursor is None:
        return None
    if rank < cursor.rank:
        return at <= cursor.at
    if rank > cursor.rank:
        return at < cursor.at
    return or_(at < cursor.at, and_(at == cursor.at, id_ < cursor.id))


def subjects_of(uow: UnitOfWork, entity: str, record_id: int) -> Subjects:
    """The record and its readable children, entity -> ids (the record first)."""
    out: Subjects = {entity: [record_id]}
    for child, link in child_links(uow, entity):
        plan = uow.state.plan(child)
        col = uow.schema.field_expr(child, link)
        stmt = base_select(uow, plan, uow.guard.access(child), [plan.table.c.id]).where(col == record_id)
        ids = list(uow.conn.execute(stmt.order_by(plan.table.c.id.desc()).limit(MAX_CHILDREN)).scalars())
        if ids:
            out.setdefault(child, [])
            out[child] = sorted(set(out[child]) | set(ids))
    return out


def child_links(uow: UnitOfWork, entity: str) -> list[tuple[str, str]]:
    """(child entity, reference field) of every reference to ``entity`` the caller may read and see."""
    out = []
    for name, ent in uow.workspace.entities.items():
        if name == ACTIVITY_ENTITY or ent.parent is not None or name not in uow.state.plans:
            continue
        acc = uow.guard.access(name)
        if acc.read == "none":
            continue
        for f in ent.fields.values():
            if f.type == "reference" and f.reference == entity and f.stored and f.name not in acc.hidden:
                out.append((name, f.name))
    return out


def _in(entity_col: Any, id_col: Any, subjects: Subjects) -> ColumnElement[bool]:
    parts = [and_(entity_col == e, id_col.in_(ids)) for e, ids in subjects.items() if ids]
    return or_(*parts) if parts else false()


def _actor_join(table: Any, column: Any) -> tuple[Any, Any]:
    return table.outerjoin(crm_users, crm_users.c.id == column), crm_users.c.username


def _page(uow: UnitOfWork, stmt: Any, at: Any, id_: Any, rank: int, cursor: Cursor | None, limit: int) -> list[Any]:
    cond = _after(at, id_, rank, cursor)
    if cond is not None:
        stmt = stmt.where(cond)
    return list(uow.conn.execute(stmt.order_by(at.desc(), id_.desc()).limit(limit)))


def _base(kind: str, entity: str, record_id: int, at: dt.datetime, actor_id: Any, actor: Any,
          **data: Any) -> dict[str, Any]:
    return {"kind": kind, "entity": entity, "record_id": record_id, "at": at, "actor_id": actor_id,
            "actor": actor, **data}


# --------------------------------------------------------------------------- sources


def _changes(uow: UnitOfWork, subjects: Subjects, cursor: Cursor | None, limit: int) -> list[Item]:
    a = crm_audit
    joined, username = _actor_join(a, a.c.actor_id)
    where = []
    for entity, ids in subjects.items():
        if entity == ACTIVITY_ENTITY and len(subjects) > 1:
            continue  # an activity child is shown as its activity item
        hidden = _hidden(uow, entity)
        cond = and_(a.c.entity == entity, a.c.record_id.in_(ids))
        if hidden:
            cond = and_(cond, or_(a.c.field.is_(None), a.c.field.not_in(sorted(hidden))))
        where.append(cond)
    if not where:
        return []
    stmt = select(a, username).select_from(joined).where(or_(*where), a.c.action.not_in(OWN_SOURCES))
    rows = _page(uow, stmt, a.c.at, a.c.id, RANK["change"], cursor, limit)
    items = []
    for r in rows:
        renames = uow.state.renames.get(r.entity) or {}
        hidden = _hidden(uow, r.entity)
        name = renames.get(r.field, r.field) if r.field is not None else None
        if name in hidden:
            items.append(Item(r.at, RANK["change"], r.id, None))
            continue
        new = r.new_value
        if isinstance(new, dict) and r.field is None:
            new = {renames.get(k, k): v for k, v in new.items() if renames.get(k, k) not in hidden}
        entry = AuditEntry(r.id, r.action, name, r.old_value, new, r.actor_id, r.username, r.at, r.revision_id)
        entry = masking.history(uow, r.entity, r.record_id, [entry])[0]
        kind = {"create": "created", "delete": "deleted", "restore": "restored"}.get(r.action, r.action)
        items.append(Item(r.at, RANK["change"], r.id, _base(
            kind, r.entity, r.record_id, r.at, r.actor_id, r.username, field=entry.field, old=entry.old,
            new=entry.new)))
    return items


def _hidden(uow: UnitOfWork, entity: str) -> frozenset[str]:
    plan = uow.state.plan(entity)
    acc = uow.guard.access(entity)
    return acc.hidden | {plan.currency_keys[h] for h in acc.hidden if h in plan.currency_keys}


def _activities(uow: UnitOfWork, subjects: Subjects, cursor: Cursor | None, limit: int) -> list[Item]:
    ent = uow.workspace.entities.get(ACTIVITY_ENTITY)
    if ent is None or ACTIVITY_ENTITY not in uow.state.plans or (
            list(subjects) == [ACTIVITY_ENTITY]) or uow.guard.access(ACTIVITY_ENTITY).read == "none":
        return []
    plan, acc = uow.state.plan(ACTIVITY_ENTITY), uow.guard.access(ACTIVITY_ENTITY)
    links = [uow.schema.field_expr(ACTIVITY_ENTITY, f.name).in_(subjects[f.reference])
             for f in ent.fields.values() if f.type == "reference" and f.reference in subjects
             and f.name not in acc.hidden]
    if not links:
        return []
    t = plan.table
    when = ent.fields.get("occurred_at")
    at = type_coerce(func.coalesce(uow.schema.field_expr(ACTIVITY_ENTITY, "occurred_at"), t.c.created_at)
                     if when is not None and when.type == "datetime" else t.c.created_at, UtcDateTime())
    stmt = base_select(uow, plan, acc, [t, at.label("_at")]).where(or_(*links))
    keys = output.visible_keys(plan, acc)
    records, stamps = [], []
    for r in _page(uow, stmt, at, t.c.id, RANK["activity"], cursor, limit):
        record = {k: v for k, v in plan_record(plan, r._mapping).items() if k in keys}
        records.append(record)
        stamps.append(r._mapping["_at"])
    masking.apply(uow, ACTIVITY_ENTITY, records)
    names = _usernames(uow, {r["owner_id"] for r in records if r.get("owner_id") is not None})
    return [Item(at_, RANK["activity"], rec["id"], _base(
        "activity", ACTIVITY_ENTITY, rec["id"], at_, rec.get("owner_id"), names.get(rec.get("owner_id") or 0),
        record=rec)) for rec, at_ in zip(records, stamps, strict=True)]


def plan_record(plan: Any, mapping: Mapping[Any, Any]) -> dict[str, Any]:
    return {key: get(mapping) for key, get in plan.readers}


def _usernames(uow: UnitOfWork, ids: set[int]) -> dict[int, str]:
    if not ids:
        return {}
    u = crm_users
    return {r.id: r.username for r in uow.conn.execute(select(u.c.id, u.c.username).where(u.c.id.in_(ids)))}


def _comments(uow: UnitOfWork, subjects: Subjects, cursor: Cursor | None, limit: int) -> list[Item]:
    c = crm_comments
    joined, username = _actor_join(c, c.c.author_id)
    stmt = select(c, username).select_from(joined).where(_in(c.c.entity, c.c.record_id, subjects),
                                                         c.c.deleted_at.is_(None))
    return [Item(r.created_at, RANK["comment"], r.id, _base(
        "comment", r.entity, r.record_id, r.created_at, r.author_id, r.username, comment_id=r.id, body=r.body,
        edited_at=r.edited_at)) for r in _page(uow, stmt, c.c.created_at, c.c.id, RANK["comment"], cursor, limit)]


def _files(uow: UnitOfWork, subjects: Subjects, cursor: Cursor | None, limit: int) -> list[Item]:
    f = crm_files
    joined, username = _actor_join(f, f.c.created_by)
    stmt = select(f, username).select_from(joined).where(_in(f.c.entity, f.c.record_id, subjects),
                                                         f.c.deleted_at.is_(None))
    return [Item(r.created_at, RANK["file"], r.id, _base(
        "file", r.entity, r.record_id, r.created_at, r.created_by, r.username, file_id=r.id, name=r.name,
        content_type=r.content_type, size=r.size))
        for r in _page(uow, stmt, f.c.created_at, f.c.id, RANK["file"], cursor, limit)]


def _stages(uow: UnitOfWork, subjects: Subjects, cursor: Cursor | None, limit: int) -> list[Item]:
    h = crm_stage_history
    joined, username = _actor_join(h, h.c.actor_id)
    stmt = select(h, username).select_from(joined).where(_in(h.c.entity, h.c.record_id, subjects))
    return [Item(r.entered_at, RANK["stage"], r.id, _base(
        "stage", r.entity, r.record_id, r.entered_at, r.actor_id, r.username, pipeline=r.pipeline,
        from_stage=r.from_stage, to_stage=r.to_stage))
        for r in _page(uow, stmt, h.c.entered_at, h.c.id, RANK["stage"], cursor, limit)]


def _pools(uow: UnitOfWork, subjects: Subjects, cursor: Cursor | None, limit: int) -> list[Item]:
    p = crm_pool_log
    joined, username = _actor_join(p, p.c.actor_id)
    stmt = select(p, username).select_from(joined).where(_in(p.c.entity, p.c.record_id, subjects))
    rows = _page(uow, stmt, p.c.at, p.c.id, RANK["pool"], cursor, limit)
    holders = _usernames(uow, {r.user_id for r in rows if r.user_id is not None})
    return [Item(r.at, RANK["pool"], r.id, _base(
        "pool", r.entity, r.record_id, r.at, r.actor_id, r.username, pool=r.pool, action=r.action,
        reason=r.reason, user_id=r.user_id, user=holders.get(r.user_id))) for r in rows]


def _approvals(uow: UnitOfWork, subjects: Subjects, cursor: Cursor | None, limit: int) -> list[Item]:
    d, i = crm_approval_decisions, crm_approval_instances
    joined = d.join(i, i.c.id == d.c.instance_id).outerjoin(crm_users, crm_users.c.id == d.c.actor_id)
    stmt = select(d, i.c.entity, i.c.record_id, i.c.flow, crm_users.c.username).select_from(joined).where(
        _in(i.c.entity, i.c.record_id, subjects))
    return [Item(r.at, RANK["approval"], r.id, _base(
        "approval", r.entity, r.record_id, r.at, r.actor_id, r.username, flow=r.flow, instance_id=r.instance_id,
        decision=r.decision, step=r.step, comment=r.comment))
        for r in _page(uow, stmt, d.c.at, d.c.id, RANK["approval"], cursor, limit)]


Source = Callable[["UnitOfWork", Subjects, "Cursor | None", int], list[Item]]
#: source -> its place among items of the same moment (higher: shown first)
RANK = {"change": 1, "stage": 2, "pool": 3, "approval": 4, "file": 5, "comment": 6, "activity": 7}
SOURCES: Sequence[Source] = (_changes, _stages, _pools, _approvals, _files, _comments, _activities)


def timeline(uow: UnitOfWork, entity: str, record_id: int, *, limit: int = 50,
             cursor: str | None = None) -> dict[str, Any]:
    """One page of the record's timeline: ``{"items", "next_cursor", "subjects"}`` (NotFound when the
    caller cannot read the record)."""
    access.readable(uow, entity, record_id)
    limit = max(1, min(int(limit), MAX_PAGE))
    after = decode_cursor(cursor) if cursor else None
    subjects = subjects_of(uow, entity, record_id)
    found: list[Item] = []
    for source in SOURCES:
        found.extend(source(uow, subjects, after, limit + 1))
    found.sort(key=lambda it: it.key, reverse=True)
    page = found[:limit]
    return {"items": [{"id": f"{_kind_of(it)}:{it.id}", **it.body} for it in page if it.body is not None],
            "next_cursor": encode_cursor(page[-1]) if len(found) > limit else None,
            "subjects": {e: len(ids) for e, ids in subjects.items()}}


def _kind_of(item: Item) -> str:
    return next(name for name, rank in RANK.items() if rank == item.rank)
