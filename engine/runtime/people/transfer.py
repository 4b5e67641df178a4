"""The ownership transfer rule: who may give a record to whom (``owner_id``).

A role says ``transfer: none | own_team | all`` (default ``all``); several
roles add up (the widest wins); admins and the system pass.  A write step
(order 50: before assignment, so only what the caller sent is judged) checks
every change of ``owner_id`` -- PATCH, handover, pool assignment, bulk
updates all go through the write pipeline, so all meet the same rule:

* to oneself -- always allowed (taking a record is governed by the update
  scope and the pools' rules, not by this one);
* ``none`` -- no other owner, and not to nobody;
* ``own_team`` -- to a member of one of the actor's teams (the ``team``
  scope's people: main and extra teams, managed teams and those below them);
* ``all`` -- to anyone.

A refusal is :class:`~engine.errors.TransferRefused` (403) naming the rule.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from engine.dsl.model import Workspace
from engine.errors import TransferRefused
from engine.runtime import teams
from engine.runtime.engine_tables import crm_users

if TYPE_CHECKING:
    from engine.runtime.context import Actor
    from engine.runtime.records.steps import WriteContext

RANK = {"none": 0, "own_team": 1, "all": 2}
STEP_ORDER = 50


def rule_of(workspace: Workspace, actor: Actor) -> str:
    """The actor's transfer rule: the widest of their roles' (``all`` for admins and the system)."""
    if actor.is_admin:
        return "all"
    rules = [workspace.roles[r].transfer for r in actor.roles if r in workspace.roles]
    if any(workspace.roles[r].admin for r in actor.roles if r in workspace.roles):
        return "all"
    return max(rules, key=RANK.__getitem__) if rules else "none"


class TransferStep:
    """The write step (see the module docstring); registered only when some role restricts transfers."""

    name = "people.transfer"
    order = STEP_ORDER

    def __init__(self, workspace: Workspace) -> None:
        self.workspace = workspace

    def applies_to(self, entity: str) -> bool:
        ent = self.workspace.entities.get(entity)
        return ent is not None and ent.parent is None

    def before_write(self, ctx: WriteContext, entity: str, record: dict[str, Any],
                     old: Mapping[str, Any] | None) -> None:
        actor = ctx.uow.actor
        if actor.is_admin or ctx.action not in ("create", "update"):
            return
        if old is None:
            if ctx.sent is None or "owner_id" not in ctx.sent:
                return  # the default owner (the creator) or assignment's choice
            before = None
        else:
            before = old.get("owner_id")
        target = record.get("owner_id")
        if target == before or target == actor.user_id or (old is None and target is None):
            return
        check(ctx.uow, entity, record.get("id") or (old or {}).get("id"), target)


def check(uow: Any, entity: str, record_id: Any, target: int | None) -> None:
    """TransferRefused unless the unit's actor may give ``entity`` ``record_id`` to ``target``."""
    actor = uow.actor
    rule = rule_of(uow.workspace, actor)
    if rule == "all" or target == actor.user_id:
        return
    what = f"{entity} {record_id}" if record_id is not None else f"a new {entity}"
    who = _username(uow, target)
    details = {"entity": entity, "id": record_id, "to": who, "rule": rule}
    if rule == "none":
        raise TransferRefused(f"your role may not give records to others (transfer: none): {what} cannot go "
                              f"to {who}", details=details,
                              hint="ask a manager or an administrator to reassign it")
    if target is None or int(target) not in _team_people(uow, actor):
        raise TransferRefused(f"your role may give records only to members of your team (transfer: own_team): "
                              f"{who} is not in your team, so {what} cannot go to them", details=details,
                              hint="choose a colleague of your team, or ask a manager or an administrator")


def _team_people(uow: Any, actor: Actor) -> frozenset[int]:
    """Who the actor's ``team`` scope covers -- read for the actor itself: inside a pool's elevated write the
    unit's guard is the system's."""
    guard = uow.guard
    if guard.actor.user_id == actor.user_id:
        return frozenset(guard.team_members())
    return teams.member_ids(uow.conn, teams.teams_of(uow.conn, actor.user_id, actor.team_id))


def _username(uow: Any, uid: int | None) -> str:
    if uid is None:
        return "nobody"
    name = uow.conn.execute(select(crm_users.c.username).where(crm_users.c.id == uid)).scalar()
    return str(name) if name is not None else f"user {uid}"


def write_steps(workspace: Workspace) -> list[Any]:
    """The transfer step when any role of ``workspace`` says ``none`` or ``own_team`` (else nothing, so
    workspaces without the rule keep their set-based bulk updates)."""
    if all(r.transfer == "all" or r.admin for r in workspace.roles.values()):
        return []
    return [TransferStep(workspace)]
