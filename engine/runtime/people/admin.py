"""Administering users, teams and API tokens (admins only, every change an audit row).

Audit rows go to ``crm_audit`` like record changes, with ``entity`` the
engine table (``crm_users``, ``crm_teams``, ``crm_api_tokens``), the row's
id, an action (``deactivate``, ``set_roles``, ``add_member``...) and the field's
old and new value -- never a password or a token.  A change that
authentication depends on (roles, team, active, a revoked token) changes the
authentication epoch, so every server process looks the caller up again on
its next request (:mod:`engine.runtime.markers`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update

from engine.errors import BadRequest, Conflict, ValidationFailed
from engine.runtime import markers, passwords, teams, users
from engine.runtime.engine_tables import crm_api_tokens, crm_team_members, crm_teams, crm_users
from engine.runtime.records import journal

if TYPE_CHECKING:
    from engine.runtime.runtime import UnitOfWork

#: open records listed per entity when a user is deactivated (the count is always complete)
LISTED = 20
UNSET: Any = object()


def audit(uow: UnitOfWork, table: str, row_id: int, action: str, changes: Mapping[str, tuple[Any, Any]]) -> None:
    """Audit rows for an administrative change (one per field; one without a field when none changed)."""
    entries = journal.changed(table, row_id, action, changes) if changes else [journal.event(table, row_id, action)]
    journal.write(uow, uow.clock.now(), entries)


# --------------------------------------------------------------------------- users


def user_row(conn: Any, user: users.UserRef) -> Any:
    uid = users.user_id(conn, user)
    return conn.execute(select(crm_users).where(crm_users.c.id == uid)).one()


def show_user(conn: Any, user: users.UserRef, now: Any) -> dict[str, Any]:
    """Everything an administrator sees of one user (no password hash)."""
    row = user_row(conn, user)
    nodes = teams.tree(conn)
    manager = conn.execute(select(crm_users.c.username).where(crm_users.c.id == row.manager_id)).scalar() \
        if row.manager_id is not None else None
    extra = sorted(nodes[t].name for t in teams.memberships(conn, row.id) if t in nodes)
    tokens = conn.execute(select(crm_api_tokens.c.id).where(crm_api_tokens.c.user_id == row.id,
                                                            crm_api_tokens.c.revoked_at.is_(None))).all()
    locked = passwords.locked_until(conn, row.id, now)
    return {"id": row.id, "username": row.username, "display_name": row.display_name, "email": row.email,
            "roles": list(row.roles or ()), "team": nodes[row.team_id].name if row.team_id in nodes else None,
            "teams": extra, "manager": manager, "active": bool(row.active), "has_password": bool(row.password_hash),
            "locked_until": locked, "tokens": len(tokens), "created_at": row.created_at}


def create_user(uow: UnitOfWork, username: str, *, roles: Sequence[str], team: str | int | None = None,
                manager: users.UserRef | None = None, password: str | None = None, display_name: str = "",
                email: str | None = None) -> dict[str, Any]:
    """A new active user (see :func:`engine.runtime.users.create_user`); audited; returns it as shown."""
    if email is not None:
        _text(email, "email", 254)
    uid = users.create_user(uow, username, roles=roles, team=team, manager=manager, password=password,
                            display_name=_text(display_name, "display_name", 200), email=email)
    audit(uow, "crm_users", uid, "create", {"username": (None, username), "roles": (None, list(roles))})
    return show_user(uow.conn, uid, uow.clock.now())


def update_user(uow: UnitOfWork, user: users.UserRef, *, roles: Sequence[str] | None = None,
                team: Any = UNSET, manager: Any = UNSET, display_name: str | None = None,
                email: Any = UNSET) -> dict[str, Any]:
    """Change a user's roles, main team, manager, display name or email (admin only); audited."""
    users.require_admin(uow)
    row = user_row(uow.conn, user)
    values: dict[str, Any] = {}
    if roles is not None:
        users.check_roles(uow.workspace, list(roles))
        values["roles"] = list(roles)
    if team is not UNSET:
        values["team_id"] = users.team_id(uow.conn, team) if team is not None else None
    if manager is not UNSET:
        values["manager_id"] = users.user_id(uow.conn, manager) if manager is not None else None
        if values["manager_id"] == row.id:
            raise ValidationFailed("a user cannot be their own manager", details={"manager": ["is the user"]})
    if display_name is not None:
        values["display_name"] = _text(display_name, "display_name", 200)
    if email is not UNSET:
        values["email"] = _text(email, "email", 254) if email is not None else None
    changes = {k: (_plain(getattr(row, k)), _plain(v)) for k, v in values.items() if getattr(row, k) != v}
    if changes:
        uow.conn.execute(update(crm_users).where(crm_users.c.id == row.id).values(**values))
        audit(uow, "crm_users", row.id, "update", changes)
        if {"roles", "team_id"} & set(changes):
            markers.bump_auth(uow.conn)  # cached callers carry their roles and team
    return show_user(uow.conn, row.id, uow.clock.now())


