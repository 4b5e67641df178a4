"""Teams as a tree, and who belongs to them (``crm_teams.parent_id``, ``crm_team_members``).

* A team may sit inside another (``parent_id``): a director's team holds the
  managers' teams.  Cycles are refused when a parent is set.
* A user has a main team (``crm_users.team_id``) and may be a member of more
  teams (``crm_team_members``); both count alike for scopes, pools and
  assignment.
* :func:`teams_of` is what the ``team`` scope covers for one user: their
  teams, the teams they manage, and every team below those.

Pure reads over the engine tables; the administration that changes them
(admin only, audited) lives in :mod:`engine.runtime.people`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from sqlalchemy import Connection, Select, select, union

from engine.runtime.engine_tables import crm_team_members, crm_teams, crm_users


@dataclass(frozen=True, slots=True)
class TeamNode:
    """One team as the tree needs it."""

    id: int
    name: str
    parent_id: int | None
    manager_id: int | None


def tree(conn: Connection) -> dict[int, TeamNode]:
    """Every team by id (teams are few: one query)."""
    t = crm_teams
    rows = conn.execute(select(t.c.id, t.c.name, t.c.parent_id, t.c.manager_id))
    return {int(r.id): TeamNode(int(r.id), r.name, r.parent_id, r.manager_id) for r in rows}


def below(nodes: Mapping[int, TeamNode], roots: Iterable[int]) -> frozenset[int]:
    """``roots`` and every team inside them, at any depth (a cycle in old data cannot loop)."""
    children: dict[int, list[int]] = {}
    for node in nodes.values():
        if node.parent_id is not None:
            children.setdefault(int(node.parent_id), []).append(node.id)
    seen: set[int] = set()
    todo = [r for r in roots if r is not None]
    while todo:
        tid = todo.pop()
        if tid in seen:
            continue
        seen.add(tid)
        todo.extend(children.get(tid, ()))
    return frozenset(seen)


def above(nodes: Mapping[int, TeamNode], team: int) -> list[int]:
    """``team``'s parents, nearest first (stops at a cycle)."""
    out: list[int] = []
    node = nodes.get(team)
    while node is not None and node.parent_id is not None and node.parent_id not in out and node.parent_id != team:
        out.append(int(node.parent_id))
        node = nodes.get(int(node.parent_id))
    return out


def memberships(conn: Connection, user_id: int) -> frozenset[int]:
    """The extra teams ``user_id`` is a member of (not their main team)."""
    m = crm_team_members
    return frozenset(int(t) for t in conn.execute(select(m.c.team_id).where(m.c.user_id == user_id)).scalars())


def teams_of(conn: Connection, user_id: int | None, team_id: int | None) -> frozenset[int]:
    """What ``team`` scope covers for a user: main team, member teams, managed teams, and all below them."""
    if user_id is None:
        return frozenset()
    nodes = tree(conn)
    if not nodes:
        return frozenset()
    roots = set(memberships(conn, user_id)) | {n.id for n in nodes.values() if n.manager_id == user_id}
    if team_id is not None:
        roots.add(int(team_id))
    return below(nodes, roots)


def members_select(team_ids: Iterable[int]) -> Select:
    """SELECT of the ids of users whose main team or a member team is among ``team_ids``."""
    ids = sorted(team_ids)
    return union(select(crm_users.c.id).where(crm_users.c.team_id.in_(ids)),
                 select(crm_team_members.c.user_id).where(crm_team_members.c.team_id.in_(ids))).subquery().select()


def member_ids(conn: Connection, team_ids: Iterable[int]) -> frozenset[int]:
    """Users whose main team or a member team is among ``team_ids``."""
    ids = list(team_ids)
    if not ids:
        return frozenset()
    return frozenset(int(u) for u in conn.execute(members_select(ids)).scalars())


def direct_members(conn: Connection, team: str, *, active_only: bool = True) -> list[tuple[int, str]]:
    """(id, username) of the users in team ``team`` (by name) as main or member team, in id order."""
    u, t, m = crm_users, crm_teams, crm_team_members
    tid = select(t.c.id).where(t.c.name == team).scalar_subquery()
    member = select(m.c.user_id).where(m.c.team_id == tid)
    stmt = select(u.c.id, u.c.username).where((u.c.team_id == tid) | u.c.id.in_(member)).order_by(u.c.id)
    if active_only:
        stmt = stmt.where(u.c.active.is_(True))
    return [(int(r.id), str(r.username)) for r in conn.execute(stmt)]
