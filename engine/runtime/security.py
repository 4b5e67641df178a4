"""Row- and field-level security from the workspace's ``role:`` documents.

An actor's roles grant, per entity, ``read`` / ``update`` / ``delete`` with a
scope (``none < own < team < all``) and ``create``; several roles add up (the
widest scope wins).  Scopes become SQL clauses on ``owner_id``:

* ``own``  — ``owner_id = actor``;
* ``team`` — the owner is the actor or a member (main or extra team) of one
  of the actor's teams, of a team the actor manages, or of any team nested
  below those (:func:`engine.runtime.teams.teams_of`);
* ``all``  — every record.

Field rules ``hidden`` / ``readonly`` apply when *every* role of the actor
that grants access to the entity says so.  Hidden fields are never returned,
filtered or sorted on (they behave as if they did not exist); readonly fields
are refused on write.  Lines entities follow their parent's permissions.
Admins and the system actor pass every check.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import Connection, Table, false, or_
from sqlalchemy.sql.elements import ColumnElement

from engine.dsl.model import EntityPermission, Scope, Workspace, frozen_map
from engine.errors import NotFound, PermissionDenied
from engine.runtime import teams
from engine.runtime.context import Actor

SCOPE_RANK: Mapping[str, int] = {"none": 0, "own": 1, "team": 2, "all": 3}
_RULE_RANK = {"none": 0, "readonly": 1, "hidden": 2}
ALL = EntityPermission("all", True, "all", "all")


@dataclass(frozen=True, slots=True)
class Access:
    """What one actor may do with one entity."""

    read: Scope
    create: bool
    update: Scope
    delete: Scope
    hidden: frozenset[str]
    readonly: frozenset[str]


def resolve_access(workspace: Workspace, actor: Actor, entity: str) -> Access:
    """The actor's combined permissions and field rules on ``entity`` (pure)."""
    ent = workspace.entities.get(entity)
    if ent is None:
        raise NotFound(f"unknown entity {entity!r}", code="unknown_entity", hint=_close(entity, workspace.entities))
    perm_entity = ent.parent.entity if ent.parent is not None else entity
    if actor.is_admin:
        return Access("all", True, "all", "all", frozenset(), frozenset())
    roles = [workspace.roles[r] for r in actor.roles if r in workspace.roles]
    if any(r.admin for r in roles):
        return Access("all", True, "all", "all", frozenset(), frozenset())
    granting = [(r, r.permissions[perm_entity]) for r in roles if perm_entity in r.permissions]
    perms = [p for _, p in granting]
    rules = _field_rules([r.field_rules for r, _ in granting], entity, ent.fields)
    return Access(
        read=_widest(p.read for p in perms), create=any(p.create for p in perms),
        update=_widest(p.update for p in perms), delete=_widest(p.delete for p in perms),
        hidden=frozenset(f for f, rule in rules.items() if rule == "hidden"),
        readonly=frozenset(f for f, rule in rules.items() if rule == "readonly"),
    )


def _widest(scopes: Any) -> Scope:
    best: Scope = "none"
    for s in scopes:
        if SCOPE_RANK[s] > SCOPE_RANK[best]:
            best = s
    return best


def _field_rules(rule_maps: list[Mapping[tuple[str, str], str]], entity: str,
                 fields: Mapping[str, Any]) -> dict[str, str]:
    """field -> the most permissive rule among the granting roles (a field no role restricts is free)."""
    if not rule_maps:
        return {}
    out: dict[str, str] = {}
    for name in fields:
        ranks = [_RULE_RANK[m.get((entity, name), "none")] for m in rule_maps]
        least = min(ranks)
        if least:
            out[name] = "readonly" if least == 1 else "hidden"
    return out


def _close(name: str, choices: Mapping[str, Any]) -> str | None:
    close = difflib.get_close_matches(name, list(choices), n=1)
    return f"did you mean {close[0]!r}?" if close else None