def _text(value: Any, key: str, limit: int) -> str:
    if not isinstance(value, str) or len(value) > limit:
        raise ValidationFailed(f"invalid {key}", details={key: [f"must be text of at most {limit} characters"]})
    return value


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, (list, tuple)) else value


def set_password(uow: UnitOfWork, user: users.UserRef, password: str) -> None:
    """A new password (the rules apply); clears failed logins and a lockout; audited without the password."""
    users.require_admin(uow)
    row = user_row(uow.conn, user)
    stored = users.hash_password(password, username=row.username)
    uow.conn.execute(update(crm_users).where(crm_users.c.id == row.id).values(password_hash=stored))
    passwords.clear(uow.conn, row.id)
    audit(uow, "crm_users", row.id, "set_password", {})


def deactivate(uow: UnitOfWork, user: users.UserRef) -> dict[str, Any]:
    """The user can no longer sign in, and their tokens are revoked for good (next request, every process);
    their records keep their owner.  Returns ``{"user", "revoked_tokens", "open_records": {entity: {"count",
    "ids"}}}`` -- how many tokens went, and what to hand over."""
    users.require_admin(uow)
    row = user_row(uow.conn, user)
    if uow.actor.user_id == row.id:
        raise BadRequest("you cannot deactivate yourself", code="bad_request", hint="ask another administrator")
    if row.active:
        revoked = users.deactivate_user(uow, row.id)
        audit(uow, "crm_users", row.id, "deactivate", {"active": (True, False)})
    else:  # deactivated by an engine that left the tokens: revoke them now
        revoked = users.revoke_user_tokens(uow, row.id)
    _audit_revoked(uow, revoked)
    return {"user": row.username, "revoked_tokens": len(revoked), "open_records": open_records(uow, row.id)}


def reactivate(uow: UnitOfWork, user: users.UserRef) -> None:
    """The user may sign in again; failed logins are forgotten.  Their old tokens stay revoked (deactivation
    revoked them; any an older engine left active are revoked now): they need a new token."""
    users.require_admin(uow)
    row = user_row(uow.conn, user)
    if not row.active:
        _audit_revoked(uow, users.revoke_user_tokens(uow, row.id))
        uow.conn.execute(update(crm_users).where(crm_users.c.id == row.id).values(active=True))
        passwords.clear(uow.conn, row.id)
        audit(uow, "crm_users", row.id, "reactivate", {"active": (False, True)})
        markers.bump_auth(uow.conn)


def _audit_revoked(uow: UnitOfWork, token_ids: Sequence[int]) -> None:
    for tid in token_ids:
        audit(uow, "crm_api_tokens", tid, "revoke", {})


def open_records(uow: UnitOfWork, uid: int) -> dict[str, dict[str, Any]]:
    """entity -> {"count", "ids" (the first :data:`LISTED`)} of the live records ``uid`` owns that are not
    closed (a record in a pipeline's won/lost stage is closed); entities with none are left out."""
    closed = _closed_stages(uow)
    out: dict[str, dict[str, Any]] = {}
    for plan in uow.state.plans.values():
        if plan.is_child:
            continue
        flt = f"owner_id == {int(uid)}"
        for field, keys in closed.get(plan.name, {}).items():
            flt += f" and ({field} is null or {field} not in [{', '.join(repr(k) for k in keys)}])"
        page = uow.records.list(plan.name, filter=flt, sort="id", limit=LISTED, fields=["id"], count=True)
        if page.total:
            out[plan.name] = {"count": page.total, "ids": [r["id"] for r in page.items]}
    return out


def _closed_stages(uow: UnitOfWork) -> dict[str, dict[str, list[str]]]:
    out: dict[str, dict[str, list[str]]] = {}
    for obj in uow.workspace.objects_of("pipeline").values():
        pipe = obj.compiled
        keys = [s.key for s in getattr(pipe, "stages", ()) if getattr(s, "outcome", None) is not None]
        if keys:
            out.setdefault(pipe.entity, {})[pipe.field] = keys
    return out


