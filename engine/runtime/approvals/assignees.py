"""Who an :class:`~engine.dsl.approvals.model.Assignee` is on one record: active user ids, in order.

A user by name, the holders of a role, the members of a team, or an expression over the record returning
a user (``manager_of(owner)``, ``owner``).  Inactive users are skipped; an empty answer is the caller's to
refuse (:class:`~engine.errors.NoAssignee` at submit, never a stuck instance).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from engine.dsl.approvals.model import Assignee
from engine.errors import ExpressionEvalError
from engine.runtime import teams
from engine.runtime.engine_tables import crm_users
from engine.runtime.sales.recordctx import eval_context

if TYPE_CHECKING:
    from engine.runtime.runtime import UnitOfWork


def resolve(uow: UnitOfWork, assignee: Assignee, record: Mapping[str, Any]) -> list[int]:
    """The active users ``assignee`` names on ``record`` (by id, in a stable order)."""
    u = crm_users
    if assignee.kind == "user":
        rows = uow.conn.execute(select(u.c.id).where(u.c.username == assignee.value, u.c.active.is_(True)))
        return [int(r[0]) for r in rows]
    if assignee.kind == "role":
        rows = uow.conn.execute(select(u.c.id, u.c.roles).where(u.c.active.is_(True)).order_by(u.c.id))
        return [int(r[0]) for r in rows if assignee.value in (r[1] or ())]
    if assignee.kind == "team":
        return [uid for uid, _name in teams.direct_members(uow.conn, assignee.value)]
    return _by_expression(uow, assignee, record)


def _by_expression(uow: UnitOfWork, assignee: Assignee, record: Mapping[str, Any]) -> list[int]:
    if assignee.expression is None:
        return []
    try:
        value = assignee.expression.evaluate(record, eval_context(uow, None))
    except ExpressionEvalError:
        return []
    if value is None or isinstance(value, bool):
        return []
    u = crm_users
    col = u.c.username if isinstance(value, str) else u.c.id  # "any expression of a user or a username"
    found = uow.conn.execute(select(u.c.id).where(col == value, u.c.active.is_(True))).scalar()
    return [int(found)] if found is not None else []


def resolve_all(uow: UnitOfWork, assignees: Iterable[Assignee], record: Mapping[str, Any]) -> list[int]:
    """Every user the assignees name, each once, in order."""
    out: dict[int, None] = {}
    for a in assignees:
        out.update(dict.fromkeys(resolve(uow, a, record)))
    return list(out)