class Guard:
    """The security checks of one unit of work (one actor, one connection).

    Team membership is read once, lazily, per unit of work.
    """

    def __init__(self, actor: Actor, workspace: Workspace, conn: Connection,
                 memo: Callable[[str, Any, Callable[[], Any]], Any] | None = None) -> None:
        self.actor = actor
        self.workspace = workspace
        self.conn = conn
        #: a revision-scoped memo (``State.memo``): access and hidden fields depend only on the roles
        self._memo = memo
        self._roles_key = (actor.is_admin, actor.roles)
        self._access: dict[str, Access] = {}
        self._team_ids: frozenset[int] | None = None
        self._members: frozenset[int] | None = None
        self._hidden: frozenset[tuple[str, str]] | None = None

    def access(self, entity: str) -> Access:
        """The actor's access to ``entity`` (NotFound for an unknown entity)."""
        got = self._access.get(entity)
        if got is None:
            if self._memo is None:
                got = resolve_access(self.workspace, self.actor, entity)
            else:
                got = self._memo("access", (entity, self._roles_key),
                                 lambda: resolve_access(self.workspace, self.actor, entity))
            self._access[entity] = got
        return got

    def require(self, entity: str, action: str) -> Access:
        """The access, or PermissionDenied if ``action`` (read/create/update/delete) is not granted at all."""
        acc = self.access(entity)
        granted = acc.create if action == "create" else getattr(acc, action) != "none"
        if not granted:
            raise PermissionDenied(f"you may not {action} {entity} records", code="forbidden",
                                   hint="ask an administrator for a role that grants it")
        return acc

    def team_ids(self) -> frozenset[int]:
        """The actor's teams (main and extra), every team the actor manages, and the teams below them."""
        if self._team_ids is None:
            self._team_ids = teams.teams_of(self.conn, self.actor.user_id, self.actor.team_id)
        return self._team_ids

    def team_members(self) -> frozenset[int]:
        """User ids whose records ``team`` scope covers (the actor included)."""
        if self._members is None:
            ids = set(teams.member_ids(self.conn, self.team_ids()))
            if self.actor.user_id is not None:
                ids.add(self.actor.user_id)
            self._members = frozenset(ids)
        return self._members

    def scope_clause(self, table: Table, scope: Scope) -> ColumnElement[bool] | None:
        """The WHERE clause restricting ``table`` to ``scope`` (None means no restriction)."""
        if scope == "all":
            return None
        owner = table.c.owner_id
        if scope == "own" and self.actor.user_id is not None:
            return owner == self.actor.user_id
        if scope == "team" and self.actor.user_id is not None:
            if not self.team_ids():
                return owner == self.actor.user_id
            return or_(owner == self.actor.user_id, owner.in_(teams.members_select(self.team_ids())))
        return false()

    def allows(self, scope: Scope, owner_id: int | None) -> bool:
        """Whether a record owned by ``owner_id`` is inside ``scope`` (same rule as :meth:`scope_clause`)."""
        if scope == "all":
            return True
        if scope == "none" or self.actor.user_id is None or owner_id is None:
            return False
        if scope == "own":
            return owner_id == self.actor.user_id
        return owner_id in self.team_members()

    def hidden_pairs(self) -> frozenset[tuple[str, str]]:
        """(entity, field) of every field hidden from the actor, across the workspace."""
        if self._hidden is None:
            def make() -> frozenset[tuple[str, str]]:
                return frozenset((e, f) for e in self.workspace.entities for f in self.access(e).hidden)

            self._hidden = make() if self._memo is None else self._memo("hidden", self._roles_key, make)
        return self._hidden


def visible_workspace(workspace: Workspace, hidden: frozenset[tuple[str, str]]) -> Workspace:
    """``workspace`` without the ``hidden`` fields (what a user's filter is compiled against)."""
    if not hidden:
        return workspace
    entities = {}
    for name, ent in workspace.entities.items():
        drop = {f for e, f in hidden if e == name}
        entities[name] = replace(ent, fields=frozen_map({k: v for k, v in ent.fields.items() if k not in drop}),
                                 checks=()) if drop else ent
    return replace(workspace, entities=frozen_map(entities))