# --------------------------------------------------------------------------- teams


def create_team(uow: UnitOfWork, name: str, *, manager: users.UserRef | None = None,
                parent: str | int | None = None) -> int:
    """A new team, optionally with a manager and inside ``parent``; audited."""
    tid = users.create_team(uow, name, manager=manager, parent=parent)
    row = uow.conn.execute(select(crm_teams).where(crm_teams.c.id == tid)).one()
    audit(uow, "crm_teams", tid, "create", {"name": (None, name), "manager_id": (None, row.manager_id),
                                            "parent_id": (None, row.parent_id)})
    return tid


def set_manager(uow: UnitOfWork, team: str | int, manager: users.UserRef | None) -> None:
    users.require_admin(uow)
    tid = users.team_id(uow.conn, team)
    old = uow.conn.execute(select(crm_teams.c.manager_id).where(crm_teams.c.id == tid)).scalar()
    users.set_team_manager(uow, tid, manager)
    new = uow.conn.execute(select(crm_teams.c.manager_id).where(crm_teams.c.id == tid)).scalar()
    if old != new:
        audit(uow, "crm_teams", tid, "set_manager", {"manager_id": (old, new)})


def set_parent(uow: UnitOfWork, team: str | int, parent: str | int | None) -> None:
    """Put ``team`` inside ``parent`` (None: at the top); a loop (a team inside itself) is refused."""
    users.require_admin(uow)
    tid = users.team_id(uow.conn, team)
    pid = users.team_id(uow.conn, parent) if parent is not None else None
    nodes = teams.tree(uow.conn)
    if pid is not None and (pid == tid or tid in teams.above(nodes, pid)):
        raise ValidationFailed(f"team {nodes[tid].name!r} cannot go inside {nodes[pid].name!r}, which is inside it "
                               "(that would make a loop)",
                               details={"parent": ["would make a loop"]}, hint="choose a team above or beside it")
    old = nodes[tid].parent_id
    if old != pid:
        uow.conn.execute(update(crm_teams).where(crm_teams.c.id == tid).values(parent_id=pid))
        audit(uow, "crm_teams", tid, "set_parent", {"parent_id": (old, pid)})


def add_member(uow: UnitOfWork, team: str | int, user: users.UserRef) -> bool:
    """Make ``user`` a member of ``team`` besides their main team; False when they already belong to it."""
    users.require_admin(uow)
    tid, uid = users.team_id(uow.conn, team), users.user_id(uow.conn, user)
    main = uow.conn.execute(select(crm_users.c.team_id).where(crm_users.c.id == uid)).scalar()
    if main == tid or tid in teams.memberships(uow.conn, uid):
        return False
    uow.conn.execute(crm_team_members.insert().values(team_id=tid, user_id=uid, created_at=uow.clock.now()))
    audit(uow, "crm_teams", tid, "add_member", {"member": (None, uid)})
    return True


def remove_member(uow: UnitOfWork, team: str | int, user: users.UserRef) -> bool:
    """End ``user``'s extra membership of ``team``; False when there was none."""
    users.require_admin(uow)
    tid, uid = users.team_id(uow.conn, team), users.user_id(uow.conn, user)
    m = crm_team_members
    gone = uow.conn.execute(m.delete().where(m.c.team_id == tid, m.c.user_id == uid)).rowcount
    if gone:
        audit(uow, "crm_teams", tid, "remove_member", {"member": (uid, None)})
    return bool(gone)


def list_teams(conn: Any) -> list[dict[str, Any]]:
    """Every team by name: manager, parent, sub-teams, members (main and extra), users in the tree."""
    nodes = teams.tree(conn)
    names = dict(conn.execute(select(crm_users.c.id, crm_users.c.username)).all())
    out = []
    for node in sorted(nodes.values(), key=lambda n: n.name):
        members = sorted(names[u] for u in teams.member_ids(conn, [node.id]) if u in names)
        out.append({"id": node.id, "name": node.name, "manager": names.get(node.manager_id),
                    "parent": nodes[node.parent_id].name if node.parent_id in nodes else None,
                    "teams": sorted(n.name for n in nodes.values() if n.parent_id == node.id),
                    "members": members,
                    "everyone": len(teams.member_ids(conn, teams.below(nodes, [node.id])))})
    return out


