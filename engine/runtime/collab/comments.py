"""Comments on any record (``crm_comments``), with ``@username`` mentions that notify.

Whoever may read a record may read and add its comments (NotFound otherwise, as for the record); only
the author -- or an administrator -- edits or deletes one.  A mention notifies the user
(:mod:`engine.runtime.notify`, kind ``mention``) when that user is active and may read the record;
an edit notifies only users it newly mentions.  Every add, edit and delete writes an audit row on the
record (``comment``, ``comment_edit``, ``comment_delete``), so they show in its history.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update

from engine.dsl.model import text_in
from engine.errors import AuthenticationRequired, BadRequest, PermissionDenied, ValidationFailed
from engine.runtime import notify, users
from engine.runtime.collab import access
from engine.runtime.engine_tables import crm_comments, crm_users
from engine.runtime.records import journal

if TYPE_CHECKING:
    from engine.runtime.runtime import UnitOfWork

MAX_BODY = 10_000
MAX_MENTIONS = 50
EXCERPT = 120
#: ``@name`` not preceded by a word character, a dot or another @ (so ``bob@acme.com`` mentions nobody);
#: names may hold letters, digits, ``_``, ``.`` and ``-`` (a trailing dot or dash ends the sentence instead)
MENTION = re.compile(r"(?<![\w.@])@([\w][\w.\-]*)")


def mentioned_names(body: str) -> list[str]:
    """The usernames ``body`` mentions, in order, once each."""
    names = (m.group(1).rstrip(".-") for m in MENTION.finditer(body))
    return list(dict.fromkeys(n for n in names if n))[:MAX_MENTIONS]


def _body(body: Any) -> str:
    if not isinstance(body, str) or not body.strip():
        raise ValidationFailed("a comment needs a body", details={"body": ["give the comment's text"]})
    if len(body) > MAX_BODY:
        raise ValidationFailed("the comment is too long", details={"body": [f"at most {MAX_BODY} characters"]})
    return body


def _select() -> Any:
    c, u = crm_comments, crm_users
    return select(c, u.c.username).outerjoin(u, u.c.id == c.c.author_id).where(c.c.deleted_at.is_(None))


def _out(row: Any, names: dict[int, str]) -> dict[str, Any]:
    return {"id": row.id, "entity": row.entity, "record_id": row.record_id, "author_id": row.author_id,
            "author": row.username, "body": row.body,
            "mentions": [names.get(i, str(i)) for i in row.mentions or ()],
            "created_at": row.created_at, "edited_at": row.edited_at}


def _usernames(uow: UnitOfWork, ids: set[int]) -> dict[int, str]:
    if not ids:
        return {}
    u = crm_users
    return {r.id: r.username for r in uow.conn.execute(select(u.c.id, u.c.username).where(u.c.id.in_(ids)))}


def listing(uow: UnitOfWork, entity: str, record_id: int, *, limit: int = 50,
            before: int | None = None) -> list[dict[str, Any]]:
    """The record's comments, newest first (``before``: ids below it, for paging)."""
    access.readable(uow, entity, record_id)
    c = crm_comments
    stmt = _select().where(c.c.entity == entity, c.c.record_id == record_id)
    if before is not None:
        stmt = stmt.where(c.c.id < before)
    rows = uow.conn.execute(stmt.order_by(c.c.id.desc()).limit(max(1, min(limit, 200)))).all()
    names = _usernames(uow, {i for r in rows for i in r.mentions or ()})
    return [_out(r, names) for r in rows]


def _row(uow: UnitOfWork, entity: str, record_id: int, comment_id: int) -> Any:
    return access.attached_row(uow, _select(), crm_comments, entity, record_id, comment_id, "comment")


def get(uow: UnitOfWork, entity: str, record_id: int, comment_id: int) -> dict[str, Any]:
    access.readable(uow, entity, record_id)
    row = _row(uow, entity, record_id, comment_id)
    return _out(row, _usernames(uow, set(row.mentions or ())))


