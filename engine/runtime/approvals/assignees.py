"""Who an :class:`~engine.dsl.approvals.model.Assignee` is on one record: active user ids, in order.

A user by name, the holders of a role, the members of a team, or an expression over the record returning
a user (``manager_of(owner)``, ``owner``).  Inactive users are skipped; an empty answer is the caller's to
refuse (:class:`~engine.errors.NoAssignee` at submit, never a stuck instance).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, select

from engine.dsl.approvals.model import Assignee
from engine.errors import ExpressionEvalError
from engine.runtime import rawsql, teams
from engine.runtime.engine_tables import crm_users
from engine.runtime.sales.recordctx import eval_context

if TYPE_CHECKING:
    from engine.runtime.runtime import UnitOfWork


_u = crm_users
# built once (a statement built per call cost more than running it)
_BY_NAME = rawsql.Query(select(_u.c.id).where(_u.c.username == bindparam("b_name"), _u.c.active.is_(True)))
_BY_ID = rawsql.Query(select(_u.c.id).where(_u.c.id == bindparam("b_id"), _u.c.active.is_(True)))
_ROLES = rawsql.Query(select(_u.c.id, _u.c.roles).where(_u.c.active.is_(True)).order_by(_u.c.id))
#: ``uow.scratch`` key: the active users' roles, read once per unit
ROLES_KEY = "approvals.active_roles"


def resolve(uow: UnitOfWork, assignee: Assignee, record: Mapping[str, Any]) -> list[int]:
    """The active users ``assignee`` names on ``record`` (by id, in a stable order)."""
    if assignee.kind == "user":
        return [int(r[0]) for r in _BY_NAME.all(uow.conn, {"b_name": assignee.value})]
    if assignee.kind == "role":
        return [uid for uid, held in _active_roles(uow) if assignee.value in held]
    if assignee.kind == "team":
        return [uid for uid, _name in teams.direct_members(uow.conn, assignee.value)]
    return _by_expression(uow, assignee, record)


def admins(uow: UnitOfWork) -> list[int]:
    """The active users holding a role with ``admin: true`` (who decides a step left without approvers)."""
    wanted = {name for name, role in uow.workspace.roles.items() if role.admin}
    return [uid for uid, held in _active_roles(uow) if wanted.intersection(held)]


def _active_roles(uow: UnitOfWork) -> list[tuple[int, tuple[str, ...]]]:
    roles = uow.scratch.get(ROLES_KEY)
    if roles is None:
        roles = uow.scratch[ROLES_KEY] = [(int(r[0]), tuple(r[1] or ())) for r in _ROLES.all(uow.conn)]
    return roles  # type: ignore[no-any-return]


def _by_expression(uow: UnitOfWork, assignee: Assignee, record: Mapping[str, Any]) -> list[int]:
    if assignee.expression is None:
        return []
    try:
        value = assignee.expression.evaluate(record, eval_context(uow, None))
    except ExpressionEvalError:
        return []
    if value is None or isinstance(value, bool):
        return []
    # "any expression of a user or a username"
    found = _BY_NAME.first(uow.conn, {"b_name": value}) if isinstance(value, str) else \
        _BY_ID.first(uow.conn, {"b_id": value})
    return [int(found[0])] if found is not None else []


def resolve_all(uow: UnitOfWork, assignees: Iterable[Assignee], record: Mapping[str, Any]) -> list[int]:
    """Every user the assignees name, each once, in order."""
    out: dict[int, None] = {}
    for a in assignees:
        out.update(dict.fromkeys(resolve(uow, a, record)))
    return list(out)