# --------------------------------------------------------------------------- tokens


def list_tokens(conn: Any, *, user: users.UserRef | None = None, include_revoked: bool = False
                ) -> list[dict[str, Any]]:
    """API tokens (prefix, name, user, dates), newest first -- never the token itself."""
    t, u = crm_api_tokens, crm_users
    stmt = (select(t.c.id, t.c.prefix, t.c.name, u.c.username, t.c.created_at, t.c.last_used_at, t.c.expires_at,
                   t.c.revoked_at).join(u, u.c.id == t.c.user_id).order_by(t.c.id.desc()))
    if user is not None:
        stmt = stmt.where(t.c.user_id == users.user_id(conn, user))
    if not include_revoked:
        stmt = stmt.where(t.c.revoked_at.is_(None))
    return [dict(r._mapping) | {"user": r.username} for r in conn.execute(stmt)]


def revoke(uow: UnitOfWork, prefix: str) -> int:
    """Revoke the active tokens starting with ``prefix`` (at least 8 characters; the actor's own unless an
    admin); returns the count.  A prefix shorter than the 12 shown by ``crm token list`` that matches
    several tokens is refused (say which); a text longer than 12 characters must be the whole token.
    Effective on the next request of every process; audited."""
    uow.require_writable()
    if not isinstance(prefix, str) or len(prefix) < 8:
        raise BadRequest("give at least the first 8 characters of the token", code="bad_request",
                         details={"prefix": ["must have at least 8 characters"]},
                         hint="'crm token list' shows the prefixes")
    t = crm_api_tokens
    stmt = select(t.c.id, t.c.prefix).where(t.c.prefix.startswith(prefix[:12], autoescape=True),
                                            t.c.revoked_at.is_(None))
    if len(prefix) > 12:  # longer than the stored prefix: only the whole token, checked by its hash
        stmt = stmt.where(t.c.token_hash == users.token_hash(prefix))
    if not uow.actor.is_admin:
        stmt = stmt.where(t.c.user_id == uow.actor.user_id)
    rows = uow.conn.execute(stmt).all()
    if len(prefix) < 12 and len({r.prefix for r in rows}) > 1:
        raise Conflict(f"{len(rows)} tokens start with {prefix!r}", code="ambiguous_prefix",
                       details={"prefixes": sorted({r.prefix for r in rows})},
                       hint="give more of the token: the 12 characters crm token list shows")
    ids = [int(r.id) for r in rows]
    if ids:
        uow.conn.execute(update(t).where(t.c.id.in_(ids)).values(revoked_at=uow.clock.now()))
        markers.bump_auth(uow.conn)
        for tid in ids:
            audit(uow, "crm_api_tokens", tid, "revoke", {})
    return len(ids)


def create_token(uow: UnitOfWork, user: users.UserRef, name: str, *,
                 expires_at: dt.datetime | None = None) -> tuple[str, dict[str, Any]]:
    """A new API token (the CLI's, the API's and the demo's), with its ``create`` audit row: (the token,
    shown once; its row as :func:`list_tokens` shows it)."""
    token = users.create_token(uow, user, name, expires_at=expires_at)
    t = crm_api_tokens
    tid = int(uow.conn.execute(select(t.c.id).where(t.c.prefix == token[:12])).scalar_one())
    audit(uow, "crm_api_tokens", tid, "create", {"name": (None, name)})
    row = next(r for r in list_tokens(uow.conn, user=user) if int(r["id"]) == tid)
    return token, row


def rotate_token(uow: UnitOfWork, user: users.UserRef, name: str) -> tuple[str, int]:
    """A new token ``name`` for ``user`` that replaces (revokes) the user's active tokens of that name, so a
    repeated ``crm demo`` leaves one valid admin token instead of piling them up; (token, revoked count)."""
    uid = users.user_id(uow.conn, user)
    t = crm_api_tokens
    ids = [int(i) for i in uow.conn.execute(select(t.c.id).where(t.c.user_id == uid, t.c.name == name,
                                                                 t.c.revoked_at.is_(None))).scalars()]
    if ids:
        uow.conn.execute(update(t).where(t.c.id.in_(ids)).values(revoked_at=uow.clock.now()))
        markers.bump_auth(uow.conn)
        for tid in ids:
            audit(uow, "crm_api_tokens", tid, "revoke", {})
    return create_token(uow, uid, name)[0], len(ids)