def add(uow: UnitOfWork, entity: str, record_id: int, body: Any) -> dict[str, Any]:
    """Comment on the record (read access is enough) and notify the users it mentions."""
    uow.require_writable()
    record = access.readable(uow, entity, record_id)
    text = _body(body)
    if uow.actor.user_id is None:
        raise BadRequest("the system actor cannot comment", code="bad_request")
    now = uow.clock.now()
    comment_id = int(uow.conn.execute(crm_comments.insert().values(
        entity=entity, record_id=record_id, author_id=uow.actor.user_id, body=text, mentions=[],
        created_at=now)).inserted_primary_key[0])  # type: ignore[index]
    notified = _notify(uow, entity, record, comment_id, text, already=set())
    uow.conn.execute(update(crm_comments).where(crm_comments.c.id == comment_id).values(mentions=notified))
    journal.write(uow, now, [journal.event(entity, record_id, "comment", {"comment_id": comment_id, "body": text})])
    out = get(uow, entity, record_id, comment_id)
    out["not_notified"] = [n for n in mentioned_names(text) if n not in out["mentions"]]
    return out


def edit(uow: UnitOfWork, entity: str, record_id: int, comment_id: int, body: Any) -> dict[str, Any]:
    """Change a comment's text (its author or an administrator); users newly mentioned are notified."""
    uow.require_writable()
    record = access.readable(uow, entity, record_id)
    row = _mine(uow, entity, record_id, comment_id, "edit")
    text = _body(body)
    before = list(row.mentions or ())
    notified = before + _notify(uow, entity, record, comment_id, text, already=set(before))
    now = uow.clock.now()
    uow.conn.execute(update(crm_comments).where(crm_comments.c.id == comment_id)
                     .values(body=text, edited_at=now, mentions=notified))
    journal.write(uow, now, [(entity, record_id, "comment_edit", None, {"comment_id": comment_id, "body": row.body},
                              {"comment_id": comment_id, "body": text})])
    out = get(uow, entity, record_id, comment_id)
    out["not_notified"] = [n for n in mentioned_names(text) if n not in out["mentions"]]
    return out


def delete(uow: UnitOfWork, entity: str, record_id: int, comment_id: int) -> None:
    """Remove a comment (its author or an administrator); the audit row keeps what it said."""
    uow.require_writable()
    access.readable(uow, entity, record_id)
    row = _mine(uow, entity, record_id, comment_id, "delete")
    now = uow.clock.now()
    uow.conn.execute(update(crm_comments).where(crm_comments.c.id == comment_id).values(deleted_at=now))
    journal.write(uow, now, [(entity, record_id, "comment_delete", None,
                              {"comment_id": comment_id, "body": row.body}, None)])


def _mine(uow: UnitOfWork, entity: str, record_id: int, comment_id: int, verb: str) -> Any:
    row = _row(uow, entity, record_id, comment_id)
    if row.author_id != uow.actor.user_id and not uow.actor.is_admin:
        raise PermissionDenied(f"only the author of a comment (or an administrator) may {verb} it",
                               code="forbidden")
    return row


def _notify(uow: UnitOfWork, entity: str, record: dict[str, Any], comment_id: int, text: str, *,
            already: set[int]) -> list[int]:
    """Notify the mentioned users who may read the record (once per comment and user); their ids."""
    names = mentioned_names(text)
    if not names:
        return []
    u = crm_users
    found = uow.conn.execute(select(u.c.id, u.c.username).where(u.c.username.in_(names), u.c.active.is_(True)))
    label = text_in(uow.workspace.entities[entity].label, "en", entity)
    label_zh = text_in(uow.workspace.entities[entity].label, "zh", entity)
    excerpt = " ".join(text.split())[:EXCERPT]
    author = uow.actor.username
    out = []
    for uid, _name in found:
        if uid in already or uid == uow.actor.user_id or not _may_read(uow, uid, entity, record):
            continue
        notify.send(uow, uid, "mention", {"en": f"{author} mentioned you on {label} {record['id']}: {excerpt}",
                                          "zh": f"{author} 在{label_zh} {record['id']} 的评论中提到了你：{excerpt}"},
                    entity=entity, record_id=int(record["id"]), data={"comment_id": comment_id, "by": author},
                    dedupe_key=f"mention:{comment_id}:{uid}")
        out.append(int(uid))
    return out


def _may_read(uow: UnitOfWork, uid: int, entity: str, record: dict[str, Any]) -> bool:
    try:
        actor = users.actor_for(uow.conn, uow.workspace, int(uid))
    except AuthenticationRequired:
        return False
    return access.user_can_read(uow, actor, entity, record.get("owner_id"))
